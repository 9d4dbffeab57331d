"""Poisoned submissions over the real wire: signed by an enrolled practice, and absurd.

Each release below is built and signed with the practice's real key (as an agent would),
sent over mutual TLS, and must be refused as INVALID_ARGUMENT with a message that quotes
none of its numbers or names, leaving nothing stored and the round's comparison as it was.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import grpc
import pytest
from _coordinator_helpers import AS_OF, DEFINITIONS, admin, rows_for, signed_request, start

from agent.client import enrol
from agent.identity_store import AgentIdentity
from coordinator.comparisons import build_comparison
from coordinator.plausibility import COUNT_CEILING, plausibility_problems
from coordinator.reports import write_round_reports
from coordinator.server import RunningCoordinator
from fedpeer import wire
from fedpeer.channel import secure_channel
from fedpeer.collection import Answer, ReleaseDocument, Round, SignedRelease
from fedpeer.identity import key_from_pem
from fedpeer.policy import DisclosurePolicy
from fedpeer.release import ResultRow
from fedpeer.signing import sign_bytes
from fedpeer.v1 import agent_pb2_grpc

HONEST = ("H1", "H2", "H3", "H4", "H5")
HUGE = 2**63 - 3


@pytest.fixture
async def coordinator(tmp_path: Path):
    running = await start(tmp_path / "coord")
    yield running
    await running.stop(0)


async def _enrolled(running: RunningCoordinator, root: Path, pid: str) -> AgentIdentity:
    async with admin(running) as adm:
        token, _ = await adm.invite(pid, f"Practice {pid}", "South")
    return await enrol(running.address, running.enrol_port, token, root / pid)


def _raw_request(identity: AgentIdentity, round_: Round, answers: tuple[Answer, ...]):
    """A release of exactly these answers (no helper tidying), signed by the practice."""
    data = ReleaseDocument(identity.practice_id, round_.round_id, round_.as_of, answers).to_bytes()
    signed = SignedRelease(data, sign_bytes(key_from_pem(identity.key_pem), data))
    return wire.release_to_proto(round_.round_id, signed)


def _answers(round_: Round, rows: list[ResultRow]) -> tuple[Answer, ...]:
    """Each of the round's definitions answered, the extra rows put in the first answer."""
    by_id = {d.id: [] for d in round_.definitions}  # type: dict[str, list[ResultRow]]
    first = round_.definitions[0].id
    for row in rows:
        by_id.get(row.indicator, by_id[first]).append(row)
    return tuple(
        Answer(d.content_hash, d.id, round_.policy, tuple(by_id[d.id])) for d in round_.definitions
    )


def _poisons(good: list[ResultRow]) -> dict[str, list[ResultRow]]:
    dm, dna, size = good
    return {
        "huge count": [replace(dm, denominator=HUGE, value=dm.numerator / HUGE), dna, size],
        "above the ceiling": [dm, dna, replace(size, count=COUNT_CEILING + 1)],
        "negative": [replace(dm, numerator=-7), dna, size],
        "invented indicator": [*good, ResultRow("made_up_9731", count=4242, value=4242.0)],
        "invented category": [*good, ResultRow("dm_hba1c_le58", "cat_9731", count=3)],
        "empty row": [ResultRow("dm_hba1c_le58"), dna, size],
        "numerator above denominator": [
            replace(dm, numerator=990, denominator=60, value=990 / 60),
            dna,
            size,
        ],
        "duplicate": [dm, dm, dna, size],
        "more patients than the list": [
            replace(dm, numerator=40, denominator=77_777, value=40 / 77_777),
            dna,
            size,
        ],
        "no rows at all": [],
    }


async def test_poisoned_releases_are_refused_and_move_nothing(
    coordinator: RunningCoordinator, tmp_path: Path
) -> None:
    async with admin(coordinator) as adm:
        round_ = await adm.start_round(AS_OF, DEFINITIONS)
    for pid in HONEST:
        identity = await _enrolled(coordinator, tmp_path, pid)
        async with secure_channel(
            identity.coordinator, identity.ca_pem, identity.key_pem, identity.cert_pem
        ) as channel:
            await agent_pb2_grpc.AgentStub(channel).Submit(
                signed_request(identity, round_, rows_for(pid))
            )
    before = build_comparison(coordinator.store.released_rows_frame(round_.round_id))
    overall = before.indicators["dm_hba1c_le58"].overall
    assert overall.published and overall.value is not None

    attacker = await _enrolled(coordinator, tmp_path, "X9")
    good = rows_for("X9")
    async with secure_channel(
        attacker.coordinator, attacker.ca_pem, attacker.key_pem, attacker.cert_pem
    ) as channel:
        stub = agent_pb2_grpc.AgentStub(channel)
        for name, rows in _poisons(good).items():
            request = _raw_request(attacker, round_, _answers(round_, rows))
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.Submit(request)
            details = caught.value.details() or ""
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (name, details)
            assert "not plausible" in details or "no rows" in details, name
            for echoed in ("9731", "4242", "990", "77777", str(HUGE), "inf", "made_up"):
                assert echoed not in details, (name, details)
            assert coordinator.store.signed_release(round_.round_id, "X9") is None, name

        after = build_comparison(coordinator.store.released_rows_frame(round_.round_id))
        assert after.indicators["dm_hba1c_le58"].overall == overall
        assert set(after.practices) == set(HONEST)
        written = write_round_reports(after, tmp_path / "out", pdf=False)
        assert len(written.practices) == len(HONEST) and written.localities
        assert all(path.stat().st_size for path in written.html)

        # The same practice's sensible release is still taken.
        await stub.Submit(signed_request(attacker, round_, good))
    assert coordinator.store.signed_release(round_.round_id, "X9") is not None


def test_a_sensible_release_has_no_problems(coordinator_round: Round) -> None:
    document = ReleaseDocument(
        "P1", coordinator_round.round_id, AS_OF, _answers(coordinator_round, rows_for("P1"))
    )
    assert plausibility_problems(document, coordinator_round) == []


def test_each_rule_is_named_once(coordinator_round: Round) -> None:
    dm, dna, size = rows_for("P1")
    # Canonical JSON cannot carry an infinity, so this one never reaches the wire.
    infinite = [replace(dm, value=float("inf")), dna, size]
    for name, rows in {**_poisons(rows_for("P1")), "infinite": infinite}.items():
        document = ReleaseDocument(
            "P1", coordinator_round.round_id, AS_OF, _answers(coordinator_round, rows)
        )
        problems = plausibility_problems(document, coordinator_round)
        assert len(problems) == 1, (name, problems)


@pytest.fixture
def coordinator_round() -> Round:
    return Round("r1", AS_OF, DisclosurePolicy(), DEFINITIONS, "")


async def test_the_agent_takes_the_refusal_as_a_verdict_and_stops_resending(
    coordinator: RunningCoordinator, tmp_path: Path
) -> None:
    """INVALID_ARGUMENT is not one of the agent's retryable codes: the real agent marks
    the release rejected, keeps it for the record, and does not send it again."""
    from agent.client import Agent
    from agent.outbox import Delivery

    async with admin(coordinator) as adm:
        round_ = await adm.start_round(AS_OF, DEFINITIONS)
    await _enrolled(coordinator, tmp_path, "V1")
    dm, dna, size = rows_for("V1")

    def poisoned(round_: Round) -> ReleaseDocument:
        rows = [replace(dm, numerator=990, denominator=60, value=990 / 60), dna, size]
        return ReleaseDocument("V1", round_.round_id, round_.as_of, _answers(round_, rows))

    agent = Agent(tmp_path / "V1", poisoned, max_attempts=3, backoff_seconds=0.01)
    (outcome,) = await agent.run_once()
    assert outcome.status == "rejected" and "above the denominator" in outcome.detail
    assert agent.outbox.get(round_.round_id).state == Delivery.REJECTED  # type: ignore[union-attr]
    again = await agent.run_once()  # the outbox answers from its record: not sent again
    assert [o.status for o in again] == ["already"]
    assert coordinator.store.signed_release(round_.round_id, "V1") is None
