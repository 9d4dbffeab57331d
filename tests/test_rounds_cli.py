"""What a coordinator's operator sees (issue 9): a round watched live to its close, and a
token re-issued for an enrolled practice. A real coordinator in-process, real agents over
mutual TLS, the real CLI. (An old agent and a round with a deadline: test_old_agent.py.)"""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

from _coordinator_helpers import AS_OF, DEFINITIONS, admin, fixed_prepare, refusing_prepare
from typer.testing import CliRunner

from agent.client import Agent, enrol
from agent.pipeline import AwaitingApproval
from coordinator.ca import init_home
from coordinator.cli import app
from coordinator.server import CoordinatorConfig, RunningCoordinator, start_coordinator
from fedpeer.collection import Round

runner = CliRunner()


async def _served(home: Path) -> RunningCoordinator:
    init_home(home)
    config = CoordinatorConfig(home=home, announce_poll_seconds=0.2, round_tick_seconds=0.1)
    running = await start_coordinator(config)
    running.home.address_file.write_text(f"{running.address}\n{running.enrol_address}\n")
    return running


def _cli(home: Path, *args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(app, [*args, "--home", str(home)], terminal_width=200)


def waiting_prepare(round_: Round) -> object:
    """A practice whose release waits for its approval (as the pipeline says it)."""
    raise AwaitingApproval(f"round {round_.round_id} awaits the practice's approval")


async def test_round_watch_follows_a_round_to_its_close(tmp_path: Path) -> None:
    home = tmp_path / "coord"
    running = await _served(home)
    try:
        prepares = {
            "W1": fixed_prepare("W1"),
            "W2": refusing_prepare("the partners said no this month"),
            "W3": waiting_prepare,
            "W4": fixed_prepare("W4"),  # never runs: late
        }
        agents = {}
        async with admin(running) as adm:
            for pid, prepare in prepares.items():
                token, _ = await adm.invite(pid, f"Practice {pid}", "East")
                await enrol(running.address, running.enrol_port, token, tmp_path / pid)
                agents[pid] = Agent(tmp_path / pid, prepare, max_attempts=1)
            deadline = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=4)
            round_ = await adm.start_round(AS_OF, DEFINITIONS, deadline, quorum=2)
        for pid in ("W1", "W2", "W3"):
            await agents[pid].run_once()
        shown = await asyncio.to_thread(_cli, home, "round", "status", round_.round_id)
        assert ": open" in shown.output and "awaiting approval" in shown.output
        # Watched from before the deadline until the round closes by itself.
        watched = await asyncio.to_thread(
            _cli, home, "round", "watch", round_.round_id, "--interval", "0.2"
        )
        assert watched.exit_code == 0, watched.output
        rows = {
            line.split("│")[1].strip(): line.split("│")[2].strip()
            for line in watched.output.splitlines()
            if line.startswith("│ W")
        }
        assert rows == {
            "W1": "submitted",
            "W2": "refused",
            "W3": "awaiting approval",
            "W4": "late",
        }
        assert f"Round {round_.round_id}, as of {AS_OF}: closed" in watched.output
        assert "quorum 1/2: not reached" in watched.output
        assert "the partners said no this month" in watched.output
    finally:
        await running.stop(0)


async def test_a_token_for_an_enrolled_practice_says_so_and_locks_nobody_out(
    tmp_path: Path,
) -> None:
    home = tmp_path / "coord"
    running = await _served(home)
    add = ["practice", "add", "--id", "K1", "--name", "Kiln Lane", "--locality", "West"]
    try:
        first = await asyncio.to_thread(_cli, home, *add)
        assert first.exit_code == 0, first.output
        token = first.output.strip().splitlines()[-1]
        # Practice IT is told where to point the agent: the name in the server's
        # certificate and both ports.
        where = f"--coordinator localhost:{running.port} --enrol-port {running.enrol_port}"
        assert where in first.output
        await enrol(running.address, running.enrol_port, token, tmp_path / "K1")
        agent = Agent(tmp_path / "K1", fixed_prepare("K1"), max_attempts=1)

        again = await asyncio.to_thread(_cli, home, *add)
        assert again.exit_code == 1
        assert "K1 is already enrolled" in str(again.exception)
        assert "keeps working" in str(again.exception) and "--replace" in str(again.exception)
        replaced = await asyncio.to_thread(_cli, home, *add, "--replace")
        assert replaced.exit_code == 0, replaced.output
        assert "agent keeps working until this token is used" in replaced.output
        # Issued, not used: the enrolled agent still answers rounds.
        async with admin(running) as adm:
            round_ = await adm.start_round(AS_OF, DEFINITIONS)
        assert [o.status for o in await agent.run_once()] == ["submitted"]
        assert running.store.signed_release(round_.round_id, "K1") is not None
    finally:
        await running.stop(0)
