"""One collection round end to end over mutual TLS, with a real coordinator in-process."""

from __future__ import annotations

import asyncio
import stat
from pathlib import Path

import pytest
from _coordinator_helpers import AS_OF, DEFINITIONS, admin, fixed_prepare, rows_for, start

from agent.client import Agent, enrol
from agent.outbox import Delivery
from fedpeer.collection import Round


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest) -> str | None:
    """None for the SQLite file in the coordinator's home, else a PostgreSQL URL."""
    return None if request.param == "sqlite" else request.getfixturevalue("postgres_url")


async def test_enrol_submit_status_close(tmp_path: Path, db_url: str | None) -> None:
    running = await start(tmp_path / "coord", db_url)
    try:
        async with admin(running) as adm:
            seen: dict[str, list[Round]] = {}
            agents = {}
            for pid in ("A81001", "A81002", "A81003"):
                token, _ = await adm.invite(pid, f"Practice {pid}", "North")
                home = tmp_path / pid
                identity = await enrol(running.address, running.enrol_port, token, home)
                assert identity.practice_id == pid
                assert stat.S_IMODE((home / "agent.key").stat().st_mode) == 0o600
                seen[pid] = []
                agents[pid] = Agent(home, fixed_prepare(pid, seen[pid]))

            round_ = await adm.start_round(AS_OF, DEFINITIONS)
            outcomes = await asyncio.gather(*(a.run_once() for a in agents.values()))
            for pid, outs in zip(agents, outcomes, strict=True):
                assert [(o.round_id, o.status) for o in outs] == [(round_.round_id, "submitted")]
                assert outs[0].receipt is not None and outs[0].receipt.practice_id == pid
                assert seen[pid][0].definition_hashes == round_.definition_hashes
                assert agents[pid].outbox.get(round_.round_id).state == Delivery.ACKNOWLEDGED

            status = await adm.status(round_.round_id)
            assert {p.practice_id: p.state for p in status.practices} == dict.fromkeys(
                agents, "submitted"
            )
            frame = running.store.released_rows_frame(round_.round_id)
            assert len(frame) == 3 * len(rows_for("A81001"))
            a1 = frame[(frame.practice_id == "A81001") & (frame.indicator == "dm_hba1c_le58")]
            assert int(a1.numerator.iloc[0]) == rows_for("A81001")[0].numerator
            assert a1.practice_name.iloc[0] == "Practice A81001"

            closed = await adm.close_round(round_.round_id)
            assert closed.state == "closed"
            # A second run has nothing new: the outbox remembers the acknowledged round.
            again = await agents["A81001"].run_once()
            assert again == []
    finally:
        await running.stop(0)
