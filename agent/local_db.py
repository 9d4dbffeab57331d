"""The agent's local files (ledger, outbox, audit log, studies): private, and one way to write.

They hold what must not be read by other users of a practice machine: true population
sizes and salted fingerprints (ledger), signed releases (outbox), study keys (studies).
Each is created readable by its owner only, whatever the umask (SQLite gives its -wal and
-shm files the database file's mode).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PRIVATE = 0o600


def private_file(path: Path) -> Path:
    """Create ``path`` (if it is not there) readable and writable by its owner only."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, PRIVATE)
    os.close(fd)
    os.chmod(path, PRIVATE)  # O_CREAT's mode does not apply to a file that existed
    return path


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
