"""Group commit: the submissions that arrive together are stored in one transaction.

A commit costs the database a flush (SQLite's fsync, PostgreSQL's WAL write) whatever it
holds, so committing one submission at a time caps a coordinator at a few hundred a
second. One writer task per process takes every submission waiting, stores them with
``Store.record_submissions`` (one transaction, each judged as if alone: a resend gets the
first receipt, other content a conflict), and hands each caller its own outcome. A
caller's receipt still comes only after the commit that holds its submission.
"""

from __future__ import annotations

import asyncio

from coordinator.background import stop_task
from coordinator.store import PendingSubmission, Store
from fedpeer.collection import Receipt

MAX_BATCH = 500  # submissions in one transaction; a few MB of documents at most


class GroupCommit:
    """One writer task storing waiting submissions together; ``record`` awaits one's outcome."""

    def __init__(self, store: Store, window_seconds: float = 0.002) -> None:
        self._store = store
        self._window = window_seconds  # how long a lone submission waits for company
        self._queue: asyncio.Queue[tuple[PendingSubmission, asyncio.Future[Receipt]]] = (
            asyncio.Queue()
        )
        self._task: asyncio.Task[None] | None = None

    async def record(self, pending: PendingSubmission) -> Receipt:
        """Store ``pending`` with whatever else is waiting; its receipt of record, or raise."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._write_forever())
        outcome: asyncio.Future[Receipt] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((pending, outcome))
        # A caller that hangs up cancels only its wait, not its place in the batch: the
        # commit goes ahead, and a resend is answered with the same receipt.
        return await outcome

    def _waiting(self, batch: list[tuple[PendingSubmission, asyncio.Future[Receipt]]]) -> None:
        while len(batch) < MAX_BATCH and not self._queue.empty():
            batch.append(self._queue.get_nowait())

    async def _write_forever(self) -> None:
        while True:
            batch = [await self._queue.get()]
            self._waiting(batch)
            if len(batch) < MAX_BATCH and self._window > 0:
                await asyncio.sleep(self._window)
                self._waiting(batch)
            try:
                outcomes = await asyncio.to_thread(
                    self._store.record_submissions, [pending for pending, _ in batch]
                )
            except Exception as exc:  # the database failed: every caller hears of it
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), outcome in zip(batch, outcomes, strict=True):
                if future.done():
                    continue
                if isinstance(outcome, Exception):
                    future.set_exception(outcome)
                else:
                    future.set_result(outcome)

    async def stop(self) -> None:
        """Stop the writer (after the servers stopped: no caller is waiting)."""
        await stop_task(self._task)
        self._task = None
