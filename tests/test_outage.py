"""A 15 s database outage during a round loses nothing, on SQLite and PostgreSQL (issue 10).

Twenty enrolled practices, their real agents following the round (``run_forever``, the
service's loop) over mutual TLS. Each has its answer ready when the store goes away:

- SQLite: another process holds the store's write lock (a backup, a stuck admin query);
- PostgreSQL: the database refuses connections (``ALLOW_CONNECTIONS false``) and the
  coordinator's connections are cut (``pg_terminate_backend``), as when it is down;
- PostgreSQL restarting: the coordinator's connections are cut again and again while
  the agents submit, so its pool holds dead connections it must replace.

While the store is away the agents hear UNAVAILABLE ("the store is unavailable"), never
a rejection, and keep their answers pending; once it is back each answer is stored
exactly once and acknowledged, by the same coordinator process and its same engine.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from _coordinator_helpers import AS_OF, DEFINITIONS, admin, document_for, rows_for, start
from _following import acknowledged, following, stored_per_practice, until

from agent.client import Agent, enrol
from agent.outbox import Delivery
from coordinator.server import RunningCoordinator
from fedpeer.collection import ReleaseDocument, Round

pytestmark = pytest.mark.slow

PRACTICES = 20
OUTAGE_SECONDS = 15.0
RECOVERY_SECONDS = 20.0  # from the store's return to the last receipt; measured ~2-4 s


@dataclass
class Site:
    """A coordinator in this process, its enrolled practices' agents, and their gate."""

    running: RunningCoordinator
    agents: list[Agent]
    asked: list[str]  # the practices whose prepare() has been called
    gate: asyncio.Event  # prepare() answers once it is set


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[Callable[[str | None], Awaitable[Site]]]:
    """Make a Site on a store URL (SQLite in the home when None); stopped afterwards."""
    made: list[RunningCoordinator] = []

    async def make(db_url: str | None) -> Site:
        running = await start(tmp_path / "coord", db_url)
        made.append(running)
        asked: list[str] = []
        gate = asyncio.Event()

        def gated(practice_id: str) -> Callable[[Round], Awaitable[ReleaseDocument]]:
            async def prepare(round_: Round) -> ReleaseDocument:
                asked.append(practice_id)
                await gate.wait()
                return document_for(practice_id, round_, rows_for(practice_id))

            return prepare

        agents = []
        async with admin(running) as adm:
            for k in range(PRACTICES):
                practice_id = f"O{k:02d}"
                token, _ = await adm.invite(practice_id, f"Outage {k}", "West")
                home = tmp_path / practice_id
                await enrol(running.address, running.enrol_port, token, home)
                # Short waits between tries (existing seams) so the test is quick; the
                # study poll is also when a following agent resends what is pending.
                agents.append(
                    Agent(
                        home,
                        gated(practice_id),
                        backoff_seconds=0.2,
                        max_backoff_seconds=2.0,
                        study_poll_seconds=1.0,
                    )
                )
        return Site(running, agents, asked, gate)

    yield make
    for running in made:
        await running.stop(0)


async def _own_thread(action: Callable[[], None]) -> None:
    """Run ``action`` on a thread of its own: the coordinator in this process may hold
    every thread of the default pool waiting on the store."""
    with ThreadPoolExecutor(1) as pool:
        await asyncio.get_running_loop().run_in_executor(pool, action)


async def _round_through(
    site: Site,
    store_goes: Callable[[], None],
    store_returns: Callable[[], None],
    caplog: pytest.LogCaptureFixture,
) -> str:
    """Open a round, take the store away as the agents submit, bring it back; the round id.

    Asserts what must hold while the store is away and after: every answer pending, none
    rejected, UNAVAILABLE heard, then every answer acknowledged.
    """
    caplog.set_level(logging.INFO)
    async with following(site.agents):
        async with admin(site.running) as adm:
            round_ = await adm.start_round(AS_OF, DEFINITIONS)
        await until(lambda: len(site.asked) == PRACTICES, 30, "every agent prepares")
        await _own_thread(store_goes)
        went = time.monotonic()
        site.gate.set()  # every agent submits now, into the outage
        await asyncio.sleep(OUTAGE_SECONDS - (time.monotonic() - went))
        entries = [a.outbox.get(round_.round_id) for a in site.agents]
        assert all(e is not None and e.state == "pending" for e in entries), [
            e and e.state for e in entries
        ]
        await _own_thread(store_returns)
        back = await until(
            lambda: acknowledged(site.agents, round_.round_id),
            RECOVERY_SECONDS,
            "every answer is acknowledged after the outage",
        )
        print(f"all {PRACTICES} acknowledged {back:.1f} s after the store came back")
    messages = [r.getMessage() for r in caplog.records]
    assert any("event=store_unavailable" in m for m in messages)  # the coordinator said so
    assert any("event=retry" in m and "reason=UNAVAILABLE" in m for m in messages)  # heard
    assert not any("event=rejected" in m or "event=round_failed" in m for m in messages)
    assert not any(a.outbox.entries(Delivery.REJECTED) for a in site.agents)
    return round_.round_id


def _exactly_once(url: str, round_id: str) -> None:
    assert stored_per_practice(url, round_id) == {f"O{k:02d}": 1 for k in range(PRACTICES)}


async def test_a_locked_sqlite_store_for_15_s_loses_nothing(
    site, caplog: pytest.LogCaptureFixture
) -> None:  # type: ignore[no-untyped-def]
    """Another process holds the write lock: each submission waits out the busy timeout
    and hears UNAVAILABLE, or waits until the lock goes."""
    s = await site(None)
    locked, release, released = threading.Event(), threading.Event(), threading.Event()
    database = s.running.home.database

    def hold_the_lock() -> None:
        db = sqlite3.connect(database, isolation_level=None)
        db.execute("BEGIN EXCLUSIVE")
        locked.set()
        release.wait()
        db.execute("COMMIT")
        db.close()
        released.set()

    holder = threading.Thread(target=hold_the_lock)

    def lock() -> None:
        holder.start()
        locked.wait()

    def unlock() -> None:
        release.set()
        holder.join()

    round_id = await _round_through(s, lock, unlock, caplog)
    assert released.is_set()
    _exactly_once(s.running.store.url, round_id)


def _cut_connections(conn: sa.Connection, database: str) -> int:
    """End every other session on ``database``; how many there were."""
    ended = conn.execute(
        sa.text(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = :d AND pid <> pg_backend_pid()"
        ),
        {"d": database},
    ).scalar()
    return int(ended or 0)


@dataclass(frozen=True)
class Database:
    """A private PostgreSQL database, and the server it is on, which can take it down."""

    server: sa.Engine  # on another database of the same server
    name: str
    url: str

    def allow_connections(self, allow: bool) -> None:
        """Let sessions in, or refuse new ones and cut those open (the database is down)."""
        with self.server.execution_options(isolation_level="AUTOCOMMIT").connect() as conn:
            conn.execute(sa.text(f'ALTER DATABASE "{self.name}" ALLOW_CONNECTIONS {allow}'))
            if not allow:
                assert _cut_connections(conn, self.name) > 0  # the coordinator's were open


@pytest.fixture
def database(
    postgres_engine: sa.Engine, postgres_database: str, postgres_database_url: str
) -> Database:
    """A fresh PostgreSQL database for one test."""
    return Database(postgres_engine, postgres_database, postgres_database_url)


@pytest.mark.postgres
async def test_a_postgresql_database_down_for_15_s_loses_nothing(
    database: Database, site, caplog: pytest.LogCaptureFixture
) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.INFO)
    s = await site(database.url)
    round_id = await _round_through(
        s,
        lambda: database.allow_connections(False),
        lambda: database.allow_connections(True),
        caplog,
    )
    _exactly_once(database.url, round_id)

    # The process listens for other processes' rounds again too (docs/scaling.md).
    def listening() -> int:
        return sum(r.getMessage().startswith("event=listening") for r in caplog.records)

    await until(lambda: listening() >= 2, 15, "the round listener reconnects")  # 1: at start


@pytest.mark.postgres
async def test_postgresql_restarting_under_a_round_loses_nothing(
    database: Database, site, caplog: pytest.LogCaptureFixture
) -> None:  # type: ignore[no-untyped-def]
    """Connections are cut every 0.2 s for 3 s while the agents submit, as a restart
    does: dead pooled connections are replaced, and every answer is stored once."""
    s = await site(database.url)
    caplog.set_level(logging.INFO)
    cuts = 0
    async with following(s.agents):
        async with admin(s.running) as adm:
            round_ = await adm.start_round(AS_OF, DEFINITIONS)
        await until(lambda: len(s.asked) == PRACTICES, 30, "every agent prepares")
        with database.server.execution_options(isolation_level="AUTOCOMMIT").connect() as conn:
            cuts += _cut_connections(conn, database.name)  # the pool is all dead now
            s.gate.set()
            ends = time.monotonic() + 3
            while time.monotonic() < ends:
                await asyncio.sleep(0.2)
                cuts += _cut_connections(conn, database.name)
        back = await until(
            lambda: acknowledged(s.agents, round_.round_id), RECOVERY_SECONDS, "all acknowledged"
        )
        print(f"{cuts} connections cut; all acknowledged {back:.1f} s after the last cut")
    assert cuts > 0
    messages = [r.getMessage() for r in caplog.records]
    assert not any("event=rejected" in m or "event=internal_error" in m for m in messages)
    _exactly_once(database.url, round_.round_id)
