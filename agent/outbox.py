"""The agent's durable outbox: what it will send, has sent, and what came back.

A submission is written here, and committed, before it is sent; it is marked
acknowledged only when a receipt arrives. After a crash or an outage the agent resends
the stored bytes, unchanged, so the coordinator's idempotency returns the same receipt.
Practice IT can read this file to see exactly what left the practice.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from agent.local_db import connect_private
from fedpeer.collection import parse_instant


class Delivery(StrEnum):
    """Where an answer stands: waiting to be sent, receipted, or refused for good."""

    PENDING = "pending"
    ACKNOWLEDGED = "acknowledged"
    REJECTED = "rejected"


class AnswerKind(StrEnum):
    """What an outbox entry holds: a signed release, or a refusal of the round."""

    SUBMISSION = "submission"
    REFUSAL = "refusal"


_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    round_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    content_sha256 TEXT NOT NULL,
    payload BLOB NOT NULL,
    state TEXT NOT NULL,
    receipt BLOB,
    detail TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    deadline TEXT NOT NULL DEFAULT ''
)
"""
_COLUMNS = (
    "round_id, kind, content_sha256, payload, state, receipt, detail, created_at, updated_at,"
    " deadline"
)


@dataclass(frozen=True)
class OutboxEntry:
    """One round's answer: a serialized submission or refusal, and its fate."""

    round_id: str
    kind: AnswerKind
    content_sha256: str
    payload: bytes
    state: Delivery
    receipt: bytes | None
    detail: str
    created_at: str
    updated_at: str
    deadline: str = ""  # the round's signed deadline ("" for none): resend until then

    def __post_init__(self) -> None:
        # Read back from SQLite as text: the enums are the one vocabulary in memory.
        object.__setattr__(self, "kind", AnswerKind(self.kind))
        object.__setattr__(self, "state", Delivery(self.state))

    @property
    def deadline_at(self) -> dt.datetime | None:
        """The deadline as an instant, or None."""
        return parse_instant(self.deadline) if self.deadline else None


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


class Outbox:
    """A SQLite file of one entry per round, written before anything is sent."""

    def __init__(self, path: Path) -> None:
        self.path = path
        with self._connect() as conn:
            conn.execute(_SCHEMA)
            known = {row[1] for row in conn.execute("PRAGMA table_info(outbox)")}
            if "deadline" not in known:  # an outbox from before rounds had deadlines
                conn.execute("ALTER TABLE outbox ADD COLUMN deadline TEXT NOT NULL DEFAULT ''")

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        conn = connect_private(self.path, timeout=10)
        try:
            # FULL sync: an entry must survive a power cut once put() has returned.
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            with conn:
                yield conn
        finally:
            conn.close()

    def put(
        self,
        round_id: str,
        kind: AnswerKind,
        content_sha256: str,
        payload: bytes,
        deadline: str = "",
    ) -> OutboxEntry:
        """Record an answer as pending; an existing entry for the round wins and is returned."""
        now = _now()
        with self._connect() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO outbox (round_id, kind, content_sha256, payload, state,"
                " created_at, updated_at, deadline) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (round_id, kind, content_sha256, payload, Delivery.PENDING, now, now, deadline),
            )
        entry = self.get(round_id)
        assert entry is not None
        return entry

    def get(self, round_id: str) -> OutboxEntry | None:
        """The entry for a round, or None."""
        with self._connect() as conn:
            row = conn.execute(
                f"SELECT {_COLUMNS} FROM outbox WHERE round_id = ?",
                (round_id,),
            ).fetchone()
        return None if row is None else OutboxEntry(*row)

    def entries(self, state: Delivery | None = None) -> list[OutboxEntry]:
        """Every entry, or those in one state, oldest first."""
        query = f"SELECT {_COLUMNS} FROM outbox"
        args: tuple[str, ...] = ()
        if state is not None:
            query += " WHERE state = ?"
            args = (state,)
        with self._connect() as conn:
            rows = conn.execute(query + " ORDER BY created_at, round_id", args).fetchall()
        return [OutboxEntry(*r) for r in rows]

    def acknowledge(self, round_id: str, receipt: bytes, detail: str = "") -> None:
        """Mark an entry acknowledged, keeping the coordinator's receipt."""
        self._finish(round_id, Delivery.ACKNOWLEDGED, receipt, detail)

    def reject(self, round_id: str, detail: str) -> None:
        """Mark an entry as refused by the coordinator for good (closed round, conflict)."""
        self._finish(round_id, Delivery.REJECTED, None, detail)

    def _finish(self, round_id: str, state: Delivery, receipt: bytes | None, detail: str) -> None:
        with self._connect() as conn:
            conn.execute(
                "UPDATE outbox SET state = ?, receipt = ?, detail = ?, updated_at = ?"
                " WHERE round_id = ?",
                (state, receipt, detail, _now(), round_id),
            )
