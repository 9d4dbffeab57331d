"""The release ledger (``<home>/ledger.sqlite``): the same question always gets the same answer.

A release is keyed by what the question means and its reference date:
(``meaning_hash``, ``as_of``). Titles, descriptions, ids and the practice's current
policy are not part of the key, so a reworded question, a renamed one, or a question
asked again after ``agent.toml`` changed gets the recorded answer, never a fresh draw.
The answer is recorded with the policy it was released under; a repeat is relabelled
with the asking definition's id and hash, which changes nothing of what it says.

Each release moves through::

    awaiting_approval --approve--> approved --mark_sent--> sent (receipt)
            \\--reject(why)--> rejected

and a question the practice's disclosure rules decline on its data is recorded as
``declined`` with the local reason, so asking it again is declined again without a
second look at the data.

Kept here too, locally and never sent: the salted fingerprints of every released set
(population, numerator, breakdown cells) across reference dates, for the differencing
check (``agent.differencing``); the questions asked outside the standard catalogue, for
the monthly question budget; and the privacy budget spent by noisy releases.

The pipeline reads the ledger once (``known``) and writes a round once (``record_round``).
"""

from __future__ import annotations

import hashlib
import json
import secrets
import sqlite3
from collections.abc import Iterable, Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from enum import StrEnum
from pathlib import Path

from agent.local_db import connect_private, transaction
from fedpeer.collection import Answer, ReleaseDocument, decode_rows, encode_rows
from fedpeer.errors import RoundError
from fedpeer.policy import DisclosurePolicy
from fedpeer.private_files import private_dir
from fedpeer.release import ResultRow

LEDGER_FILE = "ledger.sqlite"
SCHEMA_VERSION = "2"
# A member is kept as 8 bytes of keyed BLAKE2b: among a million units, the chance that
# any two share a digest is about 3 in 100 million; a year of a 100,000-patient
# practice's sets then fits in a few hundred MiB.
MEMBER_DIGEST_BYTES = 8

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS releases (
    meaning TEXT NOT NULL,
    as_of TEXT NOT NULL,
    indicator TEXT NOT NULL,
    policy TEXT NOT NULL,
    body BLOB NOT NULL,
    state TEXT NOT NULL,
    round_id TEXT NOT NULL,
    receipt TEXT,
    why TEXT,
    recorded_at TEXT NOT NULL,
    PRIMARY KEY (meaning, as_of)
);
CREATE TABLE IF NOT EXISTS round_questions (
    round_id TEXT NOT NULL,
    position INTEGER NOT NULL,
    meaning TEXT NOT NULL,
    as_of TEXT NOT NULL,
    definition_hash TEXT NOT NULL,
    indicator TEXT NOT NULL,
    PRIMARY KEY (round_id, position)
);
CREATE TABLE IF NOT EXISTS sets (
    meaning TEXT NOT NULL,
    as_of TEXT NOT NULL,
    part TEXT NOT NULL,
    size INTEGER NOT NULL,
    members BLOB NOT NULL,
    PRIMARY KEY (meaning, as_of, part)
);
CREATE INDEX IF NOT EXISTS sets_by_size ON sets (size);
CREATE TABLE IF NOT EXISTS questions (
    meaning TEXT NOT NULL,
    as_of TEXT NOT NULL,
    month TEXT NOT NULL,
    round_id TEXT NOT NULL,
    PRIMARY KEY (meaning, as_of)
);
CREATE TABLE IF NOT EXISTS budget (
    round_id TEXT NOT NULL,
    meaning TEXT NOT NULL,
    as_of TEXT NOT NULL,
    rho TEXT NOT NULL,
    PRIMARY KEY (meaning, as_of)
);
"""


class State(StrEnum):
    """Where a release stands."""

    AWAITING_APPROVAL = "awaiting_approval"
    APPROVED = "approved"
    SENT = "sent"
    REJECTED = "rejected"
    DECLINED = "declined"  # the disclosure rules declined it on the practice's data


@dataclass(frozen=True)
class Question:
    """One definition of a round as the ledger knows it."""

    meaning: str
    definition_hash: str
    indicator: str


@dataclass(frozen=True)
class Recorded:
    """A release as the ledger holds it."""

    meaning: str
    as_of: date
    indicator: str
    policy: DisclosurePolicy
    rows: tuple[ResultRow, ...]
    state: State
    round_id: str
    receipt: str | None = None
    why: str | None = None

    def answer(self, question: Question) -> Answer:
        """The recorded answer, under the asking definition's id and hash."""
        rows = tuple(_relabel(r, self.indicator, question.indicator) for r in self.rows)
        return Answer(question.definition_hash, question.indicator, self.policy, rows)


def _relabel(row: ResultRow, old: str, new: str) -> ResultRow:
    if row.indicator == old or row.indicator.startswith(old + "."):
        return replace(row, indicator=new + row.indicator[len(old) :])
    return row


@dataclass(frozen=True)
class NewRelease:
    """A release to record: the question, its rows and policy, and its fingerprinted sets."""

    question: Question
    rows: tuple[ResultRow, ...]
    policy: DisclosurePolicy
    sets: Mapping[str, frozenset[bytes]]
    rho: float = 0.0
    counts_against_budget: bool = False


@dataclass(frozen=True)
class RecordedSet:
    """A released set's fingerprint: which question, date and part, and its members."""

    meaning: str
    as_of: date
    part: str
    members: frozenset[bytes]


class Ledger:
    """The agent's record of everything released, in ``<home>/ledger.sqlite``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        # The agent may run the pipeline in a worker thread; SQLite serialises access.
        self._db = connect_private(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        tables = {r[0] for r in self._db.execute("SELECT name FROM sqlite_master")}
        old = "releases" in tables and (
            "meta" not in tables or self._meta("schema_version") != SCHEMA_VERSION.encode()
        )
        if old:
            self._db.close()
            raise RoundError(
                f"{path} was written by an older fedpeer agent; move it aside to start a new "
                "ledger (the old one keeps the record of what was released)"
            )
        self._db.executescript(_SCHEMA)
        self._db.execute(
            "INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (SCHEMA_VERSION.encode(),)
        )

    @classmethod
    def at_home(cls, home: Path) -> Ledger:
        """The ledger of the agent whose home directory is ``home``."""
        return cls(private_dir(home) / LEDGER_FILE)

    def close(self) -> None:
        """Close the database."""
        self._db.close()

    def _meta(self, name: str) -> bytes | None:
        row = self._db.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        return None if row is None else bytes(row[0])

    def _tx(self) -> AbstractContextManager[sqlite3.Connection]:
        return transaction(self._db)

    # -- reading, once per round --------------------------------------------------------

    def get(self, meaning: str, as_of: date) -> Recorded | None:
        """The recorded release of a question on a date, or None when it was never asked."""
        row = self._db.execute(
            "SELECT indicator, policy, body, state, round_id, receipt, why FROM releases"
            " WHERE meaning = ? AND as_of = ?",
            (meaning, as_of.isoformat()),
        ).fetchone()
        if row is None:
            return None
        indicator, policy, body, state, round_id, receipt, why = row
        return Recorded(
            meaning,
            as_of,
            indicator,
            DisclosurePolicy.from_data(json.loads(policy)),
            decode_rows(bytes(body)),
            State(state),
            round_id,
            receipt,
            why,
        )

    def known(self, meanings: Iterable[str], as_of: date) -> dict[str, Recorded]:
        """The recorded releases among these questions on ``as_of``."""
        out = {}
        for meaning in meanings:
            recorded = self.get(meaning, as_of)
            if recorded is not None:
                out[meaning] = recorded
        return out

    def questions_asked(self, month: str) -> int:
        """How many questions outside the catalogue were first asked in ``month`` (YYYY-MM)."""
        row = self._db.execute("SELECT COUNT(*) FROM questions WHERE month = ?", (month,))
        return int(row.fetchone()[0])

    def budget_spent(self) -> float:
        """The zero-concentrated privacy loss (rho) spent so far by noisy releases."""
        row = self._db.execute("SELECT COALESCE(SUM(CAST(rho AS REAL)), 0) FROM budget").fetchone()
        return float(row[0])

    def sets_near(self, size: int, within: int) -> Iterator[RecordedSet]:
        """Every recorded set, at any date, whose size is within ``within`` of ``size``.

        Two sets whose sizes differ by more than ``within`` cannot have a symmetric
        difference of ``within`` or fewer, so only these need their members compared.
        """
        query = (
            "SELECT meaning, as_of, part, members FROM sets WHERE size BETWEEN ? AND ?"
            " ORDER BY meaning, as_of, part"
        )
        for meaning, as_of, part, blob in self._db.execute(query, (size - within, size + within)):
            yield RecordedSet(meaning, date.fromisoformat(as_of), part, _unpack(bytes(blob)))

    # -- writing, once per round --------------------------------------------------------

    def record_round(
        self,
        round_id: str,
        as_of: date,
        questions: list[Question],
        new: list[NewRelease],
        *,
        month: str,
        manual_approval: bool,
        declined: tuple[Question, str] | None = None,
    ) -> None:
        """Record a round's questions and new releases (or the one declined) in one transaction."""
        now = datetime.now(UTC).isoformat()
        day = as_of.isoformat()
        state = State.AWAITING_APPROVAL if manual_approval else State.APPROVED
        with self._tx() as db:
            for release in new:
                q = release.question
                if release.counts_against_budget:
                    db.execute(
                        "INSERT OR IGNORE INTO questions VALUES (?, ?, ?, ?)",
                        (q.meaning, day, month, round_id),
                    )
                if declined is not None:
                    continue  # asked, and so counted; nothing of it is released
                db.execute(
                    "INSERT OR IGNORE INTO releases VALUES (?, ?, ?, ?, ?, ?, ?, NULL, NULL, ?)",
                    (
                        q.meaning,
                        day,
                        q.indicator,
                        json.dumps(release.policy.to_data(), sort_keys=True),
                        encode_rows(release.rows),
                        state.value,
                        round_id,
                        now,
                    ),
                )
                for part, members in release.sets.items():
                    db.execute(
                        "INSERT OR IGNORE INTO sets VALUES (?, ?, ?, ?, ?)",
                        (q.meaning, day, part, len(members), b"".join(sorted(members))),
                    )
                if release.rho:
                    db.execute(
                        "INSERT OR IGNORE INTO budget VALUES (?, ?, ?, ?)",
                        (round_id, q.meaning, day, repr(release.rho)),
                    )
            if declined is not None:
                q, why = declined
                policy = next((r.policy for r in new if r.question == q), DisclosurePolicy())
                db.execute(
                    "INSERT OR IGNORE INTO releases VALUES (?, ?, ?, ?, ?, ?, ?, NULL, ?, ?)",
                    (
                        q.meaning,
                        day,
                        q.indicator,
                        json.dumps(policy.to_data(), sort_keys=True),
                        encode_rows(()),
                        State.DECLINED.value,
                        round_id,
                        why,
                        now,
                    ),
                )
            db.execute("DELETE FROM round_questions WHERE round_id = ?", (round_id,))
            for i, q in enumerate(questions):
                db.execute(
                    "INSERT INTO round_questions VALUES (?, ?, ?, ?, ?, ?)",
                    (round_id, i, q.meaning, day, q.definition_hash, q.indicator),
                )

    # -- a round's releases ----------------------------------------------------------------

    def round_releases(self, round_id: str) -> list[tuple[Question, Recorded]]:
        """Every question a round asked with its recorded release, in the round's order."""
        rows = self._db.execute(
            "SELECT meaning, as_of, definition_hash, indicator FROM round_questions"
            " WHERE round_id = ? ORDER BY position",
            (round_id,),
        ).fetchall()
        out = []
        for meaning, as_of, definition_hash, indicator in rows:
            recorded = self.get(meaning, date.fromisoformat(as_of))
            if recorded is not None:
                out.append((Question(meaning, definition_hash, indicator), recorded))
        return out

    def _require_round(self, round_id: str) -> list[tuple[Question, Recorded]]:
        releases = self.round_releases(round_id)
        if not releases:
            raise RoundError(f"round {round_id} has nothing recorded in this ledger")
        return releases

    def round_document(self, round_id: str, practice_id: str) -> ReleaseDocument:
        """The release document a round would send (the preview), whatever its state."""
        releases = self._require_round(round_id)
        as_of = releases[0][1].as_of
        answers = tuple(recorded.answer(q) for q, recorded in releases)
        return ReleaseDocument(practice_id, round_id, as_of, answers)

    def round_states(self, round_id: str) -> set[State]:
        """The states of a round's releases."""
        return {recorded.state for _, recorded in self._require_round(round_id)}

    def declined_why(self, round_id: str) -> str | None:
        """The local reason a round was declined or rejected, or None."""
        for _, recorded in self.round_releases(round_id):
            if recorded.state in (State.DECLINED, State.REJECTED):
                return recorded.why
        return None

    def _set_state(self, round_id: str, old: set[State], new: State, **extra: str) -> None:
        with self._tx() as db:
            for _, r in self._require_round(round_id):
                if r.state in old:
                    db.execute(
                        "UPDATE releases SET state = ?, receipt = COALESCE(?, receipt),"
                        " why = COALESCE(?, why) WHERE meaning = ? AND as_of = ?",
                        (
                            new.value,
                            extra.get("receipt"),
                            extra.get("why"),
                            r.meaning,
                            r.as_of.isoformat(),
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

    def mark_sent(self, round_id: str, receipt: str) -> None:
        """Record that the coordinator acknowledged a round's releases."""
        if State.AWAITING_APPROVAL in self.round_states(round_id):
            raise RoundError(f"round {round_id} is awaiting approval")
        self._set_state(round_id, {State.APPROVED}, State.SENT, receipt=receipt)

    def sent_receipts(self) -> set[str]:
        """The coordinator's receipts for everything sent (to check the audit log's tail)."""
        rows = self._db.execute(
            "SELECT DISTINCT receipt FROM releases WHERE state = ? AND receipt IS NOT NULL",
            (State.SENT.value,),
        )
        return {r[0] for r in rows}

    # -- fingerprints ---------------------------------------------------------------------

    def _salt(self) -> bytes:
        salt = self._meta("member_salt")
        if salt is not None:
            return salt
        self._db.execute(
            "INSERT OR IGNORE INTO meta VALUES ('member_salt', ?)", (secrets.token_bytes(32),)
        )
        return self._salt()

    def member_digests(self, ids: Iterable[str]) -> frozenset[bytes]:
        """Salted, truncated hashes of unit ids; the salt never leaves this ledger."""
        salt = self._salt()
        return frozenset(
            hashlib.blake2b(uid.encode(), key=salt, digest_size=MEMBER_DIGEST_BYTES).digest()
            for uid in ids
        )


def _unpack(blob: bytes) -> frozenset[bytes]:
    n = MEMBER_DIGEST_BYTES
    return frozenset(blob[i : i + n] for i in range(0, len(blob), n))
