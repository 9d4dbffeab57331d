"""Secure aggregation (fedpeer.secagg): exact sums, dropouts, and a coordinator that lies."""

from __future__ import annotations

import random
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from fedpeer import secagg
from fedpeer.secagg import Aggregator, Party, PublicKeys, SecAggError

SESSION = "round-2026-09"


def _ids(n: int) -> list[str]:
    return [f"gp{k:03d}" for k in range(n)]


def _threshold(n: int) -> int:
    return 2 * n // 3 + 1


@dataclass
class Session:
    """All parties of one session, run by an honest coordinator; tests drive it round by round."""

    n: int
    threshold: int
    length: int
    parties: dict[str, Party] = field(init=False)
    roster: list[PublicKeys] = field(init=False)
    outbox: dict[str, dict[str, bytes]] = field(init=False, default_factory=dict)
    masked: dict[str, bytes] = field(init=False, default_factory=dict)
    aggregator: Aggregator = field(init=False)

    def __post_init__(self) -> None:
        self.parties = {party: Party(party, SESSION, self.threshold) for party in _ids(self.n)}
        self.roster = [party.public_keys() for party in self.parties.values()]
        self.aggregator = Aggregator(SESSION, self.threshold, self.roster, self.length)

    def round1(self, absent: Collection[str] = ()) -> None:
        for name, party in self.parties.items():
            if name not in absent:
                self.outbox[name] = party.encrypted_shares(self.roster)

    def inbox(self, receiver: str) -> dict[str, bytes]:
        """What the coordinator forwards: every completed round 1's ciphertext for ``receiver``."""
        return {sender: cts[receiver] for sender, cts in self.outbox.items() if sender != receiver}

    def round2(self, vectors: dict[str, list[int]], absent: Collection[str] = ()) -> None:
        for name in self.outbox:
            if name not in absent:
                data = self.parties[name].masked_input(self.inbox(name), vectors[name])
                self.masked[name] = data
                self.aggregator.add_masked(name, data)

    def round3(self, absent: Collection[str] = ()) -> None:
        survivors = self.aggregator.survivors
        for name in survivors:
            if name not in absent:
                shares = self.parties[name].unmasking_shares(survivors)
                self.aggregator.add_unmasking(name, shares)


def _vectors(rng: random.Random, names: list[str], length: int) -> dict[str, list[int]]:
    return {name: [rng.randrange(0, 50_000) for _ in range(length)] for name in names}


def _plain_sum(vectors: dict[str, list[int]], names: Collection[str]) -> list[int]:
    return [sum(column) for column in zip(*(vectors[name] for name in names), strict=True)]


# ----------------------------------------------------------------------------- exact sums


@pytest.mark.parametrize("n", [3, 10, 25])
def test_sum_is_exact_without_dropouts(n: int) -> None:
    rng = random.Random(n)
    length = rng.randint(12, 40)
    run = Session(n, _threshold(n), length)
    vectors = _vectors(rng, _ids(n), length)
    run.round1()
    run.round2(vectors)
    run.round3()
    assert run.aggregator.survivors == _ids(n)
    assert run.aggregator.result() == _plain_sum(vectors, _ids(n))


def test_twenty_percent_drop_after_round_1() -> None:
    rng = random.Random(20)
    run = Session(20, _threshold(20), 30)
    vectors = _vectors(rng, _ids(20), 30)
    dropped = set(rng.sample(_ids(20), 4))  # sent shares, never a masked input
    run.round1()
    run.round2(vectors, absent=dropped)
    run.round3()
    survivors = [name for name in _ids(20) if name not in dropped]
    assert run.aggregator.survivors == survivors
    assert run.aggregator.result() == _plain_sum(vectors, survivors)


def test_dropouts_in_every_round() -> None:
    rng = random.Random(12)
    run = Session(12, _threshold(12), 16)  # t = 9
    vectors = _vectors(rng, _ids(12), 16)
    run.round1(absent={"gp000"})  # never sent shares: nobody masks with it
    run.round2(vectors, absent={"gp005"})  # sent shares only: its masks are rebuilt
    run.round3(absent={"gp011"})  # sent its masked input, no unmasking shares
    survivors = [name for name in _ids(12) if name not in {"gp000", "gp005"}]
    assert run.aggregator.result() == _plain_sum(vectors, survivors)


def test_largest_values_sum_without_wrapping() -> None:
    n = 4
    limit = 2**64 // n
    run = Session(n, 3, 3)
    vectors = {name: [limit - 1, 0, limit - 1] for name in _ids(n)}
    run.round1()
    run.round2(vectors)
    run.round3()
    assert run.aggregator.result() == [n * (limit - 1), 0, n * (limit - 1)]
    fresh = Session(n, 3, 2)
    fresh.round1()
    with pytest.raises(SecAggError, match=r"round 2 at gp000: the value at position 1"):
        fresh.parties["gp000"].masked_input(fresh.inbox("gp000"), [0, limit])


# ----------------------------------------------------------------------------- too few


def test_fewer_survivors_than_threshold_is_refused() -> None:
    rng = random.Random(3)
    run = Session(10, 7, 12)
    vectors = _vectors(rng, _ids(10), 12)
    run.round1()
    run.round2(vectors, absent={"gp001", "gp002", "gp003", "gp004"})
    assert len(run.aggregator.survivors) == 6
    with pytest.raises(
        SecAggError, match=r"round 3 at gp000: only 6 survivors; the threshold is 7"
    ):
        run.parties["gp000"].unmasking_shares(run.aggregator.survivors)
    with pytest.raises(SecAggError, match=r"result at the coordinator: only 6 survivors"):
        run.aggregator.result()


def test_fewer_unmasking_senders_than_threshold_is_refused() -> None:
    rng = random.Random(4)
    run = Session(10, 7, 12)
    vectors = _vectors(rng, _ids(10), 12)
    run.round1()
    run.round2(vectors)
    run.round3(absent={"gp000", "gp001", "gp002", "gp003"})
    with pytest.raises(SecAggError, match=r"only 6 survivors sent unmasking shares"):
        run.aggregator.result()


def test_round_2_refuses_fewer_than_threshold_round_1_parties() -> None:
    # Else a coordinator forwarding no ciphertexts would leave the vector under its self mask only.
    run = Session(5, 3, 4)
    run.round1()
    with pytest.raises(SecAggError, match=r"only 2 parties, myself included, completed round 1"):
        run.parties["gp000"].masked_input({"gp001": run.outbox["gp001"]["gp000"]}, [1, 2, 3, 4])


# ----------------------------------------------------------------------------- a lying coordinator


def _share_kind(shares: dict[str, bytes], party: str) -> str:
    return secagg._decode_share(shares[party])[0]


def test_lying_coordinator_cannot_collect_both_secrets_of_a_party() -> None:
    n, t, target = 7, 5, "gp000"
    rng = random.Random(7)
    run = Session(n, t, 12)
    run.round1()
    run.round2(_vectors(rng, _ids(n), 12))
    everyone = _ids(n)
    without_target = everyone[1:]
    # Told the target dropped: {gp001, gp002, gp003}; told it survived: the rest.
    told_dropped, told_survived = everyone[1:4], [everyone[0], *everyone[4:]]
    kinds = [
        _share_kind(run.parties[name].unmasking_shares(without_target), target)
        for name in told_dropped
    ] + [
        _share_kind(run.parties[name].unmasking_shares(everyone), target) for name in told_survived
    ]
    assert kinds.count("mask") == 3 and kinds.count("seed") == 4
    assert kinds.count("mask") < t and kinds.count("seed") < t  # 2t > n: never both
    # Asking again with the other story is refused, naming the party, even after a restart.
    for name, other_story in (("gp001", everyone), ("gp004", without_target)):
        party = Party.from_bytes(run.parties[name].to_bytes())
        with pytest.raises(SecAggError, match=rf"round 3 at {name}: {target} was named"):
            party.unmasking_shares(other_story)
    # The same story again is answered: it reveals nothing new.
    assert run.parties["gp001"].unmasking_shares(without_target)


def test_round_3_refuses_odd_survivor_lists() -> None:
    run = Session(5, 3, 4)
    run.round1(absent={"gp004"})
    run.round2({name: [1, 2, 3, 4] for name in _ids(5)})
    party = run.parties["gp000"]
    with pytest.raises(SecAggError, match="I am not among the survivors"):
        party.unmasking_shares(["gp001", "gp002", "gp003"])
    with pytest.raises(SecAggError, match="a survivor is not on the roster"):
        party.unmasking_shares(["gp000", "gp001", "intruder"])
    with pytest.raises(SecAggError, match="the survivor gp004 sent me no shares in round 1"):
        party.unmasking_shares(["gp000", "gp001", "gp004"])
    with pytest.raises(SecAggError, match="the survivors name gp001 twice"):
        party.unmasking_shares(["gp000", "gp001", "gp001"])


def test_known_limit_equivocation_at_a_bare_majority() -> None:
    """Without the paper's consistency round, telling parties different survivor lists isolates
    one vector when t(t - 1) <= n(n - t): here t = 3 of n = 5. With t = 4 the same lists are
    refused. This is why the module docstring asks for t > 2n/3 or a consistency round."""
    target, partners = "gp000", ["gp001", "gp002"]
    run = Session(5, 3, 6)
    run.round1()
    vector = [11, 22, 33, 44, 55, 66]
    inbox = {sender: run.outbox[sender][target] for sender in partners}  # U2 = {0, 1, 2}
    masked = run.parties[target].masked_input(inbox, vector)
    lists = {
        "gp001": ["gp000", "gp001", "gp003", "gp004"],  # gp002 "dropped"
        "gp002": ["gp000", "gp002", "gp003", "gp004"],  # gp001 "dropped"
        "gp003": ["gp000", "gp003", "gp004"],
        "gp004": ["gp000", "gp003", "gp004"],
    }
    answers = {}
    for name, survivors in lists.items():
        run.parties[name].masked_input(run.inbox(name), [0] * 6)
        answers[name] = run.parties[name].unmasking_shares(survivors)

    def rebuild(party: str, kind: str) -> bytes:
        points = {}
        for sender, shares in answers.items():
            if party in shares and secagg._decode_share(shares[party])[0] == kind:
                points[int(sender[2:]) + 1] = secagg._decode_share(shares[party])[1]
        assert len(points) >= 3
        return secagg._interpolate(dict(sorted(points.items())[:3])).to_bytes(32, "big")

    total = np.frombuffer(masked, dtype="<u8") - secagg._self_mask(
        rebuild(target, "seed"), SESSION, target, 6
    )
    for partner in partners:
        key = X25519PrivateKey.from_private_bytes(rebuild(partner, "mask"))
        own = run.roster[0].mask_key
        total = total - secagg._pair_mask(key, own, SESSION, partner, target, 6)  # gp000 added it
    assert [int(value) for value in total] == vector

    stricter = Session(5, 4, 6)
    stricter.round1()
    stricter.round2({name: [0] * 6 for name in _ids(5)})
    with pytest.raises(SecAggError, match="only 3 survivors; the threshold is 4"):
        stricter.parties["gp003"].unmasking_shares(lists["gp003"])


def test_masked_input_does_not_show_the_vector() -> None:
    run = Session(6, 5, 32)
    same = [7] * 32
    run.round1()
    run.round2({name: same for name in _ids(6)})
    plain = np.array(same, dtype="<u8").tobytes()
    first, second = run.masked["gp000"], run.masked["gp001"]
    assert first != plain and second != plain and first != second
    values = np.frombuffer(first, dtype="<u8")
    assert len(set(values.tolist())) == 32  # equal inputs, no equal outputs
    assert (values > 2**48).sum() >= 28  # spread over the whole 64-bit range, not near 7
    run.round3()
    assert run.aggregator.result() == [42] * 32


# ----------------------------------------------------------------------------- bad input


def test_tampered_ciphertext_names_the_sender() -> None:
    run = Session(4, 3, 2)
    run.round1()
    inbox = run.inbox("gp000")
    tampered = bytearray(inbox["gp002"])
    tampered[20] ^= 1
    inbox["gp002"] = bytes(tampered)
    with pytest.raises(
        SecAggError, match=r"round 2 at gp000: the shares from gp002 do not decrypt"
    ):
        run.parties["gp000"].masked_input(inbox, [1, 2])


def test_shares_from_another_session_do_not_decrypt() -> None:
    ids = _ids(3)
    receiver = Party(ids[0], "session-a", 2)
    senders = [Party(name, "session-b", 2) for name in ids[1:]]
    roster = [receiver.public_keys()] + [party.public_keys() for party in senders]
    receiver.encrypted_shares(roster)
    inbox = {party.party: party.encrypted_shares(roster)[ids[0]] for party in senders}
    with pytest.raises(SecAggError, match=r"the shares from gp001 do not decrypt"):
        receiver.masked_input(inbox, [1])


def test_shares_made_for_another_roster_do_not_decrypt() -> None:
    receiver, sender, a, b = (Party(name, SESSION, 2) for name in _ids(4))
    receiver.encrypted_shares([receiver.public_keys(), sender.public_keys(), a.public_keys()])
    other = [receiver.public_keys(), sender.public_keys(), b.public_keys()]
    inbox = {"gp001": sender.encrypted_shares(other)["gp000"]}
    with pytest.raises(SecAggError, match=r"the shares from gp001 do not decrypt"):
        receiver.masked_input(inbox, [1])


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda roster, me: roster[1:], "the roster does not include me"),
        (lambda roster, me: [*roster, roster[2]], "the roster names gp002 twice"),
        (lambda roster, me: [Party("gp000", SESSION, 3).public_keys(), *roster[1:]], "not mine"),
        (lambda roster, me: roster[:2], "2 parties, fewer than the threshold 3"),
        (lambda roster, me: [*roster, *(p.public_keys() for p in me)], "not more than half"),
    ],
)
def test_round_1_refuses_a_bad_roster(
    change: Callable[[list[PublicKeys], list[Party]], list[PublicKeys]], problem: str
) -> None:
    run = Session(4, 3, 2)
    extra = [Party(f"gp1{k}", SESSION, 3) for k in range(2)]
    with pytest.raises(SecAggError, match=rf"round 1 at gp000: .*{problem}"):
        run.parties["gp000"].encrypted_shares(change(run.roster, extra))


def test_round_2_refuses_senders_off_the_roster_and_repeats() -> None:
    run = Session(4, 3, 2)
    run.round1()
    inbox = run.inbox("gp000")
    with pytest.raises(SecAggError, match="the sender intruder is not on the roster"):
        run.parties["gp000"].masked_input({**inbox, "intruder": b"x" * 40}, [1, 2])
    with pytest.raises(SecAggError, match="the inbox holds shares from myself"):
        run.parties["gp000"].masked_input({**inbox, "gp000": b"x" * 40}, [1, 2])
    with pytest.raises(SecAggError, match="the value at position 0 is not an integer"):
        run.parties["gp000"].masked_input(inbox, [1.5, 2])
    run.parties["gp000"].masked_input(inbox, [1, 2])
    with pytest.raises(SecAggError, match="round 2 is already done"):
        run.parties["gp000"].masked_input(inbox, [1, 2])
    with pytest.raises(SecAggError, match="round 1 is already done"):
        run.parties["gp000"].encrypted_shares(run.roster)


def test_aggregator_refuses_bad_messages() -> None:
    run = Session(4, 3, 2)
    run.round1()
    aggregator = run.aggregator
    with pytest.raises(SecAggError, match="masked input of gp000 is not 2 64-bit values"):
        aggregator.add_masked("gp000", b"\0" * 8)
    with pytest.raises(SecAggError, match="intruder is not on the roster"):
        aggregator.add_masked("intruder", b"\0" * 16)
    run.round2({name: [1, 2] for name in _ids(4)})
    with pytest.raises(SecAggError, match="gp000 already sent its masked input"):
        aggregator.add_masked("gp000", run.masked["gp000"])
    shares = run.parties["gp000"].unmasking_shares(aggregator.survivors)
    with pytest.raises(SecAggError, match="gp000's share of gp001 is malformed"):
        aggregator.add_unmasking("gp000", {**shares, "gp001": b"\x01" * 3})
    wrong_kind = secagg._encode_share("mask", 5)
    with pytest.raises(SecAggError, match="gp000 sent the wrong kind of share of gp001"):
        aggregator.add_unmasking("gp000", {**shares, "gp001": wrong_kind})
    aggregator.add_unmasking("gp000", shares)
    with pytest.raises(SecAggError, match="gp000 already sent its unmasking shares"):
        aggregator.add_unmasking("gp000", shares)
    with pytest.raises(SecAggError, match="round 3 has begun, so gp003 is too late"):
        aggregator.add_masked("gp003", run.masked["gp003"])


def test_inconsistent_shares_are_detected() -> None:
    run = Session(4, 3, 2)
    run.round1()
    run.round2({name: [1, 2] for name in _ids(4)})
    survivors = run.aggregator.survivors
    for name in survivors:
        shares = run.parties[name].unmasking_shares(survivors)
        if name == "gp000":
            shares["gp001"] = secagg._encode_share("seed", 12345)
        run.aggregator.add_unmasking(name, shares)
    with pytest.raises(SecAggError, match="the shares of the seed of gp001 are inconsistent"):
        run.aggregator.result()


# ----------------------------------------------------------------------------- keys and state


def test_public_keys_round_trip_and_refuse_bad_bytes() -> None:
    keys = Party("gp000", SESSION, 2).public_keys()
    assert PublicKeys.from_bytes(keys.to_bytes()) == keys
    spaced = keys.to_bytes().replace(b",", b", ")
    with pytest.raises(SecAggError, match="public keys of gp000: not in canonical form"):
        PublicKeys.from_bytes(spaced)
    for bad in (
        b"",
        b"[]",
        b'{"party":"gp000"}',
        keys.to_bytes().replace(b'"cipher_key":"', b'"cipher_key":"0'),
    ):
        with pytest.raises(SecAggError, match="public keys: malformed"):
            PublicKeys.from_bytes(bad)
    with pytest.raises(SecAggError, match="a key is not 32 bytes"):
        PublicKeys("gp000", b"short", keys.mask_key)


def test_party_state_round_trips_mid_protocol() -> None:
    rng = random.Random(5)
    run = Session(6, 5, 10)
    vectors = _vectors(rng, _ids(6), 10)

    def restart() -> None:
        run.parties = {name: Party.from_bytes(p.to_bytes()) for name, p in run.parties.items()}

    restart()  # keys only
    run.round1()
    restart()  # after round 1: roster and own shares
    run.round2(vectors)
    restart()  # after round 2: everybody's shares
    run.round3()
    restart()  # after round 3: what was revealed
    assert run.aggregator.result() == _plain_sum(vectors, _ids(6))
    again = run.parties["gp000"]
    assert Party.from_bytes(again.to_bytes()).to_bytes() == again.to_bytes()
    with pytest.raises(SecAggError, match="gp001 was named a survivor before"):
        again.unmasking_shares([name for name in _ids(6) if name != "gp001"])


@pytest.mark.parametrize(
    "bad", [b"", b"{}", b'{"format":"x"}', b"not json", b'{"format":"fedpeer.secagg.party/1"}']
)
def test_party_state_refuses_bad_bytes(bad: bytes) -> None:
    with pytest.raises(SecAggError, match="restoring a party: the saved state is malformed"):
        Party.from_bytes(bad)


# ----------------------------------------------------------------------------- property


@settings(derandomize=True, max_examples=25, deadline=None)
@given(st.data())
def test_sum_over_survivors_is_exact(data: st.DataObject) -> None:
    n = data.draw(st.integers(3, 9), label="n")
    threshold = data.draw(st.integers(n // 2 + 1, n), label="threshold")
    length = data.draw(st.integers(1, 6), label="length")
    limit = min(2**63, 2**64 // n)
    values = st.lists(st.integers(0, limit - 1), min_size=length, max_size=length)
    vectors = dict(zip(_ids(n), data.draw(st.lists(values, min_size=n, max_size=n)), strict=True))
    order = data.draw(st.permutations(_ids(n)), label="order")
    spare = n - threshold
    before = data.draw(st.integers(0, spare), label="drop before round 1")
    after = data.draw(st.integers(0, spare - before), label="drop after round 1")
    late = data.draw(st.integers(0, spare - before - after), label="drop in round 3")
    run = Session(n, threshold, length)
    run.round1(absent=order[:before])
    run.round2(vectors, absent=order[before : before + after])
    run.round3(absent=order[before + after : before + after + late])
    survivors = sorted(order[before + after :])
    assert run.aggregator.survivors == survivors
    assert run.aggregator.result() == _plain_sum(vectors, survivors)
