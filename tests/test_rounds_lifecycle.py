"""A round's life over the real wire: deadline, quorum, closing, publish, cancel (issue 9).

A real coordinator in-process (SQLite, and PostgreSQL where marked), real enrolled
agents over mutual TLS, and the round clock ticking in the server. Deadlines here are
real instants a few seconds ahead: nothing is faked but how often the clock looks.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from pathlib import Path

import pytest
from _coordinator_helpers import AS_OF, DEFINITIONS, admin, fixed_prepare
from typer.testing import CliRunner

from agent.client import Agent, Outcome, enrol
from agent.outbox import Delivery
from coordinator.ca import init_home
from coordinator.cli import app
from coordinator.comparison_store import has_stored_comparison
from coordinator.round_states import RoundState, check_transition
from coordinator.server import CoordinatorConfig, RunningCoordinator, start_coordinator
from fedpeer.canonical import canonical_json
from fedpeer.channel import secure_channel
from fedpeer.collection import Round
from fedpeer.errors import RoundError
from fedpeer.policy import DisclosurePolicy
from fedpeer.signing import verify_round
from fedpeer.v1 import agent_pb2_grpc

runner = CliRunner()


async def _start(home: Path, db_url: str | None) -> RunningCoordinator:
    init_home(home)
    config = CoordinatorConfig(
        home=home, db_url=db_url, announce_poll_seconds=0.2, round_tick_seconds=0.1
    )
    return await start_coordinator(config)


async def _agents(running: RunningCoordinator, tmp_path: Path, *ids: str) -> dict[str, Agent]:
    agents = {}
    async with admin(running) as adm:
        for pid in ids:
            token, _ = await adm.invite(pid, f"Practice {pid}", "North")
            await enrol(running.address, running.enrol_port, token, tmp_path / pid)
            agents[pid] = Agent(tmp_path / pid, fixed_prepare(pid), max_attempts=1)
    return agents


async def _until(check, seconds: float = 20.0):  # type: ignore[no-untyped-def]
    """Poll an async check until it returns something true; fail after ``seconds``."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        found = await check()
        if found:
            return found
        await asyncio.sleep(0.05)
    raise AssertionError("not within the bound")


async def _answer(agent: Agent, round_id: str) -> Outcome:
    """Have an agent answer one round by id, as it does when one is announced."""
    i = agent.identity
    async with secure_channel(i.coordinator, i.ca_pem, i.key_pem, i.cert_pem) as channel:
        return await agent.handle_round(agent_pb2_grpc.AgentStub(channel), round_id)


def test_a_round_without_a_deadline_signs_the_bytes_it_always_did() -> None:
    """The manifest of a round with no deadline and no quorum is byte-identical to the
    manifest before deadlines existed, so signatures made then still verify."""
    plain = Round("r1", AS_OF, DisclosurePolicy(), DEFINITIONS, "2026-10-01T00:00:00.000000Z")
    before = {
        "kind": "fedpeer.round/2",
        "round_id": "r1",
        "as_of": AS_OF.isoformat(),
        "created_at": "2026-10-01T00:00:00.000000Z",
        "policy": DisclosurePolicy().to_data(),
        "definitions": [{"id": d.id, "content_hash": d.content_hash} for d in DEFINITIONS],
    }
    assert canonical_json(plain.manifest()) == canonical_json(before)
    timed = Round(**{**plain.__dict__, "deadline": "2026-10-08T17:00:00.000000Z", "quorum": 3})
    assert timed.manifest()["deadline"] == "2026-10-08T17:00:00.000000Z"
    assert timed.manifest()["quorum"] == 3


def test_one_rule_says_which_state_follows_which() -> None:
    check_transition("r", RoundState.OPEN, RoundState.CLOSING)
    check_transition("r", RoundState.CLOSED, RoundState.PUBLISHED)
    for old, new in [
        (RoundState.OPEN, RoundState.PUBLISHED),
        (RoundState.PUBLISHED, RoundState.CANCELLED),
        (RoundState.CANCELLED, RoundState.OPEN),
        (RoundState.CLOSED, RoundState.OPEN),
    ]:
        with pytest.raises(RoundError, match=f"is {old.value}: it cannot become {new.value}"):
            check_transition("r", old, new)


async def test_the_deadline_is_signed_refuses_late_answers_and_closes_the_round(
    tmp_path: Path, db_url: str | None
) -> None:
    running = await _start(tmp_path / "coord", db_url)
    try:
        agents = await _agents(running, tmp_path, "D1", "D2", "D3")
        deadline = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=4)
        async with admin(running) as adm:
            round_ = await adm.start_round(AS_OF, DEFINITIONS, deadline, quorum=3)
            # The agent checks the coordinator's signature over a manifest naming both.
            assert round_.deadline_at == deadline and round_.quorum == 3
            verify_round(running.ca.cert, round_)
            on_time = await agents["D1"].run_once()
            assert [o.status for o in on_time] == ["submitted"]
            status = await adm.status(round_.round_id)
            assert status.state == "open" and status.quorum == 3 and not status.quorum_met
            states = {p.practice_id: p.state for p in status.practices}
            assert states == {"D1": "submitted", "D2": "pending", "D3": "pending"}

            async def closed() -> object:
                s = await adm.status(round_.round_id)
                return s if s.state == RoundState.CLOSED.value else None

            final = await _until(closed)
            seen = running.store.round_state(round_.round_id)
            assert seen is RoundState.CLOSED

            # Closed by the clock, its comparison is stored as a closing by hand stores it.
            async def stored() -> bool:
                return has_stored_comparison(running.store, round_.round_id)

            assert await _until(stored)  # just after the close, in the same tick
            # Past the deadline the unanswered are late, and the quorum is shown unmet.
            assert {p.practice_id: p.state for p in final.practices} == {
                "D1": "submitted",
                "D2": "late",
                "D3": "late",
            }
            assert not final.quorum_met and final.deadline.startswith(deadline.date().isoformat())
            # The round is no longer announced, and a late answer is refused, kept, and
            # marked rejected with the reason.
            assert await agents["D2"].run_once() == []
            agent = agents["D3"]
            late = await _answer(agent, round_.round_id)
            assert late.status == "rejected" and "closed" in late.detail
            assert agent.outbox.get(round_.round_id).state == Delivery.REJECTED  # type: ignore[union-attr]
    finally:
        await running.stop(0)


async def test_a_submission_after_the_deadline_is_refused_before_the_clock_moves(
    tmp_path: Path,
) -> None:
    """Between the deadline and the clock's next look, the deadline itself refuses."""
    home = tmp_path / "coord"
    init_home(home)
    config = CoordinatorConfig(home=home, announce_poll_seconds=0.2, round_tick_seconds=3600)
    running = await start_coordinator(config)
    try:
        agents = await _agents(running, tmp_path, "E1")
        deadline = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1.5)
        async with admin(running) as adm:
            round_ = await adm.start_round(AS_OF, DEFINITIONS, deadline)
        await asyncio.sleep(2.0)
        assert running.store.round_state(round_.round_id) is RoundState.OPEN  # clock asleep
        outcome = await _answer(agents["E1"], round_.round_id)
        assert outcome.status == "rejected"
        assert "closed to answers at its deadline" in outcome.detail
    finally:
        await running.stop(0)


async def test_publish_and_cancel_follow_the_rule_and_the_cli_lists_rounds(
    tmp_path: Path, db_url: str | None
) -> None:
    running = await _start(tmp_path / "coord", db_url)
    home = str(running.home.root)
    running.home.address_file.write_text(f"{running.address}\n{running.enrol_address}\n")
    try:
        agents = await _agents(running, tmp_path, "P1", "P2")
        async with admin(running) as adm:
            kept = await adm.start_round(AS_OF, DEFINITIONS, quorum=1)
            dropped = await adm.start_round(dt.date(2026, 8, 31), DEFINITIONS)
            await agents["P1"].run_once()

        def cli(*args: str):  # type: ignore[no-untyped-def]
            return runner.invoke(app, [*args, "--home", home], terminal_width=200)

        # In a thread: the coordinator serves on this test's event loop meanwhile.
        early = await asyncio.to_thread(cli, "round", "publish", kept.round_id)
        assert early.exit_code == 1
        assert "is open: it cannot become published" in str(early.exception)
        listed = await asyncio.to_thread(cli, "round", "list")
        assert listed.exit_code == 0, listed.output
        lines = {line.split()[1]: line for line in listed.output.splitlines() if "│" in line}
        assert "open" in lines[kept.round_id] and "1/2 (quorum 1)" in lines[kept.round_id]
        assert "1/2" in lines[dropped.round_id] and "quorum" not in lines[dropped.round_id]

        cancelled = await asyncio.to_thread(cli, "round", "cancel", dropped.round_id)
        assert cancelled.exit_code == 0 and "cancelled" in cancelled.output
        compared = await asyncio.to_thread(cli, "comparisons", dropped.round_id)
        assert compared.exit_code == 1 and "cancelled: it is not compared" in str(
            compared.exception
        )
        # A cancelled round is announced no more: an agent asking now sees only the other.
        outcomes = await agents["P2"].run_once()
        assert [o.round_id for o in outcomes] == [kept.round_id]
        closed = await asyncio.to_thread(cli, "round", "close", kept.round_id)
        assert "closed" in closed.output and "quorum 2/1: reached" in closed.output
        published = await asyncio.to_thread(cli, "round", "publish", kept.round_id)
        assert published.exit_code == 0 and ": published" in published.output
        again = await asyncio.to_thread(cli, "round", "cancel", kept.round_id)
        assert again.exit_code == 1 and "is published" in str(again.exception)
        assert running.store.rounds_by_state() == {"published": 1, "cancelled": 1}
    finally:
        await running.stop(0)
