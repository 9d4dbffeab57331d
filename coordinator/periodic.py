"""A background task that runs one step every few seconds and survives the step failing."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger("fedpeer.coordinator")


class Periodic:
    """``step`` every ``seconds`` until stopped; a failing step is logged, not fatal."""

    def __init__(self, name: str, seconds: float, step: Callable[[], Awaitable[None]]) -> None:
        self._name, self._seconds, self._step = name, seconds, step
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            try:
                await self._step()
            except Exception as exc:  # a store outage must not stop the task for good
                log.warning("event=%s_failed reason=%s", self._name, type(exc).__name__)
            await asyncio.sleep(self._seconds)

    async def start(self) -> None:
        """Run in the background."""
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        """Stop, waiting for the step in progress to be cancelled."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
