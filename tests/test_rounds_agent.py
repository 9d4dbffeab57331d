"""The agent in a coordinator's month (issues 9 and 10), over the real wire.

A following agent sends an approval given meanwhile, and answers a round that failed on
a broken extract once the extract is fixed, without a restart; ``run --once`` says by
its exit status that nothing was sent; transient failures are retried with backoff and
full jitter until the round's deadline, and the release is kept, never abandoned.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import errno
import random
import time
from pathlib import Path

import grpc
import pytest
import typer
from _coordinator_helpers import AS_OF, DEFINITIONS, admin, fixed_prepare, start
from test_coordinator_failures import Failing, _locked
from test_round_pipeline import ROUND_SET, _airlock
from typer.testing import CliRunner

from agent import cli_network
from agent.client import Agent, enrol
from agent.outbox import Delivery
from agent.retry import RetryPolicy, is_transient
from agent.service import practice_agent
from agent.synth import generate_practice
from coordinator.ca import init_home
from coordinator.server import CoordinatorConfig, RunningCoordinator, start_coordinator
from fedpeer.errors import CoordinatorUnreachable

PRACTICE = "R10001"


async def _enrolled(running: RunningCoordinator, tmp_path: Path, pid: str = PRACTICE) -> Path:
    async with admin(running) as adm:
        token, _ = await adm.invite(pid, "Riverside", "North")
    home = tmp_path / pid
    await enrol(running.address, running.enrol_port, token, home)
    return home


async def _state(running: RunningCoordinator, round_id: str, pid: str = PRACTICE) -> str:
    status = await asyncio.to_thread(running.store.round_status, round_id)
    return next(p.state.value for p in status.practices if p.practice_id == pid)


async def _wait_for(running: RunningCoordinator, round_id: str, state: str, bound: float) -> float:
    """Seconds until the coordinator shows the practice in ``state``; fails past ``bound``."""
    started = time.monotonic()
    while (seen := await _state(running, round_id)) != state:
        assert time.monotonic() - started < bound, f"still {seen} after {bound} s"
        await asyncio.sleep(0.1)
    return time.monotonic() - started


@contextlib.asynccontextmanager
async def _following(agent: Agent):  # type: ignore[no-untyped-def]
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run_forever(stop))
    try:
        yield task
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


def _extract(path: Path) -> Path:
    generate_practice(path, practice_seed=5, list_size=300, as_of=AS_OF, fmt="csv")
    return path


async def test_an_approval_given_while_following_is_sent_within_a_minute(tmp_path: Path) -> None:
    """The production agent (30 s poll): the coordinator sees it wait, the practice
    approves with `fedpeer-agent approve`, and the receipt comes back, with no restart."""
    running = await start(tmp_path / "coord")
    try:
        home = await _enrolled(running, tmp_path)
        (home / "agent.toml").write_text("[disclosure]\nmanual_approval = true\n")
        agent = practice_agent(home, str(_extract(tmp_path / "extract")))
        async with _following(agent):
            async with admin(running) as adm:
                round_ = await adm.start_round(AS_OF, ROUND_SET)
            await _wait_for(running, round_.round_id, "awaiting approval", 60)
            assert running.store.signed_release(round_.round_id, PRACTICE) is None
            await asyncio.to_thread(_airlock, "approve", round_.round_id, "--home", str(home))
            took = await _wait_for(running, round_.round_id, "submitted", 60)
            # The coordinator stores before it answers: the agent records the receipt a
            # moment after the store shows the submission.
            for _ in range(100):
                entry = agent.outbox.get(round_.round_id)
                if entry is not None and entry.state == Delivery.ACKNOWLEDGED:
                    break
                await asyncio.sleep(0.1)
        assert entry is not None and entry.state == Delivery.ACKNOWLEDGED and entry.receipt
        print(f"approval to receipt: {took:.1f} s")
    finally:
        await running.stop(0)


async def test_a_round_failed_on_a_broken_extract_is_answered_once_it_is_fixed(
    tmp_path: Path,
) -> None:
    running = await start(tmp_path / "coord")
    try:
        home = await _enrolled(running, tmp_path)
        extract = _extract(tmp_path / "extract")
        (extract / "patients.csv").rename(tmp_path / "patients.csv")  # broken: no patients
        agent = practice_agent(home, str(extract), poll_seconds=0.5)
        async with _following(agent):
            async with admin(running) as adm:
                round_ = await adm.start_round(AS_OF, ROUND_SET)
            await asyncio.sleep(3)  # announced, prepared, failed; polls see no change
            assert await _state(running, round_.round_id) == "pending"
            assert agent.outbox.get(round_.round_id) is None  # nothing stored, nothing sent
            (tmp_path / "patients.csv").rename(extract / "patients.csv")  # fixed
            await _wait_for(running, round_.round_id, "submitted", 60)
    finally:
        await running.stop(0)


async def test_run_once_exits_non_zero_when_it_sent_nothing(tmp_path: Path) -> None:
    running = await start(tmp_path / "coord")
    try:
        home = await _enrolled(running, tmp_path)
        extract = _extract(tmp_path / "extract")
        app = typer.Typer()
        cli_network.register(app)
        args = ["run", "--home", str(home), "--extract", str(extract), "--once"]
        quiet = await asyncio.to_thread(CliRunner().invoke, app, args)
        assert quiet.exit_code == 0 and "No open rounds" in quiet.output  # nothing to send
        async with admin(running) as adm:
            round_ = await adm.start_round(AS_OF, ROUND_SET)
        (extract / "patients.csv").unlink()
        broken = await asyncio.to_thread(CliRunner().invoke, app, args)
        assert broken.exit_code == 1, broken.output
        assert f"round {round_.round_id}: failed" in broken.output
        assert "Nothing was sent: 1 round(s) still unanswered." in broken.output
        _extract(extract)
        fixed = await asyncio.to_thread(CliRunner().invoke, app, args)
        assert fixed.exit_code == 0 and f"round {round_.round_id}: submitted" in fixed.output
    finally:
        await running.stop(0)


class FakeTime:
    """A clock and a sleep that moves it: hours of retries in no time."""

    def __init__(self) -> None:
        self.now = dt.datetime.now(dt.UTC)
        self.waits: list[float] = []

    def clock(self) -> dt.datetime:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += dt.timedelta(seconds=seconds)


async def test_transient_failures_are_retried_with_full_jitter_until_the_deadline(
    tmp_path: Path,
) -> None:
    """The coordinator's store answers UNAVAILABLE on every submission: the agent tries
    again with waits uniform in [0, min(cap, base * 2**n)] until the next wait would pass
    the round's deadline, then keeps the release pending; it is stored once the store is
    back."""
    init_home(tmp_path / "coord")
    failing = Failing(_locked, times=10_000)
    config = CoordinatorConfig(home=tmp_path / "coord", announce_poll_seconds=0.2)
    running = await start_coordinator(config, document_check=failing)
    try:
        home = await _enrolled(running, tmp_path, "T1")
        deadline = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=2)
        async with admin(running) as adm:
            round_ = await adm.start_round(AS_OF, DEFINITIONS, deadline)
        fake = FakeTime()
        policy = RetryPolicy(1.0, 16.0, 3, fake.clock, fake.sleep, random.Random(7))
        agent = Agent(home, fixed_prepare("T1"), retry=policy)
        with pytest.raises(CoordinatorUnreachable, match="store is unavailable"):
            await agent.run_once()
        tries = 10_000 - failing.left
        assert tries == len(fake.waits) + 1 >= 10  # far past max_attempts: the deadline rules
        for n, wait in enumerate(fake.waits, start=1):
            assert 0.0 <= wait <= min(16.0, 2.0 ** (n - 1))
        assert len(set(fake.waits)) == len(fake.waits)  # jittered, not a fixed ladder
        assert fake.now < deadline <= fake.now + dt.timedelta(seconds=16)
        (pending,) = agent.outbox.entries(Delivery.PENDING)  # kept: nobody said it was invalid
        assert pending.round_id == round_.round_id and pending.deadline_at == deadline
        failing.left = 0
        outcomes = await Agent(home, fixed_prepare("T1")).resend()
        assert [o.status for o in outcomes] == ["submitted"]
        assert running.store.signed_release(round_.round_id, "T1") is not None
    finally:
        await running.stop(0)


def test_what_counts_as_transient() -> None:
    def Rpc(code: grpc.StatusCode) -> grpc.aio.AioRpcError:
        return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata())

    for code in ("UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED"):
        assert is_transient(Rpc(getattr(grpc.StatusCode, code)))
    for code in ("FAILED_PRECONDITION", "INVALID_ARGUMENT", "INTERNAL", "PERMISSION_DENIED"):
        assert not is_transient(Rpc(getattr(grpc.StatusCode, code)))
    assert is_transient(OSError(errno.EMFILE, "Too many open files"))
    assert is_transient(OSError(errno.ENFILE, "File table overflow"))
    assert not is_transient(OSError(errno.ENOENT, "No such file"))
