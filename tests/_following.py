"""Real agents following rounds for the tests, and how to wait on them and on the store."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterable

import sqlalchemy as sa

from agent.client import Agent
from agent.outbox import Delivery


@contextlib.asynccontextmanager
async def following(agents: Iterable[Agent]) -> AsyncIterator[None]:
    """The agents following rounds (``run_forever``, the service's loop) until the block ends."""
    stop = asyncio.Event()
    tasks = [asyncio.create_task(a.run_forever(stop)) for a in agents]
    try:
        yield
    finally:
        stop.set()
        await asyncio.gather(*tasks)


async def until(done: Callable[[], bool], seconds: float, what: str) -> float:
    """Wait until ``done()`` holds, failing after ``seconds``; how long it took."""
    started = time.monotonic()
    while not done():
        assert time.monotonic() - started < seconds, f"not within {seconds:.0f} s: {what}"
        await asyncio.sleep(0.05)
    return time.monotonic() - started


def acknowledged(agents: Iterable[Agent], round_id: str) -> bool:
    """Whether every agent holds the coordinator's receipt for ``round_id``."""
    return all(
        (entry := a.outbox.get(round_id)) is not None and entry.state == Delivery.ACKNOWLEDGED
        for a in agents
    )


def stored_per_practice(url: str, round_id: str) -> dict[str, int]:
    """How many submissions the store holds for each practice in a round, read directly."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT practice_id, count(*) FROM submissions WHERE round_id = :r"
                    " GROUP BY practice_id"
                ),
                {"r": round_id},
            ).all()
    finally:
        engine.dispose()
    return {p: int(n) for p, n in rows}
