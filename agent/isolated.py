"""Reading the extract happens in a child process, so the waiting agent stays small.

An agent waits for weeks between rounds holding one connection. What reading an extract
takes (DuckDB, SQLAlchemy, NumPy, the engines, and the memory of a round) is loaded in a
child process, never in the agent: the child is started when work arrives, takes the
work that follows soon after (a round, a study's step), and exits ``LINGER_SECONDS``
after the last, so the machine gets the memory back. An agent has one job at a time, so
one child; only where several agents share a process (the demo, the tests) do up to
``WORKERS`` children work side by side. ``spawn`` starts a child the same way on Linux
and Windows, from a fresh interpreter (nothing of the agent's state is copied but the
arguments).

The child's log records come back with its answer and go to the agent's own log, so a
round reads in the log (journald, a service wrapper's file) as if it ran in the agent.
A user error (``FedpeerError``) raised in the child is raised again here as itself; a
bug keeps the child's traceback as its cause; a child that dies (killed, out of memory)
is a ``ChildProcessFailed``, so the round fails, is logged and is tried again later.
"""

from __future__ import annotations

import gc
import logging
import multiprocessing
import os
import pickle
import threading
import traceback
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from multiprocessing import resource_tracker
from typing import Any, ParamSpec, TypeVar

from fedpeer.errors import FedpeerError

P = ParamSpec("P")
T = TypeVar("T")


class ChildProcessFailed(FedpeerError):
    """The child process doing a round's work ended without an answer."""


class ChildTraceback(Exception):
    """The traceback of a bug in the child process, attached as the cause."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return "\n" + self.text


@dataclass
class _Outcome:
    value: Any = None
    error: BaseException | None = None
    child_traceback: str = ""
    records: list[logging.LogRecord] = field(default_factory=list)


class _Collect(logging.Handler):
    """Keeps the child's log records, made picklable, to send back with its answer."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        record.msg, record.args = record.getMessage(), None
        if record.exc_info:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
        self.records.append(record)


def _portable(error: BaseException) -> BaseException:
    """The error itself if it survives pickling, else one with the same message."""
    try:
        return pickle.loads(pickle.dumps(error))
    except Exception:
        kind = FedpeerError if isinstance(error, FedpeerError) else RuntimeError
        return kind(f"{type(error).__name__}: {error}")


def _call_in_child(
    fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], level: int
) -> _Outcome:
    root = logging.getLogger()
    root.setLevel(level)
    collect = _Collect()
    root.addHandler(collect)
    outcome = _Outcome()
    try:
        outcome.value = fn(*args, **kwargs)
    except Exception as exc:
        outcome.error = _portable(exc)
        if not isinstance(exc, FedpeerError):
            outcome.child_traceback = traceback.format_exc()
    outcome.records = collect.records
    return outcome


LINGER_SECONDS = 15.0
# Several agents share a process only in the demo and the tests; an agent has one job at a time.
WORKERS = min(4, os.cpu_count() or 1)


class _Child:
    """The child process(es), started on demand and ended once idle."""

    def __init__(self, linger_seconds: float) -> None:
        self.linger_seconds = linger_seconds
        self._lock = threading.Lock()
        self._pool: ProcessPoolExecutor | None = None
        self._busy = 0
        self._timer: threading.Timer | None = None

    def call(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        level = logging.getLogger().getEffectiveLevel()
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if self._pool is None:
                context = multiprocessing.get_context("spawn")
                self._pool = ProcessPoolExecutor(max_workers=WORKERS, mp_context=context)
            pool = self._pool
            self._busy += 1
        try:
            return pool.submit(_call_in_child, fn, args, kwargs, level).result()
        except BrokenProcessPool as exc:
            with self._lock:
                if self._pool is pool:
                    self._pool = None
            raise ChildProcessFailed(
                "the process reading the extract ended without an answer (killed, or out of "
                "memory?); the work is tried again later"
            ) from exc
        finally:
            with self._lock:
                self._busy -= 1
                if self._busy == 0 and self._pool is pool:
                    self._timer = threading.Timer(self.linger_seconds, self.close_if_idle)
                    self._timer.daemon = True
                    self._timer.start()

    def close_if_idle(self) -> None:
        """End the child process unless work has arrived meanwhile."""
        # All under the lock: new work waits the moment this takes, then starts afresh.
        with self._lock:
            if self._busy or self._pool is None:
                return
            self._pool.shutdown(wait=True)
            self._pool = self._timer = None
            gc.collect()  # the pool's semaphores unregister themselves when collected
            # On POSIX, spawning started multiprocessing's resource tracker, a process that
            # would otherwise stay beside the agent for good; the next spawn starts another.
            stop = getattr(resource_tracker._resource_tracker, "_stop", None)
            if stop is not None:
                stop()

    @property
    def running(self) -> bool:
        """Whether a child process is there now (started, not yet ended)."""
        return self._pool is not None


_child = _Child(LINGER_SECONDS)


def run_isolated(fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """``fn(*args, **kwargs)`` in the child process; blocks until it has answered.

    ``fn``, its arguments and its result must pickle (a module-level function, plain
    values). Call it from a thread (``asyncio.to_thread``) in asyncio code.
    """
    outcome: _Outcome = _child.call(fn, args, kwargs)
    for record in outcome.records:
        logging.getLogger(record.name).handle(record)
    if outcome.error is not None:
        if outcome.child_traceback:
            raise outcome.error from ChildTraceback(outcome.child_traceback)
        raise outcome.error
    return outcome.value


def end_child_process() -> None:
    """End the child process now if it is idle (tests, benchmarks, shutdown)."""
    _child.close_if_idle()
