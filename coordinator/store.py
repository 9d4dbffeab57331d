"""The coordinator's durable store: practices, tokens, rounds, submissions, refusals.

SQLite (WAL) in a file by default, PostgreSQL by URL; the same SQLAlchemy Core tables
serve both. The schema is managed by Alembic (``coordinator/migrations``): opening a
store upgrades it to the latest revision, and a test checks that the revisions produce
exactly the tables declared here.

Every method is one transaction. A submission and its rows commit together, and the
receipt is returned only after that commit, so an acknowledged submission is never lost.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from coordinator.round_states import PracticePart, RoundState, check_transition, takes_answers
from coordinator.tables import (
    enrolment_tokens,
    practices,
    refusals,
    released_rows,
    round_definitions,
    round_schedules,
    round_waits,
    rounds,
    submission_exclusions,
    submissions,
)
from fedpeer.collection import (
    DefinitionDocument,
    Receipt,
    ReleaseDocument,
    Round,
    RoundClosed,
    SignedRelease,
    SubmissionConflict,
    UnknownRound,
)
from fedpeer.errors import EnrolmentError, RoundError, StoreError
from fedpeer.policy import DisclosurePolicy
from fedpeer.private_files import private_file

FRAME_COLUMNS = (
    "practice_id",
    "practice_name",
    "locality",
    "indicator",
    "category",
    "numerator",
    "denominator",
    "count",
    "mean",
    "value",
    "suppressed",
)


@dataclass(frozen=True)
class PendingSubmission:
    """A verified, checked submission with its signed receipt, waiting to be stored."""

    receipt: Receipt
    signed: SignedRelease
    document: ReleaseDocument
    received_at: dt.datetime


@dataclass(frozen=True)
class PracticeRecord:
    """A practice as the coordinator knows it."""

    practice_id: str
    name: str
    locality: str
    cert_fingerprint: str | None
    enrolled_at: dt.datetime | None
    revoked: bool


@dataclass(frozen=True)
class PracticeRoundState:
    """Where one practice stands in a round: submitted, refused, pending, late or waiting."""

    practice_id: str
    state: PracticePart
    at: dt.datetime | None = None
    detail: str = ""


@dataclass(frozen=True)
class RoundStatus:
    """A round's state and each enrolled practice's part in it."""

    round_id: str
    as_of: dt.date
    state: RoundState
    practices: tuple[PracticeRoundState, ...]
    deadline: dt.datetime | None = None
    quorum: int = 0

    @property
    def submitted(self) -> int:
        """How many practices have submitted."""
        return sum(p.state is PracticePart.SUBMITTED for p in self.practices)

    @property
    def quorum_met(self) -> bool:
        """Whether enough practices submitted for the round to count."""
        return self.submitted >= self.quorum


@dataclass(frozen=True)
class RoundSummary:
    """One line of ``round list``: a round, its state and how many answered."""

    round_id: str
    as_of: dt.date
    state: RoundState
    deadline: dt.datetime | None
    quorum: int
    submitted: int
    expected: int


@dataclass(frozen=True)
class RoundSchedule:
    """The standard round the coordinator starts at every month end."""

    deadline_days: int
    quorum: int
    last_as_of: dt.date | None
    standardise_with: str = ""  # a reference-rates study: its rounds are standardised


# A practice counts as expected in a round while it holds a certificate not revoked.
_ENROLLED = (practices.c.cert_fingerprint.is_not(None), practices.c.revoked.is_(False))


def utc(value: dt.datetime) -> dt.datetime:
    """A datetime in UTC; naive values (SQLite drops the zone) are taken as UTC."""
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def database_url(target: str | Path) -> str:
    """A SQLAlchemy URL for a URL, or for a file path (SQLite)."""
    text = str(target)
    # abspath, not resolve: a link in place of the store is refused, never followed.
    return text if "://" in text else f"sqlite:///{os.path.abspath(text)}"


def _private_sqlite_file(url: str) -> None:
    """Make a SQLite store's file readable by its owner only, before SQLite opens it.

    SQLite gives its -wal and -shm files the database file's mode, so they are private too.
    """
    path = sa.make_url(url).database
    if not path or path == ":memory:":
        return
    file = Path(path)
    if file.parent.is_dir():
        private_file(file)


# An execution option: how a SQLite transaction begins ("IMMEDIATE" takes the write lock
# at once). Python's sqlite3 otherwise sends BEGIN only before the first INSERT, UPDATE
# or DELETE, so what a transaction read before its first write could change under it.
SQLITE_BEGIN = "fedpeer_sqlite_begin"


def _sqlite_begin(conn: sa.Connection) -> None:
    mode = conn.get_execution_options().get(SQLITE_BEGIN)
    if mode:
        conn.exec_driver_sql(f"BEGIN {mode}")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets status queries read while a submission commits; the busy timeout makes
    # concurrent writers wait instead of failing.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


ROUNDS_CACHED = 64  # signed rounds kept in memory (a few open at a time)
MIGRATIONS = Path(__file__).parent / "migrations"
# Where the store tells other coordinator processes that a round opened or closed
# (coordinator.announce listens). PostgreSQL only; delivered when the transaction commits.
ROUNDS_CHANNEL = "fedpeer_rounds"
# Where it tells them that a practice's certificate changed (revoked, or enrolled again):
# the payload is the practice id, nothing else.
PRACTICES_CHANNEL = "fedpeer_practices"


def rounds_changed(conn: sa.Connection) -> None:
    """Tell every process sharing this PostgreSQL store, at commit, that rounds changed."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"NOTIFY {ROUNDS_CHANNEL}")


def practice_changed(conn: sa.Connection, practice_id: str) -> None:
    """Tell every process sharing this PostgreSQL store, at commit, which practice changed."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.select(sa.func.pg_notify(PRACTICES_CHANNEL, practice_id)))


def upgrade(engine: sa.Engine, revision: str = "head") -> None:
    """Bring the store's schema to ``revision`` with the Alembic migrations."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.connect() as conn:
        sqlite = conn.dialect.name == "sqlite"
        if sqlite:
            # SQLite alters a table by copying it; with foreign keys enforced, dropping the
            # old copy of a referenced table would fail. Checked again once done.
            conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
            conn.commit()
        with conn.begin():
            config.attributes["connection"] = conn
            command.upgrade(config, revision)
            if sqlite and conn.exec_driver_sql("PRAGMA foreign_key_check").first() is not None:
                raise StoreError("the store's foreign keys do not hold after the upgrade")
        if sqlite:
            conn.exec_driver_sql("PRAGMA foreign_keys=ON")
            conn.commit()


class Store:
    """The coordinator's tables behind plain methods, one transaction each."""

    def __init__(self, target: str | Path) -> None:
        url = database_url(target)
        self.url = url
        self._rounds: dict[str, Round] = {}
        # (when read, practice id -> record): the per-call enrolment check's recent read.
        self._practices: tuple[float, dict[str, PracticeRecord]] = (-math.inf, {})
        self._practices_lock = threading.Lock()
        self._practice_epoch = 0
        try:
            if url.startswith("sqlite"):
                _private_sqlite_file(url)
                self.engine = sa.create_engine(url, connect_args={"check_same_thread": False})
                sa.event.listen(self.engine, "connect", _sqlite_pragmas)
                sa.event.listen(self.engine, "begin", _sqlite_begin)
            else:
                self.engine = sa.create_engine(url, pool_pre_ping=True)
            # Transactions that read a round's state and then store an answer to it: on
            # SQLite they hold the write lock from their first read, so that a round cannot
            # close between the two (PostgreSQL: ``_answering_states`` locks the rows).
            self._answering = self.engine.execution_options(**{SQLITE_BEGIN: "IMMEDIATE"})
            upgrade(self.engine)
        except sa.exc.ArgumentError as exc:  # not a URL, or a database SQLAlchemy cannot load
            raise StoreError(f"cannot open the store: {exc}") from None
        except sa.exc.OperationalError as exc:
            raise StoreError(f"cannot open the store at {self.engine.url!r}") from exc

    def close(self) -> None:
        """Release the store's connections."""
        self.engine.dispose()

    # Practices and enrolment

    def add_enrolment_token(
        self,
        practice_id: str,
        name: str,
        locality: str,
        token_sha256: str,
        expires_at: dt.datetime,
        now: dt.datetime,
    ) -> None:
        """Record a practice (or update its name and locality) and a token for it."""
        with self.engine.begin() as conn:
            found = conn.execute(
                sa.select(practices.c.practice_id).where(practices.c.practice_id == practice_id)
            ).first()
            if found is None:
                conn.execute(
                    practices.insert().values(
                        practice_id=practice_id, name=name, locality=locality, revoked=False
                    )
                )
            else:
                conn.execute(
                    practices.update()
                    .where(practices.c.practice_id == practice_id)
                    .values(name=name, locality=locality)
                )
            conn.execute(
                enrolment_tokens.insert().values(
                    token_sha256=token_sha256,
                    practice_id=practice_id,
                    created_at=now,
                    expires_at=expires_at,
                )
            )

    def token_practice(self, token_sha256: str, now: dt.datetime) -> str:
        """The practice a usable token was issued for; EnrolmentError otherwise."""
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(enrolment_tokens).where(enrolment_tokens.c.token_sha256 == token_sha256)
            ).first()
        return _usable(row, now)

    def redeem_token(self, token_sha256: str, cert_fingerprint: str, now: dt.datetime) -> str:
        """Use a token once and record the practice's certificate; returns the practice id."""
        with self.engine.begin() as conn:
            row = conn.execute(
                sa.select(enrolment_tokens)
                .where(enrolment_tokens.c.token_sha256 == token_sha256)
                .with_for_update()
            ).first()
            practice_id = _usable(row, now)
            # The used_at guard makes the token single-use even under concurrent redeems.
            used = conn.execute(
                enrolment_tokens.update()
                .where(
                    enrolment_tokens.c.token_sha256 == token_sha256,
                    enrolment_tokens.c.used_at.is_(None),
                )
                .values(used_at=now)
            )
            if used.rowcount != 1:
                raise EnrolmentError("this enrolment token has already been used")
            conn.execute(
                practices.update()
                .where(practices.c.practice_id == practice_id)
                .values(cert_fingerprint=cert_fingerprint, enrolled_at=now, revoked=False)
            )
            practice_changed(conn, practice_id)  # a certificate it replaces is cut everywhere
        self.forget_practices()
        return practice_id

    def practice(self, practice_id: str, max_age: float = 0.0) -> PracticeRecord | None:
        """One practice, or None; with ``max_age``, as read here at most that many seconds ago.

        With ``max_age`` every practice is read in one query and kept that long, so that
        thousands of agents' calls do not each read the database. Enrolment and
        revocation through this store take effect at once whatever the age (they forget
        what was read); through another process sharing a PostgreSQL database, at its
        notification on ``PRACTICES_CHANNEL`` (the handler calls ``forget_practices``).
        """
        if max_age > 0:
            return self.recent_practices(max_age).get(practice_id)
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(practices).where(practices.c.practice_id == practice_id)
            ).first()
        return None if row is None else _practice(row)

    def practices_fresh(self, max_age: float) -> bool:
        """True when ``practice(..., max_age)`` would answer from memory, without a query."""
        return time.monotonic() - self._practices[0] < max_age

    def recent_practices(self, max_age: float) -> dict[str, PracticeRecord]:
        """Every practice by id, as read here at most ``max_age`` seconds ago (one query)."""
        read_at, records = self._practices
        if time.monotonic() - read_at < max_age:
            return records
        with self._practices_lock:  # one reader; the others wait for its answer
            read_at, records = self._practices
            if time.monotonic() - read_at < max_age:
                return records
            epoch, read_at = self._practice_epoch, time.monotonic()
            records = {r.practice_id: r for r in self.list_practices()}
            if epoch == self._practice_epoch:  # nothing changed here while it was read
                self._practices = (read_at, records)
            return records

    def forget_practices(self) -> None:
        """Read the practices again at the next ``practice(..., max_age)``."""
        self._practice_epoch += 1
        self._practices = (-math.inf, {})

    def list_practices(self) -> list[PracticeRecord]:
        """Every practice, by id."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(practices).order_by(practices.c.practice_id)).all()
        return [_practice(r) for r in rows]

    def revoke_practice(self, practice_id: str) -> PracticeRecord:
        """Mark a practice revoked: its certificate is refused from now on."""
        with self.engine.begin() as conn:
            done = conn.execute(
                practices.update()
                .where(practices.c.practice_id == practice_id)
                .values(revoked=True)
            )
            if done.rowcount != 1:
                raise StoreError(f"no practice {practice_id}")
            practice_changed(conn, practice_id)
        self.forget_practices()
        record = self.practice(practice_id)
        assert record is not None
        return record

    # Rounds

    def add_round(self, round_: Round, now: dt.datetime) -> None:
        """Record a new, open, signed round."""
        with self.engine.begin() as conn:
            conn.execute(
                rounds.insert().values(
                    round_id=round_.round_id,
                    as_of=round_.as_of,
                    state=RoundState.OPEN.value,
                    policy_json=json.dumps(round_.policy.to_data(), sort_keys=True),
                    signature=round_.signature,
                    signer_certificate=round_.signer_certificate,
                    created_at_text=round_.created_at,
                    deadline_text=round_.deadline,
                    deadline=round_.deadline_at,
                    quorum=round_.quorum,
                    reference_rates=round_.reference_rates,
                    state_changed_at=now,
                    created_at=now,
                )
            )
            if round_.definitions:
                conn.execute(
                    round_definitions.insert(),
                    [
                        {
                            "round_id": round_.round_id,
                            "position": i,
                            "indicator_id": d.id,
                            "content_hash": d.content_hash,
                            "body": d.body,
                        }
                        for i, d in enumerate(round_.definitions)
                    ],
                )
            rounds_changed(conn)

    def cached_round(self, round_id: str) -> Round | None:
        """A round already read by this store (no database call), or None."""
        return self._rounds.get(round_id)

    def round(self, round_id: str) -> Round:
        """A round with its definitions; UnknownRound when there is none."""
        # A round is signed once and never changes (only its state does, read apart from
        # it), so every submission to it need not read it again.
        cached = self._rounds.get(round_id)
        if cached is not None:
            return cached
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(rounds).where(rounds.c.round_id == round_id)).first()
            if row is None:
                raise UnknownRound(f"there is no round {round_id}")
            docs = conn.execute(
                sa.select(round_definitions)
                .where(round_definitions.c.round_id == round_id)
                .order_by(round_definitions.c.position)
            ).all()
        round_ = _round(row, docs)
        if len(self._rounds) >= ROUNDS_CACHED:
            self._rounds.clear()
        self._rounds[round_id] = round_
        return round_

    def round_state(self, round_id: str) -> RoundState:
        """Where a round stands; UnknownRound when there is no such round."""
        with self.engine.connect() as conn:
            state = conn.execute(
                sa.select(rounds.c.state).where(rounds.c.round_id == round_id)
            ).scalar()
        if state is None:
            raise UnknownRound(f"there is no round {round_id}")
        return RoundState(state)

    def open_round_ids(self) -> list[tuple[str, dt.date]]:
        """The ids and reference dates of open rounds, oldest first."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(rounds.c.round_id, rounds.c.as_of)
                .where(rounds.c.state == RoundState.OPEN.value)
                .order_by(rounds.c.created_at, rounds.c.round_id)
            ).all()
        return [(r.round_id, r.as_of) for r in rows]

    def rounds_by_state(self) -> dict[str, int]:
        """How many rounds are in each state (for the metrics endpoint)."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(rounds.c.state, sa.func.count()).group_by(rounds.c.state)
            ).all()
        return {str(state): int(n) for state, n in rows}

    def close_round(self, round_id: str, now: dt.datetime) -> None:
        """Close an open or closing round; closing a closed round changes nothing."""
        if self.round_state(round_id) is not RoundState.CLOSED:
            self.set_round_state(round_id, RoundState.CLOSED, now)

    def set_round_state(self, round_id: str, new: RoundState, now: dt.datetime) -> None:
        """Move a round to ``new`` if ``check_transition`` allows it (RoundError if not)."""
        old = self.round_state(round_id)
        check_transition(round_id, old, new)
        values: dict[str, object] = {"state": new.value, "state_changed_at": now}
        if new is RoundState.CLOSED:
            values["closed_at"] = now
        with self.engine.begin() as conn:
            # Compare-and-set: of two processes moving the same round, one wins.
            done = conn.execute(
                rounds.update()
                .where(rounds.c.round_id == round_id, rounds.c.state == old.value)
                .values(**values)
            )
            if done.rowcount == 1:
                rounds_changed(conn)
        if done.rowcount != 1:
            raise RoundClosed(f"round {round_id} changed state meanwhile: look again")

    def rounds_past_deadline(self, now: dt.datetime) -> list[tuple[str, RoundState]]:
        """Open rounds whose deadline has passed, and closing rounds: the clock's work."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(rounds.c.round_id, rounds.c.state).where(
                    sa.or_(
                        sa.and_(
                            rounds.c.state == RoundState.OPEN.value,
                            rounds.c.deadline.is_not(None),
                            rounds.c.deadline <= now,
                        ),
                        rounds.c.state == RoundState.CLOSING.value,
                    )
                )
            ).all()
        return [(r.round_id, RoundState(r.state)) for r in rows]

    def list_rounds(self) -> list[RoundSummary]:
        """Every round, newest first, with how many practices submitted of those enrolled."""
        counts = (
            sa.select(submissions.c.round_id, sa.func.count().label("n"))
            .group_by(submissions.c.round_id)
            .subquery()
        )
        with self.engine.connect() as conn:
            expected = conn.execute(
                sa.select(sa.func.count()).select_from(practices).where(*_ENROLLED)
            ).scalar_one()
            rows = conn.execute(
                sa.select(rounds, counts.c.n)
                .select_from(rounds.outerjoin(counts, counts.c.round_id == rounds.c.round_id))
                .order_by(rounds.c.created_at.desc(), rounds.c.round_id)
            ).all()
        return [
            RoundSummary(
                r.round_id,
                r.as_of,
                RoundState(r.state),
                None if r.deadline is None else utc(r.deadline),
                int(r.quorum),
                int(r.n or 0),
                int(expected),
            )
            for r in rows
        ]

    def round_schedule(self, name: str) -> RoundSchedule | None:
        """The schedule called ``name``, or None."""
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(round_schedules).where(round_schedules.c.name == name)
            ).first()
        if row is None:
            return None
        return RoundSchedule(row.deadline_days, row.quorum, row.last_as_of, row.standardise_with)

    def set_round_schedule(
        self, name: str, schedule: RoundSchedule | None, now: dt.datetime
    ) -> None:
        """Store (or with None remove) the schedule called ``name``."""
        with self.engine.begin() as conn:
            conn.execute(round_schedules.delete().where(round_schedules.c.name == name))
            if schedule is not None:
                conn.execute(
                    round_schedules.insert().values(
                        name=name,
                        deadline_days=schedule.deadline_days,
                        quorum=schedule.quorum,
                        last_as_of=schedule.last_as_of,
                        standardise_with=schedule.standardise_with,
                        created_at=now,
                    )
                )

    def claim_scheduled(self, name: str, last: dt.date | None, as_of: dt.date) -> bool:
        """Mark the schedule's round for ``as_of`` started, if no other process did."""
        with self.engine.begin() as conn:
            done = conn.execute(
                round_schedules.update()
                .where(
                    round_schedules.c.name == name,
                    round_schedules.c.last_as_of.is_(None)
                    if last is None
                    else round_schedules.c.last_as_of == last,
                )
                .values(last_as_of=as_of)
            )
        return done.rowcount == 1

    def record_wait(self, round_id: str, practice_id: str, now: dt.datetime) -> None:
        """Note that a practice's release for an open round awaits its approval."""
        with self._answering.begin() as conn:
            _require_answering(conn, round_id)
            known = conn.execute(
                sa.select(round_waits.c.since).where(
                    round_waits.c.round_id == round_id, round_waits.c.practice_id == practice_id
                )
            ).first()
            if known is None:
                conn.execute(
                    round_waits.insert().values(
                        round_id=round_id, practice_id=practice_id, since=now
                    )
                )

    def record_submission(
        self,
        receipt: Receipt,
        signed: SignedRelease,
        document: ReleaseDocument,
        received_at: dt.datetime,
    ) -> Receipt:
        """Store a signed release, byte for byte, and its rows; returns the receipt of record.

        A resend of identical content returns the first receipt; other content from the
        same practice for the same round raises SubmissionConflict.
        """
        (outcome,) = self.record_submissions(
            [PendingSubmission(receipt, signed, document, received_at)]
        )
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def record_submissions(self, batch: Sequence[PendingSubmission]) -> list[Receipt | RoundError]:
        """Store several submissions in one transaction: each one's receipt of record or error.

        Each is judged as if alone and in order: a resend (in the store or earlier in the
        batch) of identical content gets the first receipt, other content a
        SubmissionConflict, an unknown or closed round its error; the rest commit together.
        A failure of the transaction itself (the database down) raises for the whole batch.
        """
        with self._answering.begin() as conn:
            return self._record_batch(conn, batch)

    def _record_batch(
        self, conn: sa.Connection, batch: Sequence[PendingSubmission]
    ) -> list[Receipt | RoundError]:
        states = _answering_states(conn, {p.receipt.round_id for p in batch})
        # The first of each (round, practice) to a round taking answers is offered to the
        # store; the database keeps it unless a submission is there already (stored earlier,
        # or just now by another process sharing a PostgreSQL database).
        offered: dict[tuple[str, str], PendingSubmission] = {}
        for pending in batch:
            receipt, state = pending.receipt, states.get(pending.receipt.round_id)
            if state is not None and takes_answers(state):
                offered.setdefault((receipt.round_id, receipt.practice_id), pending)
        stored = self._insert_new(conn, list(offered.values()))
        of_record = {key: offered[key].receipt for key in stored}
        # What is already there: the receipt of record for a resend, also to a closed round.
        unsettled = {
            (p.receipt.round_id, p.receipt.practice_id)
            for p in batch
            if p.receipt.round_id in states
        } - stored
        if unsettled:
            of_record.update(self._existing_many(conn, unsettled))
        return [_outcome(p.receipt, of_record, states) for p in batch]

    @staticmethod
    def _insert_new(
        conn: sa.Connection, offered: Sequence[PendingSubmission]
    ) -> set[tuple[str, str]]:
        """Store those whose (round, practice) is free, in one statement: the keys stored."""
        if not offered:
            return set()
        dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
        insert = (
            dialect.insert(submissions)
            .on_conflict_do_nothing(index_elements=["round_id", "practice_id"])
            .returning(submissions.c.round_id, submissions.c.practice_id)
        )
        inserted = conn.execute(
            insert,
            [
                {
                    "submission_id": p.receipt.submission_id,
                    "round_id": p.receipt.round_id,
                    "practice_id": p.receipt.practice_id,
                    "content_sha256": p.receipt.content_sha256,
                    "received_at_text": p.receipt.received_at,
                    "received_at": p.received_at,
                    "receipt_signature": p.receipt.signature,
                    "receipt_signer_certificate": p.receipt.signer_certificate,
                    "document": p.signed.document,
                    "signature": p.signed.signature,
                }
                for p in offered
            ],
        )
        stored = {(r.round_id, r.practice_id) for r in inserted}
        # The rows are the comparisons' read model of the document, stored with it.
        rows = [
            {"submission_id": p.receipt.submission_id, "position": i, **asdict(r)}
            for p in offered
            if (p.receipt.round_id, p.receipt.practice_id) in stored
            for i, r in enumerate(p.document.rows)
        ]
        if rows:
            conn.execute(released_rows.insert(), rows)
        return stored

    @classmethod
    def _existing_many(
        cls, conn: sa.Connection, wanted: set[tuple[str, str]]
    ) -> dict[tuple[str, str], Receipt]:
        found = conn.execute(
            sa.select(submissions).where(
                submissions.c.round_id.in_(sorted({r for r, _ in wanted})),
                submissions.c.practice_id.in_(sorted({p for _, p in wanted})),
            )
        ).all()
        receipts = (_stored_receipt(row) for row in found)
        return {
            (r.round_id, r.practice_id): r
            for r in receipts
            if (r.round_id, r.practice_id) in wanted
        }

    @staticmethod
    def _existing(conn: sa.Connection, round_id: str, practice_id: str) -> Receipt | None:
        row = conn.execute(
            sa.select(submissions).where(
                submissions.c.round_id == round_id, submissions.c.practice_id == practice_id
            )
        ).first()
        return None if row is None else _stored_receipt(row)

    def signed_release(self, round_id: str, practice_id: str) -> SignedRelease | None:
        """A practice's release for a round, byte for byte as it signed it, or None."""
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(submissions.c.document, submissions.c.signature).where(
                    submissions.c.round_id == round_id, submissions.c.practice_id == practice_id
                )
            ).first()
        return None if row is None else SignedRelease(bytes(row.document), bytes(row.signature))

    def record_refusal(
        self, round_id: str, practice_id: str, reason: str, now: dt.datetime
    ) -> dt.datetime:
        """Record that a practice declined a round; a repeat keeps the first refusal."""
        with self._answering.begin() as conn:
            _require_answering(conn, round_id)
            if self._existing(conn, round_id, practice_id) is not None:
                raise SubmissionConflict(f"round {round_id}: this practice already submitted")
            first = conn.execute(
                sa.select(refusals.c.received_at).where(
                    refusals.c.round_id == round_id, refusals.c.practice_id == practice_id
                )
            ).scalar()
            if first is not None:
                return utc(first)
            conn.execute(
                refusals.insert().values(
                    round_id=round_id, practice_id=practice_id, reason=reason, received_at=now
                )
            )
        return now

    def round_status(self, round_id: str, now: dt.datetime | None = None) -> RoundStatus:
        """A round's state and each practice's part (late: unanswered past the deadline)."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(rounds).where(rounds.c.round_id == round_id)).first()
            if row is None:
                raise UnknownRound(f"there is no round {round_id}")
            subs = conn.execute(
                sa.select(submissions).where(submissions.c.round_id == round_id)
            ).all()
            refs = conn.execute(sa.select(refusals).where(refusals.c.round_id == round_id)).all()
            waits = conn.execute(
                sa.select(round_waits).where(round_waits.c.round_id == round_id)
            ).all()
            enrolled = conn.execute(sa.select(practices.c.practice_id).where(*_ENROLLED)).all()
        deadline = None if row.deadline is None else utc(row.deadline)
        past = deadline is not None and (now or dt.datetime.now(dt.UTC)) >= deadline
        unanswered = PracticePart.LATE if past else PracticePart.PENDING
        states: dict[str, PracticeRoundState] = {
            p.practice_id: PracticeRoundState(p.practice_id, unanswered) for p in enrolled
        }
        for w in waits:
            states[w.practice_id] = PracticeRoundState(
                w.practice_id, PracticePart.AWAITING_APPROVAL, utc(w.since)
            )
        for r in refs:
            states[r.practice_id] = PracticeRoundState(
                r.practice_id, PracticePart.REFUSED, utc(r.received_at), r.reason
            )
        for s in subs:
            states[s.practice_id] = PracticeRoundState(
                s.practice_id, PracticePart.SUBMITTED, utc(s.received_at), s.content_sha256
            )
        return RoundStatus(
            row.round_id,
            row.as_of,
            RoundState(row.state),
            tuple(states[k] for k in sorted(states)),
            deadline,
            int(row.quorum),
        )

    def released_rows_frame(self, round_id: str) -> pd.DataFrame:
        """Every counted released row of a round with its practice, in the comparisons' columns.

        A submission a coordinator excluded (``coordinator.exclusions``) is not counted.
        """
        self.round_state(round_id)
        excluded = sa.exists().where(
            submission_exclusions.c.round_id == submissions.c.round_id,
            submission_exclusions.c.practice_id == submissions.c.practice_id,
        )
        query = (
            sa.select(
                practices.c.practice_id,
                practices.c.name.label("practice_name"),
                practices.c.locality,
                released_rows.c.indicator,
                released_rows.c.category,
                released_rows.c.numerator,
                released_rows.c.denominator,
                released_rows.c["count"],
                released_rows.c.mean,
                released_rows.c.value,
                released_rows.c.suppressed,
            )
            .select_from(
                released_rows.join(submissions).join(
                    practices, submissions.c.practice_id == practices.c.practice_id
                )
            )
            .where(submissions.c.round_id == round_id, ~excluded)
            .order_by(practices.c.practice_id, released_rows.c.position)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        frame = pd.DataFrame([tuple(r) for r in rows], columns=list(FRAME_COLUMNS))
        for name in ("numerator", "denominator", "count"):
            frame[name] = frame[name].astype("Int64")
        for name in ("mean", "value"):
            frame[name] = frame[name].astype("float64")
        frame["suppressed"] = frame["suppressed"].astype(bool)
        return frame


def _answering_states(conn: sa.Connection, round_ids: set[str]) -> dict[str, RoundState]:
    """The states of those of ``round_ids`` that exist, held until the transaction ends.

    Read before an answer to them is stored. On PostgreSQL the round rows are locked FOR
    SHARE: answers to one round store side by side, while a change of its state (an
    UPDATE, which waits for those locks and blocks them) comes wholly before or after
    each. On SQLite the transaction began IMMEDIATE (``Store._answering``) instead.
    """
    found = conn.execute(
        sa.select(rounds.c.round_id, rounds.c.state)
        .where(rounds.c.round_id.in_(sorted(round_ids)))
        .with_for_update(read=True)
    ).all()
    return {round_id: RoundState(state) for round_id, state in found}


def _require_answering(conn: sa.Connection, round_id: str) -> None:
    """Raise unless the round exists and takes answers (its state held till commit)."""
    state = _answering_states(conn, {round_id}).get(round_id)
    if state is None:
        raise UnknownRound(f"there is no round {round_id}")
    if not takes_answers(state):
        raise RoundClosed(f"round {round_id} is {state}")


def _usable(row: sa.Row[Any] | None, now: dt.datetime) -> str:
    if row is None:
        raise EnrolmentError("this enrolment token is not known to the coordinator")
    if row.used_at is not None:
        raise EnrolmentError("this enrolment token has already been used")
    if utc(row.expires_at) < now:
        raise EnrolmentError("this enrolment token has expired: ask the coordinator for another")
    return str(row.practice_id)


def _outcome(
    receipt: Receipt, of_record: dict[tuple[str, str], Receipt], states: dict[str, RoundState]
) -> Receipt | RoundError:
    """What a submission gets, judged alone: the receipt of record for the same content,
    a conflict for other content, or the round's error when nothing was stored for it."""
    existing = of_record.get((receipt.round_id, receipt.practice_id))
    if existing is not None:
        if existing.content_sha256 != receipt.content_sha256:
            return SubmissionConflict(
                f"round {existing.round_id}: this practice already submitted different content"
            )
        return existing
    state = states.get(receipt.round_id)
    if state is None:
        return UnknownRound(f"there is no round {receipt.round_id}")
    if takes_answers(state):  # offered, yet neither stored nor found: never expected
        raise StoreError(f"round {receipt.round_id}: a submission was neither stored nor found")
    return RoundClosed(f"round {receipt.round_id} is {state}")


def _stored_receipt(row: sa.Row[Any]) -> Receipt:
    return Receipt(
        submission_id=row.submission_id,
        round_id=row.round_id,
        practice_id=row.practice_id,
        received_at=row.received_at_text,
        content_sha256=row.content_sha256,
        signature=row.receipt_signature,
        signer_certificate=bytes(row.receipt_signer_certificate),
    )


def _practice(row: sa.Row[Any]) -> PracticeRecord:
    return PracticeRecord(
        practice_id=row.practice_id,
        name=row.name,
        locality=row.locality,
        cert_fingerprint=row.cert_fingerprint,
        enrolled_at=None if row.enrolled_at is None else utc(row.enrolled_at),
        revoked=bool(row.revoked),
    )


def _round(row: sa.Row[Any], docs: list[sa.Row[Any]]) -> Round:
    return Round(
        round_id=row.round_id,
        as_of=row.as_of,
        policy=DisclosurePolicy.from_data(json.loads(row.policy_json)),
        definitions=tuple(DefinitionDocument(d.indicator_id, d.content_hash, d.body) for d in docs),
        created_at=row.created_at_text,
        signature=row.signature,
        signer_certificate=bytes(row.signer_certificate),
        deadline=row.deadline_text,
        quorum=int(row.quorum),
        reference_rates=bytes(row.reference_rates),
    )
