"""`round schedule`: the running coordinator starts a standard round at every month end.

The coordinator's round clock is given a clock the test moves (``round_clock_now``), so
months pass in seconds; everything else is real: the server process's own scheduler
task, the store (SQLite and PostgreSQL), an enrolled agent following over mutual TLS.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import time
from pathlib import Path

import pytest
from _coordinator_helpers import admin, fixed_prepare
from typer.testing import CliRunner

from agent.client import Agent, enrol
from agent.outbox import Delivery
from coordinator.ca import init_home
from coordinator.cli import app
from coordinator.round_states import RoundState
from coordinator.rounds import standard_definitions
from coordinator.server import CoordinatorConfig, start_coordinator

runner = CliRunner()


class Clock:
    """A clock the test sets; the coordinator's round clock reads it."""

    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


async def _settle(seconds: float = 1.0) -> None:
    await asyncio.sleep(seconds)  # several ticks of the round clock (every 0.1 s)


async def test_the_schedule_starts_one_round_at_each_month_end_and_closes_it_at_its_deadline(
    tmp_path: Path, db_url: str | None
) -> None:
    # Months ahead of today, so the round's real deadline (its clock + 7 days) lies ahead
    # of the real instant at which the agent submits.
    clock = Clock(dt.datetime(2027, 1, 20, 9, 0, tzinfo=dt.UTC))
    home = tmp_path / "coord"
    init_home(home)
    config = CoordinatorConfig(
        home=home,
        db_url=db_url,
        announce_poll_seconds=0.2,
        round_tick_seconds=0.1,
        # The agent answers three of the standard round's questions (fixed rows): what
        # is under test is the schedule, not the release check (tests/test_round_pipeline).
        check_releases=False,
    )
    running = await start_coordinator(config, round_clock_now=clock)
    running.home.address_file.write_text(f"{running.address}\n{running.enrol_address}\n")
    stop = asyncio.Event()
    following = None
    try:
        async with admin(running) as adm:
            token, _ = await adm.invite("S1", "Schedule Lane", "South")
            await adm.invite("S2", "Second Street", "South")  # invited, never enrolled
        await enrol(running.address, running.enrol_port, token, tmp_path / "S1")
        agent = Agent(tmp_path / "S1", fixed_prepare("S1"), study_poll_seconds=0.2)
        following = asyncio.create_task(agent.run_forever(stop))

        scheduled = await asyncio.to_thread(
            runner.invoke,
            app,
            ["round", "schedule", "--deadline-days", "7", "--quorum", "1", "--home", str(home)],
        )
        assert scheduled.exit_code == 0, scheduled.output
        assert "deadline 7 days later and a quorum of 1" in scheduled.output
        await _settle()
        assert running.store.list_rounds() == []  # December 2026 was over before it was set

        clock.now = dt.datetime(2027, 1, 31, 23, 59, tzinfo=dt.UTC)
        await _settle()
        assert running.store.list_rounds() == []  # January has not ended yet

        clock.now = dt.datetime(2027, 2, 1, 0, 5, tzinfo=dt.UTC)
        await _settle()
        (summary,) = running.store.list_rounds()
        assert summary.as_of == dt.date(2027, 1, 31) and summary.state is RoundState.OPEN
        assert summary.deadline == clock.now + dt.timedelta(days=7) and summary.quorum == 1
        round_ = running.store.round(summary.round_id)
        assert round_.definition_hashes == tuple(d.content_hash for d in standard_definitions())

        # The following agent hears of it at once and answers.
        end = time.monotonic() + 20
        while (
            entry := agent.outbox.get(summary.round_id)
        ) is None or entry.state != Delivery.ACKNOWLEDGED:
            assert time.monotonic() < end, "the agent did not answer the scheduled round"
            await asyncio.sleep(0.05)

        # A later look in the same month starts nothing more.
        clock.now = dt.datetime(2027, 2, 3, tzinfo=dt.UTC)
        await _settle()
        assert len(running.store.list_rounds()) == 1
        # Past the deadline: closing, then closed, with the quorum met.
        clock.now = dt.datetime(2027, 2, 8, 0, 6, tzinfo=dt.UTC)
        end = time.monotonic() + 20  # two ticks, the second storing the comparison
        while (status := running.store.round_status(summary.round_id, clock.now)).state in (
            RoundState.OPEN,
            RoundState.CLOSING,
        ):
            assert time.monotonic() < end, f"the round stayed {status.state}"
            await asyncio.sleep(0.1)
        assert status.state is RoundState.CLOSED and status.quorum_met
        # The next month end starts the next round.
        clock.now = dt.datetime(2027, 3, 1, 0, 1, tzinfo=dt.UTC)
        await _settle()
        assert [r.as_of for r in running.store.list_rounds()] == [
            dt.date(2027, 2, 28),
            dt.date(2027, 1, 31),
        ]
        shown = await asyncio.to_thread(
            runner.invoke, app, ["round", "schedule", "--show", "--home", str(home)]
        )
        assert "the last month end it covered is 2027-02-28" in shown.output
        off = await asyncio.to_thread(
            runner.invoke, app, ["round", "schedule", "--off", "--home", str(home)]
        )
        assert off.exit_code == 0 and "No rounds are scheduled" in off.output
        clock.now = dt.datetime(2027, 4, 1, 0, 1, tzinfo=dt.UTC)
        await _settle()
        assert len(running.store.list_rounds()) == 2
    finally:
        stop.set()
        if following is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(following, 10)
        await running.stop(0)


@pytest.mark.postgres
async def test_two_coordinators_on_one_database_start_the_scheduled_round_once(
    tmp_path: Path, postgres_url: str
) -> None:
    clock = Clock(dt.datetime(2027, 1, 20, tzinfo=dt.UTC))
    home = tmp_path / "coord"
    init_home(home)
    started = []
    try:
        for _ in range(2):
            config = CoordinatorConfig(home=home, db_url=postgres_url, round_tick_seconds=0.05)
            started.append(await start_coordinator(config, round_clock_now=clock))
        async with admin(started[0]) as adm:
            await adm.set_schedule(5, 0)
            setting = await adm.schedule()
        assert setting.enabled and setting.last_as_of == ""
        await _settle()  # the first look marks December, already over, as covered
        clock.now = dt.datetime(2027, 2, 1, 0, 1, tzinfo=dt.UTC)
        await _settle()
        assert [r.as_of for r in started[1].store.list_rounds()] == [dt.date(2027, 1, 31)]
    finally:
        for running in started:
            await running.stop(0)
