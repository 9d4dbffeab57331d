"""The agent's one retry policy: exponential backoff with full jitter, until a deadline.

What is transient: the coordinator unreachable or restarting (UNAVAILABLE), too slow
(DEADLINE_EXCEEDED), out of something for a moment (RESOURCE_EXHAUSTED), and this
machine out of file handles (EMFILE, ENFILE). A transient failure is retried; the wait
before attempt n is uniform in [0, min(cap, base * 2**n)] ("full jitter"), so agents
that failed together do not come back together. Retries go on until the round's
deadline, or for ``max_attempts`` when there is none. Anything else is not retried
here: the caller decides (a verdict rejects a release, nothing else does).

``clock``, ``sleep`` and ``rng`` are seams, so a test can run a month of retries at once.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import errno
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

import grpc

log = logging.getLogger("fedpeer.agent")
T = TypeVar("T")

TRANSIENT_CODES = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    }
)
_OUT_OF_HANDLES = frozenset({errno.EMFILE, errno.ENFILE})


def is_transient(exc: BaseException) -> bool:
    """Whether a failure may pass by itself, so that trying again is right."""
    if isinstance(exc, grpc.aio.AioRpcError):
        return exc.code() in TRANSIENT_CODES
    return isinstance(exc, OSError) and exc.errno in _OUT_OF_HANDLES


class RetriesExhausted(Exception):
    """A transient failure outlasted the retries; ``last`` is the last failure."""

    def __init__(self, last: BaseException) -> None:
        super().__init__(str(last))
        self.last = last


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class RetryPolicy:
    """How long to wait between attempts, and when to stop."""

    base_seconds: float = 0.5
    cap_seconds: float = 30.0
    max_attempts: int = 5  # without a deadline
    clock: Callable[[], dt.datetime] = _utc_now
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    rng: random.Random = field(default_factory=random.Random)

    def delay(self, attempt: int) -> float:
        """The wait after failed attempt ``attempt`` (1, 2, ...): full jitter."""
        return self.rng.uniform(0.0, min(self.cap_seconds, self.base_seconds * 2 ** (attempt - 1)))

    def may_retry(self, attempt: int, wait: float, deadline: dt.datetime | None) -> bool:
        """Whether to try again after failed attempt ``attempt`` and a wait of ``wait``."""
        if deadline is None:
            return attempt < self.max_attempts
        return self.clock() + dt.timedelta(seconds=wait) < deadline

    async def run(
        self, attempt: Callable[[], Awaitable[T]], deadline: dt.datetime | None = None
    ) -> T:
        """``attempt()`` until it succeeds, fails for good, or the retries run out."""
        tries = 0
        while True:
            tries += 1
            try:
                return await attempt()
            except Exception as exc:
                if not is_transient(exc):
                    raise
                wait = self.delay(tries)
                if not self.may_retry(tries, wait, deadline):
                    # Marked, so that a caller further out does not retry it all again.
                    raise RetriesExhausted(exc) from exc
                reason = exc.code().name if isinstance(exc, grpc.aio.AioRpcError) else "EMFILE"
                log.warning("event=retry attempt=%d wait=%.1fs reason=%s", tries, wait, reason)
                await self.sleep(wait)
