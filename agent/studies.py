"""The agent's side of studies: opt in, then take part in secure aggregation step by step.

A study is shown to the practice in plain words (``fedpeer-agent study show``) before
anything is computed. ``agent.toml`` [studies] decides what happens to a new one: held
for approval (the default), joined when its owner is named, or declined. The practice
can withdraw while the study is open.

Once the coordinator closes a study, each poll takes the step of the current stage
(``fedpeer.studies.Stage``), checking what the coordinator sends before answering:

- keys: the coordinator must be naming the practices it says joined;
- shares: each member's keys must be signed by that practice's certificate from this
  coordinator's CA, our own keys among them;
- masked: the practice's raw counts are computed now, on its own extract, and sent only
  masked (``fedpeer.secagg``): on their own they are uniformly random;
- consistency: the list of practices whose vectors arrived is signed, once; and a sum
  over a set of practices that differs from an earlier sum of the same question by fewer
  than the study's minimum number of practices is refused (it would give the missing
  practices' values away by subtraction);
- unmask: shares are revealed only when at least the threshold of members signed the
  very list this practice signed: a coordinator telling some practices that one dropped
  out and others that it did not, to unmask it, is caught here.

A refusal at any stage ends this practice's part in the study; its reason is logged and
kept here, and names no patient.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import sqlite3
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc

from agent.identity_store import AgentIdentity
from agent.isolated import run_isolated
from agent.local_db import connect_private, transaction
from agent.pipeline import compute_results
from agent.policy_file import load_settings
from fedpeer.dates import reference_date_problem
from fedpeer.errors import FedpeerError, IdentityError
from fedpeer.identity import (
    ROLE_PRACTICE,
    cert_from_pem,
    cert_to_pem,
    key_from_pem,
    subject_of,
    verify_issued_by,
)
from fedpeer.signing import sign_bytes, verify_bytes, verify_signed
from fedpeer.studies import (
    STEP_FOR,
    Membership,
    Stage,
    Step,
    Study,
    StudyError,
    StudyState,
    b64,
    needs_strata,
    survivors_digest,
    threshold,
    to_vector,
    unb64,
)
from fedpeer.v1 import agent_pb2, agent_pb2_grpc

if TYPE_CHECKING:
    from fedpeer.secagg import PublicKeys

# The secure aggregation and the definitions load only when a study is there to answer:
# a waiting agent polls for studies and, with none, stays small.

log = logging.getLogger("fedpeer.agent")

STUDIES_FILE = "studies.sqlite"
CALL_TIMEOUT = 60.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS studies (
    study_id TEXT PRIMARY KEY,
    document BLOB NOT NULL,
    decision TEXT NOT NULL,
    why TEXT NOT NULL DEFAULT '',
    party BLOB,
    roster TEXT,
    signed_survivors TEXT,
    done TEXT NOT NULL DEFAULT '[]',
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS sums (
    meaning TEXT NOT NULL,
    as_of TEXT NOT NULL,
    study_id TEXT NOT NULL,
    practices TEXT NOT NULL,
    PRIMARY KEY (meaning, as_of, study_id)
);
"""


class Decision(StrEnum):
    """The practice's decision on a study."""

    HELD = "held"  # waiting for `fedpeer-agent study approve` or `decline`
    ACCEPTED = "accepted"
    DECLINED = "declined"
    WITHDRAWN = "withdrawn"
    REFUSED = "refused"  # the agent stopped taking part: see ``why``
    DONE = "done"  # its part is over


@dataclass(frozen=True)
class LocalStudy:
    """A study as this agent keeps it."""

    study: Study
    decision: Decision
    why: str
    party: bytes | None
    roster: dict[str, str] | None  # member -> certificate PEM, from the shares stage
    signed_survivors: list[str] | None
    done: list[str]


class StudyBook:
    """The agent's record of studies, in ``<home>/studies.sqlite``; never leaves the practice."""

    def __init__(self, path: Path) -> None:
        self.path = path
        # private: it holds the secret keys of studies in progress
        self._db = connect_private(path, isolation_level=None)
        self._db.executescript(_SCHEMA)

    @classmethod
    def at_home(cls, home: Path) -> StudyBook:
        return cls(Path(home) / STUDIES_FILE)

    def close(self) -> None:
        self._db.close()

    def _tx(self) -> AbstractContextManager[sqlite3.Connection]:
        return transaction(self._db)

    def get(self, study_id: str) -> LocalStudy | None:
        row = self._db.execute(
            "SELECT document, decision, why, party, roster, signed_survivors, done"
            " FROM studies WHERE study_id = ?",
            (study_id,),
        ).fetchone()
        if row is None:
            return None
        document, decision, why, party, roster, survivors, done = row
        return LocalStudy(
            Study.from_bytes(bytes(document)),
            Decision(decision),
            why,
            None if party is None else bytes(party),
            None if roster is None else json.loads(roster),
            None if survivors is None else json.loads(survivors),
            json.loads(done),
        )

    def all(self) -> list[LocalStudy]:
        ids = [r[0] for r in self._db.execute("SELECT study_id FROM studies ORDER BY study_id")]
        return [s for i in ids if (s := self.get(i)) is not None]

    def add(self, study: Study, decision: Decision, why: str = "") -> LocalStudy:
        with self._tx() as db:
            db.execute(
                "INSERT OR IGNORE INTO studies (study_id, document, decision, why, updated_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (study.study_id, study.to_bytes(), decision.value, why, _now()),
            )
        found = self.get(study.study_id)
        assert found is not None
        return found

    def update(self, study_id: str, **fields: object) -> None:
        values = {
            k: (
                json.dumps(v)
                if k in ("roster", "signed_survivors", "done")
                else v.value
                if isinstance(v, StrEnum)
                else v
            )
            for k, v in fields.items()
        }
        assignments = ", ".join(f"{k} = ?" for k in values)
        with self._tx() as db:
            db.execute(
                f"UPDATE studies SET {assignments}, updated_at = ? WHERE study_id = ?",
                (*values.values(), _now(), study_id),
            )

    def decide(self, study_id: str, decision: Decision, why: str = "") -> None:
        """The practice's own decision (approve, decline, withdraw)."""
        if self.get(study_id) is None:
            raise StudyError(f"this agent has not seen a study {study_id}")
        self.update(study_id, decision=decision, why=why)

    def earlier_sums(self, meaning: str, as_of: str, study_id: str) -> list[set[str]]:
        rows = self._db.execute(
            "SELECT practices FROM sums WHERE meaning = ? AND as_of = ? AND study_id != ?",
            (meaning, as_of, study_id),
        )
        return [set(json.loads(r[0])) for r in rows]

    def record_sums(self, meanings: list[str], as_of: str, study_id: str, who: list[str]) -> None:
        with self._tx() as db:
            for meaning in meanings:
                db.execute(
                    "INSERT OR IGNORE INTO sums VALUES (?, ?, ?, ?)",
                    (meaning, as_of, study_id, json.dumps(sorted(who))),
                )


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


class Refuse(FedpeerError):
    """This practice stops taking part in a study; the message says why, for the practice."""


class StudyWorker:
    """Takes this practice's part in every study, one poll at a time."""

    def __init__(
        self,
        home: Path,
        extract: str,
        *,
        engine: str = "sql",
        today: Callable[[], dt.date] = dt.date.today,
        isolated: bool = True,
    ) -> None:
        self.home = Path(home)
        self.extract = extract
        self.engine = engine
        self._today = today
        # The extract is read in a child process (agent.isolated), as for rounds.
        self.isolated = isolated

    async def run(self, stub: agent_pb2_grpc.AgentStub, identity: AgentIdentity) -> None:
        """Look at every study once and take whatever step is due."""
        listed = await stub.ListStudies(agent_pb2.ListStudiesRequest(), timeout=CALL_TIMEOUT)
        if not listed.studies:
            return
        from fedpeer.secagg import SecAggError

        book = StudyBook.at_home(self.home)
        try:
            for listing in listed.studies:
                try:
                    await self._one(stub, book, identity, listing)
                except (Refuse, StudyError, IdentityError, SecAggError) as exc:
                    # This practice's part is over; the reason is for the practice.
                    study_id = Study.from_bytes(listing.study).study_id
                    if book.get(study_id) is not None:
                        book.update(study_id, decision=Decision.REFUSED, why=str(exc))
                    log.warning("event=study_refused study=%s reason=%s", study_id, exc)
                except FedpeerError as exc:  # the extract unreadable today: try next time
                    log.error("event=study_failed reason=%s", exc)
                except grpc.aio.AioRpcError as exc:
                    if exc.code() in (
                        grpc.StatusCode.UNAVAILABLE,
                        grpc.StatusCode.DEADLINE_EXCEEDED,
                    ):
                        raise
                    # The coordinator would not take a step (the stage moved on): next time.
                    log.warning("event=study_step_refused reason=%s", exc.details())
        finally:
            book.close()

    async def _one(
        self,
        stub: agent_pb2_grpc.AgentStub,
        book: StudyBook,
        identity: AgentIdentity,
        listing: agent_pb2.StudyListing,
    ) -> None:
        ca_cert = identity.ca_cert
        # As a round's: by the signing key this CA certified (or the CA key itself).
        verify_signed(ca_cert, listing.study, listing.signature, listing.signer_certificate)
        study = Study.from_bytes(listing.study)
        local = book.get(study.study_id) or book.add(study, *self._first_decision(study))
        if local.study.to_bytes() != study.to_bytes():
            raise Refuse("the coordinator changed the study after it was first shown")
        state, membership = StudyState(listing.state), listing.membership
        post = _Poster(stub, identity, study.study_id)
        if state is StudyState.OPEN:
            wanted = {
                Decision.ACCEPTED: Membership.JOINED,
                Decision.DECLINED: Membership.DECLINED,
                Decision.WITHDRAWN: Membership.WITHDRAWN,
            }.get(local.decision)
            if wanted is not None and membership != wanted.value:
                await post(STEP_FOR[wanted], {})
            return
        if (
            state is not StudyState.AGGREGATING
            or local.decision is not Decision.ACCEPTED
            or membership != Membership.JOINED.value
        ):
            return
        response = await stub.GetStudyStep(
            agent_pb2.GetStudyStepRequest(study_id=study.study_id), timeout=CALL_TIMEOUT
        )
        stage = Stage(response.stage)
        if stage.value in local.done:
            return
        doc = json.loads(response.document)
        body = await self._step(book, local, stage, doc, identity)
        await post(stage.value, body)
        book.update(study.study_id, done=[*local.done, stage.value])
        if stage is Stage.UNMASK:
            book.update(study.study_id, decision=Decision.DONE)

    def _first_decision(self, study: Study) -> tuple[Decision, str]:
        problem = reference_date_problem(study.as_of, self._today())
        if problem is not None:
            return Decision.DECLINED, problem
        rule = load_settings(self.home).studies
        if rule.mode.value == "decline":
            return Decision.DECLINED, "agent.toml declines every study"
        if rule.accepts(study.owner):
            return Decision.ACCEPTED, f"agent.toml accepts studies from {study.owner}"
        return Decision.HELD, "waiting for `fedpeer-agent study approve` or `decline`"

    async def _step(
        self,
        book: StudyBook,
        local: LocalStudy,
        stage: Stage,
        doc: dict,
        identity: AgentIdentity,
    ) -> dict[str, object]:
        from fedpeer.definitions import meaning_hash
        from fedpeer.secagg import Party

        study = local.study
        me: str = identity.practice_id
        if stage is Stage.KEYS:
            members = doc.get("members")
            if not isinstance(members, list) or me not in members:
                raise Refuse("the coordinator's list of members does not include this practice")
            party = Party(me, study.study_id, threshold(len(members), study.min_practices))
            book.update(study.study_id, party=party.to_bytes())
            return {
                "keys": b64(party.public_keys().to_bytes()),
                "certificate": identity.cert_pem.decode("ascii"),
            }
        assert local.party is not None
        party = Party.from_bytes(local.party)
        if stage is Stage.SHARES:
            roster, certificates = self._roster(doc, identity, study)
            shares = party.encrypted_shares(roster)
            book.update(study.study_id, party=party.to_bytes(), roster=certificates)
            return {"shares": {p: b64(c) for p, c in sorted(shares.items())}}
        if stage is Stage.MASKED:
            inbox = {p: unb64(c, f"share from {p}") for p, c in doc.get("inbox", {}).items()}
            run = run_isolated if self.isolated else _in_process
            masked, state = await asyncio.to_thread(
                run, masked_counts, self.extract, self.engine, study, party.to_bytes(), inbox
            )
            book.update(study.study_id, party=state)
            return {"masked": b64(masked)}
        survivors = doc.get("survivors")
        if not isinstance(survivors, list) or me not in survivors:
            raise Refuse("the coordinator's list of survivors does not include this practice")
        self._no_differencing(book, study, survivors)
        if stage is Stage.CONSISTENCY:
            if local.signed_survivors not in (None, survivors):
                raise Refuse("the coordinator asked this practice to sign two different lists")
            book.update(study.study_id, signed_survivors=survivors)
            return {"survivors_sha256": survivors_digest(survivors)}
        if survivors != local.signed_survivors:
            raise Refuse(
                "the coordinator's list of who dropped out differs from the one this practice "
                "signed: it may be trying to unmask a practice"
            )
        self._consistent(doc, local, survivors)
        shares = party.unmasking_shares(survivors)
        book.update(study.study_id, party=party.to_bytes())
        book.record_sums(
            [meaning_hash(d) for d in study.parsed()],
            study.as_of.isoformat(),
            study.study_id,
            survivors,
        )
        return {"shares": {p: b64(s) for p, s in sorted(shares.items())}}

    @staticmethod
    def _roster(
        doc: dict, identity: AgentIdentity, study: Study
    ) -> tuple[list[PublicKeys], dict[str, str]]:
        """Each member's keys, checked against its certificate from this coordinator's CA."""
        from fedpeer.secagg import PublicKeys

        ca_cert = identity.ca_cert
        members = doc.get("members")
        roster, certificates = [], {}
        for entry in doc.get("roster", []):
            message = unb64(entry.get("message"), "roster entry")
            step = Step.from_bytes(message)
            cert = cert_from_pem(step.body.get("certificate", ""))
            verify_issued_by(cert, ca_cert)
            subject = subject_of(cert)
            if subject.role != ROLE_PRACTICE or subject.common_name != step.practice_id:
                raise Refuse(f"the keys of {step.practice_id} carry another's certificate")
            verify_bytes(
                cert, message, unb64(entry.get("signature"), "signature"), step.practice_id
            )
            if step.study_id != study.study_id or step.step != Stage.KEYS.value:
                raise Refuse(f"the keys of {step.practice_id} are for another study or step")
            if not isinstance(members, list) or step.practice_id not in members:
                raise Refuse(f"{step.practice_id} sent keys without being a member")
            roster.append(PublicKeys.from_bytes(unb64(step.body.get("keys"), "keys")))
            certificates[step.practice_id] = cert_to_pem(cert).decode("ascii")
        return roster, certificates

    @staticmethod
    def _consistent(doc: dict, local: LocalStudy, survivors: list[str]) -> None:
        """At least the threshold of members signed this very list of survivors."""
        assert local.roster is not None
        members = len(local.roster)
        need = threshold(members, local.study.min_practices)
        digest = survivors_digest(survivors)
        signers = set()
        for entry in doc.get("signatures", []):
            message = unb64(entry.get("message"), "consistency")
            step = Step.from_bytes(message)
            pem = local.roster.get(step.practice_id)
            if pem is None or step.study_id != local.study.study_id:
                continue
            if step.step != Stage.CONSISTENCY.value or step.body.get("survivors_sha256") != digest:
                continue
            try:
                verify_bytes(
                    cert_from_pem(pem), message, unb64(entry.get("signature"), "sig"), "member"
                )
            except IdentityError:
                continue
            signers.add(step.practice_id)
        if len(signers) < need:
            raise Refuse(
                f"only {len(signers)} practices confirmed the list of who dropped out; "
                f"{need} are needed: the coordinator may have shown practices different lists"
            )

    @staticmethod
    def _no_differencing(book: StudyBook, study: Study, survivors: list[str]) -> None:
        """Refuse a sum whose practices differ from an earlier sum's by too few."""
        from fedpeer.definitions import meaning_hash

        now = set(survivors)
        for definition in study.parsed():
            for earlier in book.earlier_sums(
                meaning_hash(definition), study.as_of.isoformat(), study.study_id
            ):
                apart = len(now ^ earlier)
                if 0 < apart < study.min_practices:
                    raise Refuse(
                        f"{definition.id}: this sum's practices differ from an earlier sum of "
                        f"the same question by {apart}, fewer than {study.min_practices}: "
                        "subtracting would give their values away"
                    )


def masked_counts(
    extract: str, engine: str, study: Study, party_state: bytes, inbox: dict[str, bytes]
) -> tuple[bytes, bytes]:
    """The practice's counts for a study, from its extract, masked; and the party's new state."""
    from fedpeer.secagg import Party

    definitions = study.parsed()
    results, _ = compute_results(
        extract, study.as_of, definitions, engine=engine, by_age_sex=needs_strata(definitions)
    )
    party = Party.from_bytes(party_state)
    masked = party.masked_input(inbox, to_vector(definitions, results))
    return masked, party.to_bytes()


def _in_process(fn: Callable[..., Any], /, *args: Any) -> Any:
    return fn(*args)


class _Poster:
    """Signs and sends this practice's steps in one study."""

    def __init__(
        self, stub: agent_pb2_grpc.AgentStub, identity: AgentIdentity, study_id: str
    ) -> None:
        self.stub, self.identity, self.study_id = stub, identity, study_id

    async def __call__(self, step: str, body: dict[str, object]) -> None:
        me: str = self.identity.practice_id
        message = Step(self.study_id, me, step, body).to_bytes()
        key = key_from_pem(self.identity.key_pem)
        await self.stub.PostStudyStep(
            agent_pb2.StudyStepMessage(
                study_id=self.study_id, message=message, signature=sign_bytes(key, message)
            ),
            timeout=CALL_TIMEOUT,
        )
        log.info("event=study_step study=%s step=%s", self.study_id, step)
