"""Prompt round announcements across coordinator processes: PostgreSQL LISTEN/NOTIFY.

Several coordinator processes may share one PostgreSQL store (docs/scaling.md). The
store NOTIFYs ``ROUNDS_CHANNEL`` in the transaction that opens or closes a round, so the
notification leaves only at commit. Each process holds one extra connection that LISTENs
on that channel and refreshes its round announcer at once, so an agent connected to any
process hears of a round started on another within a moment.

Polling stays as the fallback: a notification missed while the listener reconnects (a
database restart) is made up when it reconnects, and by the announcer's poll. SQLite has
no notifications and serves one process: there the poll alone is enough.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import psycopg
import sqlalchemy as sa

from coordinator.store import ROUNDS_CHANNEL, Store

log = logging.getLogger("fedpeer.coordinator")

OnChange = Callable[[], Awaitable[None]]


def conninfo(url: str) -> str:
    """A libpq connection string (URI) for a SQLAlchemy PostgreSQL URL, whatever its driver.

    The listener always uses psycopg 3 (a coordinator dependency), even under a store
    URL naming another driver.
    """
    return sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


class RoundListener:
    """One LISTEN connection per process, reconnecting with backoff, calling ``on_change``.

    ``on_change`` must not raise: a store outage is its own to log.
    """

    def __init__(
        self,
        url: str,
        retry_seconds: float = 0.5,
        max_retry_seconds: float = 5.0,
        ping_seconds: float = 30.0,
    ) -> None:
        self._conninfo = conninfo(url)
        self._retry = retry_seconds
        self._max_retry = max_retry_seconds
        self._ping = ping_seconds  # an idle LISTEN connection is checked this often

    async def listen_forever(self, on_change: OnChange) -> None:
        """Call ``on_change`` at each notification, reconnecting when the database goes."""
        delay = self._retry
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self._conninfo, autocommit=True, connect_timeout=10
                ) as conn:
                    await conn.execute(f"LISTEN {ROUNDS_CHANNEL}")
                    log.info("event=listening channel=%s", ROUNDS_CHANNEL)
                    delay = self._retry
                    # Whatever changed while this process was not listening counts too.
                    await on_change()
                    while True:
                        async for _ in conn.notifies(timeout=self._ping):
                            await on_change()
                        # Quiet for a while: make sure the connection is still there.
                        await conn.execute("SELECT 1")
            except (psycopg.Error, OSError) as exc:
                # The database is restarting or refusing connections: the poll carries on.
                log.warning("event=listen_failed reason=%s wait=%.1fs", type(exc).__name__, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._max_retry)


def round_listener(store: Store) -> RoundListener | None:
    """A listener for ``store``'s round changes, or None where the database has none."""
    if sa.make_url(store.url).get_backend_name() != "postgresql":
        return None
    return RoundListener(store.url)
