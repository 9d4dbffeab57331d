"""Real coordinator processes for the tests: ``fedpeer-coordinator init`` and ``serve``.

``python -m coordinator.entry serve`` is what the ``fedpeer-coordinator`` script runs.
Its output goes to a file beside the home (a pipe nobody reads could fill and stall it),
and a process must stop cleanly on SIGTERM: exit 0, ``event=stopped`` logged, unless the
test killed it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
START_SECONDS = 30.0  # generous: a 2-core machine shared with other test runs


@dataclass(frozen=True)
class Served:
    """A running ``serve`` process: its home, its output file and where it listens."""

    home: Path
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def address(self) -> str:
        """HOST:PORT of the mutual-TLS port, as ``serve`` recorded it in the home."""
        return (self.home / "address").read_text().split()[0]

    @property
    def enrol_port(self) -> int:
        """The enrolment port, as ``serve`` recorded it."""
        return int((self.home / "address").read_text().split()[1].rsplit(":", 1)[1])

    def output(self) -> str:
        """What the process has logged so far."""
        return self.log.read_text(errors="replace")

    def kill(self) -> None:
        """End the process at once (SIGKILL), as a crash or a lost host does."""
        self.process.kill()
        self.process.wait(timeout=30)


def init_home(home: Path) -> Path:
    """``fedpeer-coordinator init --home HOME``, in this process; returns ``home``."""
    from typer.testing import CliRunner

    from coordinator.cli import app

    result = CliRunner().invoke(app, ["init", "--home", str(home)])
    assert result.exit_code == 0, result.output
    return home


def _recorded(home: Path) -> bool:
    """Whether ``serve`` has written both addresses (the file exists a moment before)."""
    try:
        return len((home / "address").read_text().split()) == 2
    except FileNotFoundError:
        return False


@contextlib.contextmanager
def serving(
    home: Path,
    *args: str,
    env: Mapping[str, str] | None = None,
    preexec_fn: Callable[[], None] | None = None,
) -> Iterator[Served]:
    """``serve --home HOME --port 0 --enrol-port 0 ARGS`` until the block ends, then SIGTERM.

    ``env`` adds variables (FEDPEER_COORDINATOR_* settings) to this process's own;
    ``preexec_fn`` runs in the child before it starts (to set its limits, say).
    """
    (home / "address").unlink(missing_ok=True)  # a copied home must not look served
    log = home.parent / f"{home.name}.log"
    command = [sys.executable, "-m", "coordinator.entry", "serve", "--home", str(home)]
    command += ["--port", "0", "--enrol-port", "0", *args]
    with log.open("wb") as out:
        process = subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env={**os.environ, **(env or {})},
            preexec_fn=preexec_fn,
        )
    served = Served(home, process, log)
    try:
        deadline = time.monotonic() + START_SECONDS
        while not _recorded(home):
            assert process.poll() is None, served.output()
            assert time.monotonic() < deadline, f"the coordinator did not start: {served.output()}"
            time.sleep(0.05)
        yield served
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    if process.returncode == -signal.SIGKILL:
        return  # killed on purpose (Served.kill): it had no chance to stop cleanly
    assert process.returncode == 0, served.output()
    assert "event=stopped" in served.output()
