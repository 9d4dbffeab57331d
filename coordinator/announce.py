"""Prompt news across coordinator processes: PostgreSQL LISTEN/NOTIFY.

Several coordinator processes may share one PostgreSQL store (docs/scaling.md). The
store NOTIFYs in the transaction that makes the change, so the notification leaves only
at commit: ``ROUNDS_CHANNEL`` when a round opens or closes, ``PRACTICES_CHANNEL`` (with
the practice id) when a practice is revoked or enrolled again. Each process holds one
extra connection that LISTENs on both and hands each notification to its handler, so an
agent connected to any process hears of a round started on another within a moment, and
a revoked practice's stream is closed by every process at once.

Polling stays as the fallback: a notification missed while the listener reconnects (a
database restart) is made up when it reconnects (``on_connect``), and by the
announcer's poll. SQLite has no notifications and serves one process: there the poll
alone is enough.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping

import psycopg
import sqlalchemy as sa

from coordinator.store import Store

log = logging.getLogger("fedpeer.coordinator")

OnConnect = Callable[[], Awaitable[None]]
OnNotify = Callable[[str], Awaitable[None]]  # called with the notification's payload


def conninfo(url: str) -> str:
    """A libpq connection string (URI) for a SQLAlchemy PostgreSQL URL, whatever its driver.

    The listener always uses psycopg 3 (a coordinator dependency), even under a store
    URL naming another driver.
    """
    return sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


class StoreListener:
    """One LISTEN connection per process, reconnecting with backoff, calling the handlers.

    The handlers must not raise: a store outage is their own to log.
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

    async def listen_forever(self, handlers: Mapping[str, OnNotify], on_connect: OnConnect) -> None:
        """At each notification on a channel of ``handlers``, call that channel's handler
        with its payload; at each (re)connection, ``on_connect``. Reconnects when the
        database goes."""
        delay = self._retry
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self._conninfo, autocommit=True, connect_timeout=10
                ) as conn:
                    for channel in handlers:
                        await conn.execute(f"LISTEN {channel}")
                    log.info("event=listening channels=%s", ",".join(handlers))
                    delay = self._retry
                    # Whatever changed while this process was not listening counts too.
                    await on_connect()
                    while True:
                        async for notify in conn.notifies(timeout=self._ping):
                            await handlers[notify.channel](notify.payload)
                        # Quiet for a while: make sure the connection is still there.
                        await conn.execute("SELECT 1")
            except (psycopg.Error, OSError) as exc:
                # The database is restarting or refusing connections: the poll carries on.
                log.warning("event=listen_failed reason=%s wait=%.1fs", type(exc).__name__, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._max_retry)


def store_listener(store: Store) -> StoreListener | None:
    """A listener for ``store``'s notifications, or None where the database has none."""
    if sa.make_url(store.url).get_backend_name() != "postgresql":
        return None
    return StoreListener(store.url)
