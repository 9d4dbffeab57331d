"""Secure aggregation: the coordinator learns the sum of the practices' counts, not one practice's.

The protocol is Bonawitz et al., "Practical Secure Aggregation for Privacy-Preserving Machine
Learning", ACM CCS 2017, against a coordinator that is honest but curious and may also lie about
who dropped out. This module is a library with no I/O: the caller carries the messages, signs
and checks the public keys (``PublicKeys.to_bytes``, signed together with the session id), and
stores each party's state (``Party.to_bytes``) privately.

A session has a roster of n parties and a threshold t with n/2 < t <= n.

0. Keys. Each party makes two X25519 key pairs, one to encrypt shares to the other parties and
   one for pairwise masks, and a random 32-byte seed b. Everyone receives the roster: every
   party's public keys.
1. Shares. Each party splits b and its mask private key t-of-n (Shamir over the prime
   2**521 - 1; the party at position k of the roster sorted by id holds the share at x = k) and
   sends each other party its two shares, encrypted with AES-GCM under a key both ends derive
   with X25519 and HKDF-SHA256; the associated data names the session, sender, receiver and
   roster, so shares made for another session or roster do not decrypt.
2. Masked input. The coordinator forwards to each party the round-1 ciphertexts addressed to it,
   from every party that completed round 1 and only those, so all parties see the same set U2.
   A party masks its vector x as y = x + PRG(b) + sum over j in U2 of +-PRG(s_ij), mod 2**64,
   where s_ij comes from the two mask keys (X25519, then HKDF) and the sign is + when the
   party's id sorts before j's. A party masks with j exactly when j's shares reached it, so
   both ends of every pair agree. It refuses when U2, itself included, has fewer than t parties.
3. Unmasking. The coordinator names the survivors: the parties whose masked inputs it holds.
   Each survivor sends, for every party in its U2, that party's b share if it survived and its
   mask-key share if it dropped. From t shares each, the coordinator rebuilds every survivor's b
   and every dropped party's mask key, removes the self masks and the masks between survivors
   and dropped parties (masks between two survivors cancel in the sum) and keeps the sum.

Security in short. A masked vector is hidden by PRG(b) and its pairwise masks, and fewer than t
shares say nothing of a secret. To see one party's vector the coordinator needs its b and also
its mask key, or else the mask keys of all its partners in U2. Of any one party, a party reveals
one share and never the other, across calls and restarts too (the choice is kept in its
state), so both secrets of one party would take 2t > n parties. A party answers only when the
survivor list has at least t names, itself among them, and every name in its U2. If every
survivor gets the same list S, the coordinator can then unmask the sum over S and no smaller
sum: a smaller set T needs t answers from outside T and the mask keys of at least t - |T| of
T's partners outside S, that is 2t > n parties. The sum is exact: each value is below 2**64/n.

Not covered here, and left to the caller. (1) Invented parties: the coordinator runs the CA that
certifies the practices, so it could put Sybils on the roster; checking the roster against the
known practices is the caller's. (2) Different survivor lists for different parties. The
paper's defence is an extra consistency round (each survivor signs the list it got; a party
answers only after seeing t signatures on the same list), which needs the practices' signing
keys. Without it, never-both still keeps each single vector hidden while t(t - 1) > n(n - t),
true for every n once t > 2n/3 but not, say, for t = 3 of n = 5 (the tests show that attack);
sums over fewer parties than the survivors are not excluded. Hence: use t > 2n/3 (the benchmark
takes floor(2n/3) + 1) unless the caller adds that round. (3) Practices colluding with the
coordinator.
"""

from __future__ import annotations

import json
import operator
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from fedpeer.canonical import canonical_json, sha256_hex
from fedpeer.errors import FedpeerError

if TYPE_CHECKING:  # NumPy is imported where vectors are made: an idle agent never needs it
    import numpy as np

__all__ = ["Aggregator", "Party", "PublicKeys", "SecAggError"]

PROTOCOL = "fedpeer-secagg/1"
PRIME = 2**521 - 1  # the Shamir field
FIELD_BYTES = 66  # a field element, big-endian
SECRET_BYTES = 32  # the seed b and an X25519 private key
NONCE_BYTES = 12  # AES-GCM
STATE_FORMAT = "fedpeer.secagg.party/1"
SEED, MASK = "seed", "mask"  # the two secrets each party shares
_KIND_BYTE = {SEED: 1, MASK: 2}  # the first byte of an encoded unmasking share
_KIND_OF_BYTE = {byte: kind for kind, byte in _KIND_BYTE.items()}
_HEX = re.compile(r"[0-9a-f]*")


class SecAggError(FedpeerError):
    """A secure-aggregation step cannot go on.

    The message names the step and the party, never a value.
    """


# ----------------------------------------------------------------------------- public keys


def _check_name(value: object, what: str) -> str:
    if not isinstance(value, str) or not value or not value.isprintable():
        raise SecAggError(f"{what} must be a non-empty printable string")
    return value


def _check_threshold(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise SecAggError("the threshold must be a positive integer")
    return value


def _unhex(text: object, size: int) -> bytes:
    """Strict lower-case hex of exactly ``size`` bytes, or ValueError."""
    if not isinstance(text, str) or len(text) != 2 * size or not _HEX.fullmatch(text):
        raise ValueError("not hex of the expected size")
    return bytes.fromhex(text)


@dataclass(frozen=True)
class PublicKeys:
    """A party's two X25519 public keys for one session, as the roster lists them."""

    party: str  # the practice id
    cipher_key: bytes  # raw X25519 public key, 32 bytes: encrypts shares to this party
    mask_key: bytes  # raw X25519 public key, 32 bytes: agrees pairwise masks

    def __post_init__(self) -> None:
        _check_name(self.party, "a party id")
        for key in (self.cipher_key, self.mask_key):
            if not isinstance(key, bytes) or len(key) != SECRET_BYTES:
                raise SecAggError(f"public keys of {self.party}: a key is not 32 bytes")

    def _document(self) -> dict[str, str]:
        """The JSON form: the id and both keys in hex."""
        return {
            "party": self.party,
            "cipher_key": self.cipher_key.hex(),
            "mask_key": self.mask_key.hex(),
        }

    def to_bytes(self) -> bytes:
        """Canonical bytes, for the caller to sign (with the session id) and send."""
        return canonical_json(self._document())

    @classmethod
    def from_bytes(cls, data: bytes) -> PublicKeys:
        """Parse and check ``to_bytes`` output; SecAggError on anything else."""
        try:
            document = json.loads(data)
            keys = cls._from_document(document)
        except (ValueError, TypeError, KeyError):
            raise SecAggError("public keys: malformed") from None
        if keys.to_bytes() != data:
            raise SecAggError(f"public keys of {keys.party}: not in canonical form")
        return keys

    @classmethod
    def _from_document(cls, document: Any) -> PublicKeys:
        if not isinstance(document, dict) or set(document) != {"party", "cipher_key", "mask_key"}:
            raise ValueError("unexpected fields")
        return cls(
            party=document["party"],
            cipher_key=_unhex(document["cipher_key"], SECRET_BYTES),
            mask_key=_unhex(document["mask_key"], SECRET_BYTES),
        )


def _sorted_roster(roster: Sequence[PublicKeys], threshold: int, where: str) -> list[PublicKeys]:
    """The roster sorted by party id, after the checks both sides make."""
    if not all(isinstance(entry, PublicKeys) for entry in roster):
        raise SecAggError(f"{where}: a roster entry is not PublicKeys")
    ordered = sorted(roster, key=lambda entry: entry.party)
    seen: set[str] = set()
    for entry in ordered:
        if entry.party in seen:
            raise SecAggError(f"{where}: the roster names {entry.party} twice")
        seen.add(entry.party)
    if len(ordered) < threshold:
        raise SecAggError(
            f"{where}: the roster has {len(ordered)} parties, fewer than the threshold {threshold}"
        )
    if 2 * threshold <= len(ordered):
        raise SecAggError(
            f"{where}: the threshold {threshold} is not more than half the roster of {len(ordered)}"
        )
    return ordered


def _roster_digest(roster: Sequence[PublicKeys]) -> str:
    return sha256_hex(canonical_json([entry._document() for entry in roster]))


# ----------------------------------------------------------------------------- primitives


def _derive_key(shared: bytes, session: str, purpose: str, *parties: str) -> bytes:
    """A 32-byte key from a shared secret, bound to the session, the purpose and the parties."""
    info = canonical_json(
        {"protocol": PROTOCOL, "session": session, "purpose": purpose, "parties": list(parties)}
    )
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(shared)


def _agree(private: X25519PrivateKey, public: bytes, where: str, other: str) -> bytes:
    """The X25519 secret with ``other``'s public key."""
    try:
        return private.exchange(X25519PublicKey.from_public_bytes(public))
    except ValueError:
        raise SecAggError(f"{where}: the public key of {other} is unusable") from None


def _prg(key: bytes, length: int) -> np.ndarray:
    """``length`` pseudo-random uint64: the AES-256-CTR keystream, little-endian."""
    import numpy as np

    encryptor = Cipher(algorithms.AES(key), modes.CTR(bytes(16))).encryptor()
    stream = encryptor.update(bytes(8 * length)) + encryptor.finalize()
    return np.frombuffer(stream, dtype="<u8")


def _self_mask(seed: bytes, session: str, party: str, length: int) -> np.ndarray:
    return _prg(_derive_key(seed, session, "self-mask", party), length)


def _pair_mask(
    private: X25519PrivateKey, public: bytes, session: str, me: str, other: str, length: int
) -> np.ndarray:
    """PRG(s_ij) for the pair: the same array at both ends."""
    shared = _agree(private, public, f"the pairwise mask of {me}", other)
    return _prg(_derive_key(shared, session, "pairwise-mask", *sorted((me, other))), length)


def _split(secret: int, threshold: int, count: int) -> list[int]:
    """Shamir shares of ``secret`` at x = 1..count; any ``threshold`` of them give it back."""
    coefficients = [secrets.randbelow(PRIME) for _ in range(threshold - 1)]
    xs = range(1, count + 1)
    values = [0] * count
    for coefficient in reversed(coefficients):  # Horner, all points at once
        values = [(value + coefficient) * x % PRIME for value, x in zip(values, xs, strict=True)]
    return [(value + secret) % PRIME for value in values]


@lru_cache(maxsize=8)
def _lagrange_at_zero(xs: tuple[int, ...]) -> tuple[int, ...]:
    """The weights that turn shares at ``xs`` into the polynomial's value at 0."""
    weights = []
    for k, xk in enumerate(xs):
        numerator = denominator = 1
        for m, xm in enumerate(xs):
            if m != k:
                numerator = numerator * xm % PRIME
                denominator = denominator * (xm - xk) % PRIME
        weights.append(numerator * pow(denominator, -1, PRIME) % PRIME)
    return tuple(weights)


def _interpolate(points: Mapping[int, int]) -> int:
    """The secret behind Shamir shares {x: y}."""
    xs = tuple(sorted(points))
    weights = _lagrange_at_zero(xs)
    return sum(w * points[x] for w, x in zip(weights, xs, strict=True)) % PRIME


def _field_bytes(value: int) -> bytes:
    return value.to_bytes(FIELD_BYTES, "big")


def _encode_share(kind: str, value: int) -> bytes:
    return bytes([_KIND_BYTE[kind]]) + _field_bytes(value)


def _decode_share(data: object) -> tuple[str, int]:
    """(kind, y) from an encoded unmasking share, or ValueError."""
    if not isinstance(data, bytes) or len(data) != 1 + FIELD_BYTES:
        raise ValueError("bad size")
    value = int.from_bytes(data[1:], "big")
    if data[0] not in _KIND_OF_BYTE or value >= PRIME:
        raise ValueError("bad share")
    return _KIND_OF_BYTE[data[0]], value


def _value_limit(parties: int) -> int:
    """Each value stays below this, so the sum over any part of the roster fits in 64 bits."""
    return min(2**63, 2**64 // parties)


def _check_vector(vector: Sequence[int], parties: int, where: str) -> np.ndarray:
    """The vector as uint64, once every value is an integer within ``_value_limit``."""
    import numpy as np

    limit = _value_limit(parties)
    if isinstance(vector, str | bytes) or len(vector) == 0:
        raise SecAggError(f"{where}: the vector must be a non-empty sequence of integers")
    values = []
    for position, item in enumerate(vector):
        try:
            value = operator.index(item)
        except TypeError:
            raise SecAggError(
                f"{where}: the value at position {position} is not an integer"
            ) from None
        if not 0 <= value < limit:
            raise SecAggError(
                f"{where}: the value at position {position} is outside 0 to 2**64/{parties}"
            )
        values.append(value)
    return np.array(values, dtype=np.uint64)


# ----------------------------------------------------------------------------- a party


class Party:
    """One party's side of one aggregation session.

    State survives restarts via ``to_bytes``/``from_bytes``.
    """

    party: str
    session: str
    threshold: int

    def __init__(self, party: str, session: str, threshold: int) -> None:
        self._load(
            party,
            session,
            threshold,
            cipher=X25519PrivateKey.generate(),
            mask=X25519PrivateKey.generate(),
            seed=secrets.token_bytes(SECRET_BYTES),
        )

    def _load(
        self,
        party: str,
        session: str,
        threshold: int,
        *,
        cipher: X25519PrivateKey,
        mask: X25519PrivateKey,
        seed: bytes,
    ) -> None:
        self.party = _check_name(party, "the party id")
        self.session = _check_name(session, "the session id")
        self.threshold = _check_threshold(threshold)
        self._cipher = cipher
        self._mask = mask
        self._seed = seed
        self._roster: list[PublicKeys] | None = None  # set by round 1
        self._shares: dict[str, tuple[int, int]] = {}  # party -> (seed share, mask-key share)
        self._masked = False  # round 2 done
        self._revealed: dict[str, str] = {}  # party -> SEED or MASK, never both

    def _where(self, step: str) -> str:
        return f"{step} at {self.party}"

    def public_keys(self) -> PublicKeys:
        """This party's entry on the roster."""
        return PublicKeys(
            self.party,
            self._cipher.public_key().public_bytes_raw(),
            self._mask.public_key().public_bytes_raw(),
        )

    # round 1

    def encrypted_shares(self, roster: Sequence[PublicKeys]) -> dict[str, bytes]:
        """Round 1: Shamir-share b and the mask private key among the roster (self included);
        return {other party: ciphertext}. Refuses a roster with repeated parties, without self,
        whose entry for self is not our own keys, or smaller than the threshold, or a threshold
        not > len(roster)/2 (so no two disjoint groups of t exist). Remembers the roster."""
        where = self._where("round 1")
        if self._roster is not None:
            raise SecAggError(f"{where}: round 1 is already done")
        ordered = _sorted_roster(roster, self.threshold, where)
        mine = [entry for entry in ordered if entry.party == self.party]
        if not mine:
            raise SecAggError(f"{where}: the roster does not include me")
        if mine[0] != self.public_keys():
            raise SecAggError(f"{where}: the roster's keys for me are not mine")
        seed_shares = _split(int.from_bytes(self._seed, "big"), self.threshold, len(ordered))
        mask_secret = int.from_bytes(self._mask.private_bytes_raw(), "big")
        mask_shares = _split(mask_secret, self.threshold, len(ordered))
        digest = _roster_digest(ordered)
        ciphertexts = {}
        for entry, seed_share, mask_share in zip(ordered, seed_shares, mask_shares, strict=True):
            if entry.party == self.party:
                self._shares = {self.party: (seed_share, mask_share)}
            else:
                plaintext = _field_bytes(seed_share) + _field_bytes(mask_share)
                ciphertexts[entry.party] = self._encrypt(entry, plaintext, digest)
        self._roster = ordered
        return ciphertexts

    def _channel(self, other: PublicKeys, where: str) -> AESGCM:
        shared = _agree(self._cipher, other.cipher_key, where, other.party)
        pair = sorted((self.party, other.party))
        return AESGCM(_derive_key(shared, self.session, "share-encryption", *pair))

    def _associated_data(self, sender: str, receiver: str, digest: str) -> bytes:
        return canonical_json(
            {
                "protocol": PROTOCOL,
                "session": self.session,
                "sender": sender,
                "receiver": receiver,
                "roster": digest,
            }
        )

    def _encrypt(self, receiver: PublicKeys, plaintext: bytes, digest: str) -> bytes:
        nonce = secrets.token_bytes(NONCE_BYTES)
        channel = self._channel(receiver, self._where("round 1"))
        associated = self._associated_data(self.party, receiver.party, digest)
        return nonce + channel.encrypt(nonce, plaintext, associated)

    def _decrypt(self, sender: PublicKeys, ciphertext: object, digest: str) -> tuple[int, int]:
        where = self._where("round 2")
        problem = f"{where}: the shares from {sender.party} do not decrypt"
        if not isinstance(ciphertext, bytes) or len(ciphertext) <= NONCE_BYTES:
            raise SecAggError(problem)
        associated = self._associated_data(sender.party, self.party, digest)
        try:
            plaintext = self._channel(sender, where).decrypt(
                ciphertext[:NONCE_BYTES], ciphertext[NONCE_BYTES:], associated
            )
        except InvalidTag:
            raise SecAggError(problem) from None
        if len(plaintext) != 2 * FIELD_BYTES:
            raise SecAggError(f"{where}: the shares from {sender.party} are malformed")
        seed_share = int.from_bytes(plaintext[:FIELD_BYTES], "big")
        mask_share = int.from_bytes(plaintext[FIELD_BYTES:], "big")
        if max(seed_share, mask_share) >= PRIME:
            raise SecAggError(f"{where}: the shares from {sender.party} are malformed")
        return seed_share, mask_share

    # round 2

    def masked_input(self, inbox: Mapping[str, bytes], vector: Sequence[int]) -> bytes:
        """Round 2: decrypt and keep the shares addressed to me (inbox: {sender: ciphertext});
        return the masked vector as L little-endian uint64.

        The pairwise masks are with every sender in the inbox (the paper's U2). Refuses a sender
        not on the roster, a ciphertext that does not decrypt (naming the sender), fewer than
        ``threshold`` parties in U2 counting myself, a second call, and values outside
        0 <= v < 2**64 / len(roster) (at most 2**63), so the sum cannot wrap around."""
        where = self._where("round 2")
        roster = self._after_round_1(where)
        if self._masked:
            raise SecAggError(f"{where}: round 2 is already done")
        values = _check_vector(vector, len(roster), where)
        by_party = {entry.party: entry for entry in roster}
        digest = _roster_digest(roster)
        shares = dict(self._shares)
        for sender, ciphertext in inbox.items():
            if sender == self.party:
                raise SecAggError(f"{where}: the inbox holds shares from myself")
            if sender not in by_party:
                raise SecAggError(f"{where}: the sender {sender} is not on the roster")
            shares[sender] = self._decrypt(by_party[sender], ciphertext, digest)
        if len(shares) < self.threshold:
            raise SecAggError(
                f"{where}: only {len(shares)} parties, myself included, completed round 1; "
                f"the threshold is {self.threshold}"
            )
        masked = values + _self_mask(self._seed, self.session, self.party, len(values))
        for other in shares:
            if other != self.party:
                mask = _pair_mask(
                    self._mask,
                    by_party[other].mask_key,
                    self.session,
                    self.party,
                    other,
                    len(values),
                )
                masked = masked + mask if self.party < other else masked - mask
        self._shares = shares
        self._masked = True
        return masked.astype("<u8").tobytes()

    def _after_round_1(self, where: str) -> list[PublicKeys]:
        if self._roster is None:
            raise SecAggError(f"{where}: round 1 has not been done")
        return self._roster

    # round 3

    def unmasking_shares(self, survivors: Sequence[str]) -> dict[str, bytes]:
        """Round 3: for each party in my U2, its b share if it is a survivor, else its mask-key
        share. Refuses if I am not a survivor, if there are fewer survivors than the threshold,
        if a survivor is not on the roster or sent me no shares in round 1, and if this call
        and an earlier one together would reveal both shares of any one party."""
        where = self._where("round 3")
        roster = self._after_round_1(where)
        if not self._masked:
            raise SecAggError(f"{where}: round 2 has not been done")
        named = self._check_survivors(survivors, {entry.party for entry in roster}, where)
        plan = {party: SEED if party in named else MASK for party in self._shares}
        for party, kind in plan.items():
            if self._revealed.get(party, kind) != kind:
                earlier = "dropped" if kind == SEED else "a survivor"
                raise SecAggError(
                    f"{where}: {party} was named {earlier} before; answering now would reveal "
                    f"both of its shares"
                )
        self._revealed.update(plan)
        return {
            party: _encode_share(kind, self._shares[party][0 if kind == SEED else 1])
            for party, kind in plan.items()
        }

    def _check_survivors(self, survivors: Sequence[str], roster: set[str], where: str) -> set[str]:
        named = set()
        for party in survivors:
            if not isinstance(party, str) or party not in roster:
                raise SecAggError(f"{where}: a survivor is not on the roster")
            if party in named:
                raise SecAggError(f"{where}: the survivors name {party} twice")
            if party not in self._shares:
                raise SecAggError(f"{where}: the survivor {party} sent me no shares in round 1")
            named.add(party)
        if self.party not in named:
            raise SecAggError(f"{where}: I am not among the survivors")
        if len(named) < self.threshold:
            raise SecAggError(
                f"{where}: only {len(named)} survivors; the threshold is {self.threshold}"
            )
        return named

    # state

    def to_bytes(self) -> bytes:
        """This party's whole state, private keys included: the caller stores it privately."""
        return canonical_json(
            {
                "format": STATE_FORMAT,
                "party": self.party,
                "session": self.session,
                "threshold": self.threshold,
                "cipher_key": self._cipher.private_bytes_raw().hex(),
                "mask_key": self._mask.private_bytes_raw().hex(),
                "seed": self._seed.hex(),
                "roster": None
                if self._roster is None
                else [entry._document() for entry in self._roster],
                "shares": {
                    party: [_field_bytes(value).hex() for value in pair]
                    for party, pair in self._shares.items()
                },
                "masked": self._masked,
                "revealed": self._revealed,
            }
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> Party:
        """A party restored from ``to_bytes``; SecAggError if the state is malformed."""
        party = cls.__new__(cls)
        try:
            party._restore(json.loads(data))
        except (ValueError, TypeError, KeyError, AttributeError):
            raise SecAggError("restoring a party: the saved state is malformed") from None
        return party

    def _restore(self, state: dict[str, Any]) -> None:
        fields = {"format", "party", "session", "threshold", "cipher_key", "mask_key", "seed"}
        fields |= {"roster", "shares", "masked", "revealed"}
        if set(state) != fields or state["format"] != STATE_FORMAT:
            raise ValueError("unexpected fields")
        self._load(
            state["party"],
            state["session"],
            state["threshold"],
            cipher=X25519PrivateKey.from_private_bytes(_unhex(state["cipher_key"], SECRET_BYTES)),
            mask=X25519PrivateKey.from_private_bytes(_unhex(state["mask_key"], SECRET_BYTES)),
            seed=_unhex(state["seed"], SECRET_BYTES),
        )
        if state["roster"] is not None:
            roster = [PublicKeys._from_document(entry) for entry in state["roster"]]
            self._roster = _sorted_roster(roster, self.threshold, "restore")
            if self.public_keys() not in self._roster:
                raise ValueError("the roster lacks my keys")
        self._shares = {
            party: (self._field_element(seed), self._field_element(mask))
            for party, (seed, mask) in state["shares"].items()
        }
        if not isinstance(state["masked"], bool) or (state["masked"] and self._roster is None):
            raise ValueError("round 2 marked done without round 1")
        self._masked = state["masked"]
        self._revealed = dict(state["revealed"])
        roster_names = {entry.party for entry in self._roster or []}
        if not set(self._shares) <= roster_names or not set(self._revealed) <= set(self._shares):
            raise ValueError("shares for unknown parties")
        if not set(self._revealed.values()) <= {SEED, MASK}:
            raise ValueError("unknown share kind")

    @staticmethod
    def _field_element(text: str) -> int:
        value = int.from_bytes(_unhex(text, FIELD_BYTES), "big")
        if value >= PRIME:
            raise ValueError("not a field element")
        return value


# ----------------------------------------------------------------------------- the coordinator


class Aggregator:
    """The coordinator's side: learns only the sum over survivors."""

    def __init__(
        self, session: str, threshold: int, roster: Sequence[PublicKeys], length: int
    ) -> None:
        self.session = _check_name(session, "the session id")
        self.threshold = _check_threshold(threshold)
        if not isinstance(length, int) or isinstance(length, bool) or length < 1:
            raise SecAggError("the coordinator: the vector length must be a positive integer")
        self.length = length
        self._roster = {
            entry.party: entry for entry in _sorted_roster(roster, threshold, "the coordinator")
        }
        self._position = {party: k + 1 for k, party in enumerate(self._roster)}  # Shamir x
        self._masked: dict[str, np.ndarray] = {}
        self._unmasking: dict[str, dict[str, int]] = {}  # sender -> party -> share (y)

    def add_masked(self, party: str, data: bytes) -> None:
        """Round 2: one party's masked vector, once per party."""
        where = "round 2 at the coordinator"
        if self._unmasking:
            raise SecAggError(f"{where}: round 3 has begun, so {party} is too late")
        if party not in self._roster:
            raise SecAggError(f"{where}: {party} is not on the roster")
        if party in self._masked:
            raise SecAggError(f"{where}: {party} already sent its masked input")
        if not isinstance(data, bytes) or len(data) != 8 * self.length:
            raise SecAggError(
                f"{where}: the masked input of {party} is not {self.length} 64-bit values"
            )
        import numpy as np

        self._masked[party] = np.frombuffer(data, dtype="<u8")

    @property
    def survivors(self) -> list[str]:
        """The parties whose masked inputs arrived, sorted: the list to send for round 3."""
        return sorted(self._masked)

    def add_unmasking(self, sender: str, shares: Mapping[str, bytes]) -> None:
        """Round 3: one survivor's shares {party: encoded share}, once per survivor."""
        where = "round 3 at the coordinator"
        if sender not in self._masked:
            raise SecAggError(f"{where}: {sender} is not a survivor")
        if sender in self._unmasking:
            raise SecAggError(f"{where}: {sender} already sent its unmasking shares")
        decoded = {}
        for party, data in shares.items():
            if party not in self._roster:
                raise SecAggError(f"{where}: {sender} sent a share for a party not on the roster")
            try:
                kind, value = _decode_share(data)
            except ValueError:
                raise SecAggError(f"{where}: {sender}'s share of {party} is malformed") from None
            if kind != (SEED if party in self._masked else MASK):
                raise SecAggError(f"{where}: {sender} sent the wrong kind of share of {party}")
            decoded[party] = value
        self._unmasking[sender] = decoded

    def result(self) -> list[int]:
        """The sum over the survivors, once at least ``threshold`` survivors have unmasked.

        Rebuilds each survivor's seed b (to remove its self mask) and each dropped party's mask
        key (to remove its pairwise masks with the survivors); SecAggError when there are fewer
        than ``threshold`` survivors or unmasking senders, or a secret does not rebuild."""
        where = "result at the coordinator"
        survivors = self.survivors
        if len(survivors) < self.threshold:
            raise SecAggError(
                f"{where}: only {len(survivors)} survivors; the threshold is {self.threshold}"
            )
        if len(self._unmasking) < self.threshold:
            raise SecAggError(
                f"{where}: only {len(self._unmasking)} survivors sent unmasking shares; "
                f"the threshold is {self.threshold}"
            )
        import numpy as np

        total = np.zeros(self.length, dtype=np.uint64)
        for party in survivors:
            total += self._masked[party]
            seed = self._rebuild(party, SEED, where)
            total -= _self_mask(seed, self.session, party, self.length)
        shared = {party for shares in self._unmasking.values() for party in shares}
        for party in sorted(shared - set(survivors)):
            total = self._remove_pair_masks(total, party, where)
        return [int(value) for value in total]

    def _rebuild(self, party: str, kind: str, where: str) -> bytes:
        """A party's 32-byte secret from the first ``threshold`` shares of it, by roster order."""
        points = {
            self._position[sender]: shares[party]
            for sender, shares in self._unmasking.items()
            if party in shares
        }
        if len(points) < self.threshold:
            raise SecAggError(
                f"{where}: only {len(points)} shares of the {kind} of {party}; "
                f"the threshold is {self.threshold}"
            )
        chosen = {x: points[x] for x in sorted(points)[: self.threshold]}
        secret = _interpolate(chosen)
        if secret >= 2 ** (8 * SECRET_BYTES):
            raise SecAggError(f"{where}: the shares of the {kind} of {party} are inconsistent")
        return secret.to_bytes(SECRET_BYTES, "big")

    def _remove_pair_masks(self, total: np.ndarray, dropped: str, where: str) -> np.ndarray:
        """Cancel the masks the survivors shared with a party that dropped after round 1."""
        key = X25519PrivateKey.from_private_bytes(self._rebuild(dropped, MASK, where))
        if key.public_key().public_bytes_raw() != self._roster[dropped].mask_key:
            raise SecAggError(f"{where}: the shares of the mask of {dropped} are inconsistent")
        for survivor in self._masked:
            public = self._roster[survivor].mask_key
            mask = _pair_mask(key, public, self.session, dropped, survivor, self.length)
            # the survivor added the mask if its id sorts first, else subtracted it
            total = total - mask if survivor < dropped else total + mask
        return total
