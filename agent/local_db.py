"""The agent's local files (ledger, outbox, audit log, studies): private, and one way to write.

They hold what must not be read by other users of a practice machine: true population
sizes and salted fingerprints (ledger), signed releases (outbox), study keys (studies).
Each is created readable by its owner only, whatever the umask, and never through a
symbolic link (``fedpeer.private_files``; SQLite gives its -wal and -shm files the
database file's mode).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from fedpeer.private_files import private_file

__all__ = ["connect_private", "private_file", "transaction"]


def connect_private(path: Path, **kwargs: object) -> sqlite3.Connection:
    """A SQLite connection to a private file (see ``private_file``)."""
    return sqlite3.connect(private_file(path), **kwargs)  # type: ignore[arg-type]


@contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction, taken at once (BEGIN IMMEDIATE): all of it or none of it.

    The connection must be in autocommit mode (``isolation_level=None``).
    """
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
