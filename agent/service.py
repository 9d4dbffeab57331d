"""The agent as a service: what systemd or a Windows service wrapper runs for months.

    fedpeer-agent-service --home DIR --extract DIR|URL [--log-file FILE]

It does what ``fedpeer-agent run`` does (follow rounds as they open, take study steps),
with what a service needs and a terminal does not:

- **small while it waits.** Only the client is loaded (gRPC, cryptography, the agent's
  own modules); no command-line framework, and nothing that reads an extract, which is
  done in a child process when work arrives (``agent.isolated``);
- **logs that rotate.** To stderr by default, which journald (Linux) or the service
  wrapper (Windows) keeps and rotates; or with ``--log-file`` to a file rotated by size
  (``--log-max-mb``, ``--log-backups``). Log lines carry events, round and study ids and
  reasons, never patient data: the agent has none outside the child process, and the
  child's own log lines are the pipeline's, which name questions and counts of units;
- **a clean stop.** SIGTERM (systemd) or Ctrl+C / Ctrl+Break (a Windows wrapper) ends
  the round subscription and exits 0; a user error (not enrolled, revoked, an agent
  too old for the coordinator) exits 1 with one line, so the service manager restarts it
  later and the log says what to do.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import logging
import logging.handlers
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from agent.client import Agent
from agent.location import is_url
from agent.pipeline import RoundPipeline
from agent.studies import StudyWorker
from fedpeer import __version__
from fedpeer.errors import FedpeerError
from fedpeer.private_files import open_private

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
JOURNAL_FORMAT = "%(levelname)s %(name)s %(message)s"  # journald adds its own time


def extract_stamp(extract: str) -> object:
    """What changes when a folder extract is rewritten: its files' names, sizes and times.

    None for a database URL, whose changes cannot be seen from here: a round that failed
    on it is then tried again at every poll.
    """
    if is_url(extract):
        return None
    return sorted(
        (str(p), s.st_size, s.st_mtime_ns)
        for p in Path(extract).rglob("*")
        if p.is_file() and (s := p.stat())
    )


def practice_agent(home: Path, extract: str, poll_seconds: float = 30.0) -> Agent:
    """An enrolled agent answering rounds and studies from this practice's extract.

    Every ``poll_seconds`` while following it also answers a round whose release the
    practice has approved since, or that failed on an extract since changed.
    """
    pipeline = RoundPipeline(extract, home)
    return Agent(
        home,
        pipeline.prepare,
        on_acknowledged=pipeline.acknowledged,
        studies=StudyWorker(home, extract),
        study_poll_seconds=poll_seconds,
        stamp=functools.partial(extract_stamp, extract),
    )


def parser() -> argparse.ArgumentParser:
    """The service's options."""
    p = argparse.ArgumentParser(
        prog="fedpeer-agent-service",
        description="Run the fedpeer agent as a service: follow rounds and studies until stopped.",
    )
    p.add_argument("--home", type=Path, required=True, help="The enrolled agent's directory.")
    p.add_argument(
        "--extract", required=True, help="CSV or Parquet directory, or a SQLAlchemy URL."
    )
    p.add_argument(
        "--log-file",
        type=Path,
        help="Write the log to this file, rotated by size (default: stderr, for the journal).",
    )
    p.add_argument(
        "--log-max-mb", type=float, default=10.0, help="Rotate the log file at this size."
    )
    p.add_argument("--log-backups", type=int, default=5, help="How many rotated log files to keep.")
    p.add_argument("--version", action="version", version=f"fedpeer {__version__}")
    return p


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parsed options; exits 2 with a usage line when they are wrong."""
    options = parser()
    args = options.parse_args(argv)
    if args.log_max_mb <= 0 or args.log_backups < 1:
        options.error("--log-max-mb must be positive and --log-backups at least 1")
    return args


class PrivateRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """A size-rotated log whose every file, rotated ones included, is owner-only."""

    def _open(self):  # type: ignore[no-untyped-def]  # logging's own hook for each new file
        fd = open_private(Path(self.baseFilename), os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        return os.fdopen(fd, "a", encoding=self.encoding, errors=self.errors)


def log_handler(args: argparse.Namespace) -> logging.Handler:
    """A size-rotated file with ``--log-file``, else stderr (journald adds the time)."""
    if args.log_file is None:
        handler: logging.Handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(JOURNAL_FORMAT))
        return handler
    args.log_file.parent.mkdir(parents=True, exist_ok=True)
    handler = PrivateRotatingFileHandler(
        args.log_file,
        maxBytes=int(args.log_max_mb * 1024 * 1024),
        backupCount=args.log_backups,
        encoding="utf-8",
    )
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    return handler


async def serve(agent: Agent) -> None:
    """Follow rounds until SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        # Windows event loops have no signal handlers; Ctrl+C still raises there.
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await agent.run_forever(stop)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``fedpeer-agent-service``."""
    args = parse_args(argv)
    root = logging.getLogger()
    root.addHandler(log_handler(args))
    root.setLevel(logging.INFO)
    log = logging.getLogger("fedpeer.agent")
    try:
        agent = practice_agent(args.home, args.extract)
        log.info(
            "event=service_started version=%s coordinator=%s practice=%s",
            __version__,
            agent.identity.coordinator,
            agent.identity.practice_id,
        )
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve(agent))
    except FedpeerError as exc:
        # A user error: one line, no traceback (which could show local values).
        log.error("event=service_stopped reason=%s: %s", type(exc).__name__, exc)
        sys.exit(1)
    log.info("event=service_stopped reason=asked")


if __name__ == "__main__":
    main()
