"""The release ledger (``<home>/ledger.sqlite``): the same question always gets the same answer.

A release is keyed by (definition content hash, reference date, policy digest). The first
time a key is asked, the released rows are recorded as canonical bytes; every later ask
returns exactly those bytes, never a recomputation (so repeating a round, or averaging
noisy answers, gains an attacker nothing). A definition and reference date already
released under a *different* policy is refused when the new answer differs from the old
one: two roundings of the same count can be intersected to narrow it.

Each release moves through::

    awaiting_approval --approve--> approved --mark_sent--> sent (receipt)
            \\--reject(why)--> rejected

With manual approval a release starts awaiting approval and nothing of its round is
releasable until ``approve(round_id)``; otherwise it starts approved.

The ledger also keeps, locally and never sent, the size of each released definition's
population (its raw denominator) and optionally salted hashes of its patient ids, for the
differencing check (``agent.differencing``), and the privacy budget spent (``agent``'s
optional differential privacy, ``fedpeer.dp``).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from enum import StrEnum
from pathlib import Path

from fedpeer.canonical import canonical_release_bytes, rows_from_canonical
from fedpeer.errors import ReleaseRefused, RoundError
from fedpeer.release import ResultRow

LEDGER_FILE = "ledger.sqlite"
MEMBER_DIGEST_BYTES = 16

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS releases (
    definition_hash TEXT NOT NULL,
    as_of TEXT NOT NULL,
    policy_digest TEXT NOT NULL,
    round_id TEXT NOT NULL,
    body BLOB NOT NULL,
    state TEXT NOT NULL,
    receipt TEXT,
    why TEXT,
    recorded_at TEXT NOT NULL,
    PRIMARY KEY (definition_hash, as_of, policy_digest)
);
CREATE TABLE IF NOT EXISTS round_releases (
    round_id TEXT NOT NULL,
    definition_hash TEXT NOT NULL,
    as_of TEXT NOT NULL,
    policy_digest TEXT NOT NULL,
    PRIMARY KEY (round_id, definition_hash, as_of, policy_digest)
);
CREATE TABLE IF NOT EXISTS populations (
    definition_hash TEXT NOT NULL,
    as_of TEXT NOT NULL,
    size INTEGER NOT NULL,
    members BLOB,
    PRIMARY KEY (definition_hash, as_of)
);
CREATE TABLE IF NOT EXISTS budget (
    round_id TEXT NOT NULL,
    definition_hash TEXT NOT NULL,
    as_of TEXT NOT NULL,
    rho TEXT NOT NULL,
    PRIMARY KEY (round_id, definition_hash, as_of)
);
"""


class State(StrEnum):
    """Where a release stands."""

    AWAITING_APPROVAL = "awaiting_approval"
    APPROVED = "approved"
    SENT = "sent"
    REJECTED = "rejected"


@dataclass(frozen=True)
class ReleaseKey:
    """What identifies a release: the question, the date and the rules."""

    definition_hash: str
    as_of: date
    policy_digest: str


@dataclass(frozen=True)
class Recorded:
    """A release as the ledger holds it."""

    key: ReleaseKey
    round_id: str
    body: bytes  # canonical release bytes
    state: State
    receipt: str | None = None
    why: str | None = None

    @property
    def rows(self) -> list[ResultRow]:
        """The released rows."""
        return rows_from_canonical(self.body)


@dataclass(frozen=True)
class Population:
    """A released definition's population on a date: kept in the practice only."""

    definition_hash: str
    size: int
    members: frozenset[bytes] | None


class Ledger:
    """The agent's record of everything released, in ``<home>/ledger.sqlite``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        # The agent may run the pipeline in a worker thread; SQLite serialises access.
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)

    @classmethod
    def at_home(cls, home: Path) -> Ledger:
        """The ledger of the agent whose home directory is ``home``."""
        home.mkdir(parents=True, exist_ok=True)
        return cls(home / LEDGER_FILE)

    def close(self) -> None:
        """Close the database."""
        self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # -- releases ----------------------------------------------------------------------

    def get(self, key: ReleaseKey) -> Recorded | None:
        """The recorded release for ``key``, or None when it was never asked."""
        row = self._db.execute(
            "SELECT round_id, body, state, receipt, why FROM releases"
            " WHERE definition_hash = ? AND as_of = ? AND policy_digest = ?",
            (key.definition_hash, key.as_of.isoformat(), key.policy_digest),
        ).fetchone()
        if row is None:
            return None
        return Recorded(key, row[0], bytes(row[1]), State(row[2]), row[3], row[4])

    def record(
        self,
        key: ReleaseKey,
        rows: Iterable[ResultRow],
        round_id: str,
        *,
        manual_approval: bool = False,
    ) -> Recorded:
        """Record a release, or return the one already recorded for ``key`` (never a new one)."""
        with self._tx() as db:
            existing = self.get(key)
            if existing is None:
                body = canonical_release_bytes(rows)
                self._refuse_other_policy(db, key, body)
                state = State.AWAITING_APPROVAL if manual_approval else State.APPROVED
                db.execute(
                    "INSERT INTO releases VALUES (?, ?, ?, ?, ?, ?, NULL, NULL, ?)",
                    (
                        key.definition_hash,
                        key.as_of.isoformat(),
                        key.policy_digest,
                        round_id,
                        body,
                        state.value,
                        datetime.now(UTC).isoformat(),
                    ),
                )
            db.execute(
                "INSERT OR IGNORE INTO round_releases VALUES (?, ?, ?, ?)",
                (round_id, key.definition_hash, key.as_of.isoformat(), key.policy_digest),
            )
        recorded = self.get(key)
        assert recorded is not None
        return recorded

    def _refuse_other_policy(self, db: sqlite3.Connection, key: ReleaseKey, body: bytes) -> None:
        # Only a *different* answer helps an attacker: the same bytes under a policy that
        # differs in, say, manual approval are recorded as they are.
        others = db.execute(
            "SELECT body FROM releases WHERE definition_hash = ? AND as_of = ?"
            " AND policy_digest != ? AND state != ?",
            (key.definition_hash, key.as_of.isoformat(), key.policy_digest, State.REJECTED.value),
        ).fetchall()
        if any(bytes(other[0]) != body for other in others):
            raise ReleaseRefused(
                "this question was already answered for this reference date under a different "
                "disclosure policy; a second answer under other rules could be combined with "
                "the first to narrow the true counts"
            )

    def round_releases(self, round_id: str) -> list[Recorded]:
        """Every release a round asked for, in a stable order."""
        keys = self._db.execute(
            "SELECT definition_hash, as_of, policy_digest FROM round_releases"
            " WHERE round_id = ? ORDER BY definition_hash, as_of, policy_digest",
            (round_id,),
        ).fetchall()
        out = []
        for h, as_of, digest in keys:
            recorded = self.get(ReleaseKey(h, date.fromisoformat(as_of), digest))
            assert recorded is not None
            out.append(recorded)
        return out

    def round_rows(self, round_id: str) -> list[ResultRow]:
        """All rows a round would release (the preview), whatever their state."""
        return [row for r in self.round_releases(round_id) for row in r.rows]

    def _require_round(self, round_id: str) -> list[Recorded]:
        releases = self.round_releases(round_id)
        if not releases:
            raise RoundError(f"round {round_id} has nothing recorded in this ledger")
        return releases

    def _set_state(self, round_id: str, old: set[State], new: State, **extra: str) -> None:
        with self._tx() as db:
            for r in self._require_round(round_id):
                if r.state in old:
                    db.execute(
                        "UPDATE releases SET state = ?, receipt = COALESCE(?, receipt),"
                        " why = COALESCE(?, why)"
                        " WHERE definition_hash = ? AND as_of = ? AND policy_digest = ?",
                        (
                            new.value,
                            extra.get("receipt"),
                            extra.get("why"),
                            r.key.definition_hash,
                            r.key.as_of.isoformat(),
                            r.key.policy_digest,
                        ),
                    )

    def approve(self, round_id: str) -> None:
        """Approve every release of a round that awaits approval."""
        self._set_state(round_id, {State.AWAITING_APPROVAL}, State.APPROVED)

    def reject(self, round_id: str, why: str) -> None:
        """Reject every release of a round not yet sent; nothing of it will leave."""
        if not why.strip():
            raise RoundError("a rejection needs a reason")
        self._set_state(
            round_id, {State.AWAITING_APPROVAL, State.APPROVED}, State.REJECTED, why=why
        )

    def releasable(self, round_id: str) -> list[ResultRow] | None:
        """The rows that may be sent for a round, or None while any release awaits approval."""
        releases = self._require_round(round_id)
        if any(r.state == State.REJECTED for r in releases):
            raise RoundError(f"round {round_id} was rejected")
        if any(r.state == State.AWAITING_APPROVAL for r in releases):
            return None
        return [row for r in releases for row in r.rows]

    def mark_sent(self, round_id: str, receipt: str) -> None:
        """Record that the coordinator acknowledged a round's releases."""
        if self.releasable(round_id) is None:
            raise RoundError(f"round {round_id} is awaiting approval")
        self._set_state(round_id, {State.APPROVED}, State.SENT, receipt=receipt)

    def sent_receipts(self) -> set[str]:
        """The coordinator's receipts for everything sent (to check the audit log's tail)."""
        rows = self._db.execute(
            "SELECT DISTINCT receipt FROM releases WHERE state = ? AND receipt IS NOT NULL",
            (State.SENT.value,),
        )
        return {r[0] for r in rows}

    # -- populations, for differencing --------------------------------------------------

    def _salt(self) -> bytes:
        row = self._db.execute("SELECT value FROM meta WHERE name = 'member_salt'").fetchone()
        if row is not None:
            return bytes(row[0])
        salt = secrets.token_bytes(32)
        self._db.execute("INSERT OR IGNORE INTO meta VALUES ('member_salt', ?)", (salt,))
        return self._salt()

    def member_digests(self, patient_ids: Iterable[str]) -> frozenset[bytes]:
        """Salted, truncated hashes of patient ids; the salt never leaves this ledger."""
        salt = self._salt()
        return frozenset(
            hmac.new(salt, pid.encode(), hashlib.sha256).digest()[:MEMBER_DIGEST_BYTES]
            for pid in patient_ids
        )

    def record_population(
        self,
        definition_hash: str,
        as_of: date,
        size: int,
        patient_ids: Iterable[str] | None = None,
    ) -> None:
        """Keep a released definition's population size (and member hashes) for differencing."""
        members = None
        if patient_ids is not None:
            members = b"".join(sorted(self.member_digests(patient_ids)))
        self._db.execute(
            "INSERT OR IGNORE INTO populations VALUES (?, ?, ?, ?)",
            (definition_hash, as_of.isoformat(), size, members),
        )

    def populations(self, as_of: date) -> list[Population]:
        """Every population released for a reference date."""
        out = []
        for h, size, blob in self._db.execute(
            "SELECT definition_hash, size, members FROM populations WHERE as_of = ?"
            " ORDER BY definition_hash",
            (as_of.isoformat(),),
        ):
            members = None
            if blob is not None:
                b = bytes(blob)
                n = MEMBER_DIGEST_BYTES
                members = frozenset(b[i : i + n] for i in range(0, len(b), n))
            out.append(Population(h, size, members))
        return out

    # -- privacy budget -----------------------------------------------------------------

    def budget_spent(self) -> float:
        """The zero-concentrated privacy loss (rho) spent so far by noisy releases."""
        row = self._db.execute("SELECT COALESCE(SUM(CAST(rho AS REAL)), 0) FROM budget").fetchone()
        return float(row[0])

    def spend_budget(
        self, round_id: str, definition_hash: str, as_of: date, rho: float, limit: float
    ) -> None:
        """Spend privacy loss on one noisy release, refusing it when the budget would run out."""
        with self._tx() as db:
            spent = self.budget_spent()
            if spent + rho > limit:
                raise ReleaseRefused(
                    "this practice's privacy budget would be exceeded by this release; "
                    "no further noisy releases can be made"
                )
            db.execute(
                "INSERT OR IGNORE INTO budget VALUES (?, ?, ?, ?)",
                (round_id, definition_hash, as_of.isoformat(), repr(rho)),
            )
