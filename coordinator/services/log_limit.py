"""Logging what unauthenticated callers cause, without letting them fill the disk.

Anyone who can reach the enrolment port can make the coordinator refuse (or fail) a
call as often as they like. Each reason gets a small token bucket: a burst of lines, then
about one a second; what is held back is counted, and the next line that gets through
says how many similar messages were suppressed since the last one.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

BURST = 10  # lines let through at once for one reason
PER_SECOND = 1.0  # lines per second for one reason after a burst
MAX_REASONS = 256  # distinct reasons tracked; more are counted under one overflow bucket


@dataclass
class _Bucket:
    tokens: float
    at: float
    suppressed: int = 0


class RateLimitedLog:
    """A logger's lines, at most ``burst`` at once and ``per_second`` after, per reason."""

    def __init__(
        self,
        logger: logging.Logger,
        burst: int = BURST,
        per_second: float = PER_SECOND,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = logger
        self._burst, self._rate, self._clock = burst, per_second, clock
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()  # servicers log from the event loop and from threads

    def _take(self, reason: str) -> int | None:
        """Suppressed count since the last line when a line may go out now, else None."""
        now = self._clock()
        with self._lock:
            if reason not in self._buckets and len(self._buckets) >= MAX_REASONS:
                reason = "overflow"
            bucket = self._buckets.setdefault(reason, _Bucket(float(self._burst), now))
            bucket.tokens = min(self._burst, bucket.tokens + (now - bucket.at) * self._rate)
            bucket.at = now
            if bucket.tokens < 1:
                bucket.suppressed += 1
                return None
            bucket.tokens -= 1
            suppressed, bucket.suppressed = bucket.suppressed, 0
            return suppressed

    def log(self, level: int, reason: str, message: str, *args: object, **kw: object) -> bool:
        """Log ``message`` under ``reason`` unless its bucket is empty; whether it went out."""
        suppressed = self._take(reason)
        if suppressed is None:
            return False
        if suppressed:
            message += " (%d similar messages suppressed)"
            args = (*args, suppressed)
        self._log.log(level, message, *args, **kw)  # type: ignore[arg-type]
        return True
