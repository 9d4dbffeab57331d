"""Work done in the agent's child process comes back as if done in the agent."""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path

import pytest

from agent import isolated
from agent.isolated import ChildProcessFailed, ChildTraceback, run_isolated
from fedpeer.errors import ExtractError


def answer(x: int) -> tuple[int, int]:
    logging.getLogger("fedpeer.agent").warning("event=child_said x=%d", x)
    return x * 2, os.getpid()


def malformed() -> None:
    raise ExtractError("a date is not a date", table="patients", line=3, column="born")


def bug() -> None:
    raise ValueError("a bug")


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def test_the_answer_and_the_log_come_back(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    value, pid = run_isolated(answer, 21)
    assert value == 42 and pid != os.getpid()
    said = [r for r in caplog.records if r.getMessage() == "event=child_said x=21"]
    assert len(said) == 1 and said[0].name == "fedpeer.agent"
    pool = isolated._child._pool
    assert run_isolated(answer, 1)[1] != os.getpid()
    assert isolated._child._pool is pool  # work soon after goes to the child(ren) running


def test_errors_come_back_as_themselves() -> None:
    with pytest.raises(ExtractError) as user_error:
        run_isolated(malformed)
    assert str(user_error.value) == "table patients, line 3, column born: a date is not a date"
    assert user_error.value.__cause__ is None  # a user error: no traceback to show
    with pytest.raises(ValueError, match="a bug") as a_bug:
        run_isolated(bug)
    cause = a_bug.value.__cause__
    assert isinstance(cause, ChildTraceback) and "Traceback" in cause.text


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="POSIX signals")
def test_a_child_that_dies_fails_the_work_not_the_agent() -> None:
    with pytest.raises(ChildProcessFailed):
        run_isolated(die)
    assert run_isolated(answer, 2)[0] == 4  # a new child takes the next work


def _children() -> set[str]:
    found: set[str] = set()
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        found |= set((task / "children").read_text().split())
    return found


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads /proc")
def test_the_child_ends_once_idle_and_leaves_nothing_behind() -> None:
    isolated.end_child_process()
    before = _children()
    run_isolated(answer, 3)
    assert isolated._child.running and len(_children() - before) == 2  # child and tracker
    isolated.end_child_process()
    assert not isolated._child.running
    assert _children() == before  # neither the child nor multiprocessing's resource tracker
