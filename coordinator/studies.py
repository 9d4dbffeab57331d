"""Studies on the coordinator: their life, and the secure aggregation's stages.

A study is created (draft), opened (practices may join or withdraw), closed (the members
are fixed and the secure aggregation runs, stage by stage: ``fedpeer.studies.Stage``),
and then published or failed. The coordinator only relays and stores each practice's
signed steps; it learns the sum over the practices whose masked vectors arrived, and
publishes it only when at least the study's minimum number of practices are in it,
after the network's disclosure control on the pooled counts.

A stage moves on when every practice expected in it has sent its step, or when its time
is up (``step_seconds``), if enough practices are left (``fedpeer.studies.threshold``);
otherwise the study fails and nothing is published. Everything here is a plain function
over ``StudyBook`` (the study tables), so the servicers stay thin.

A study is signed by the coordinator's signing key, as rounds are, and stored with the
signer's certificate: creating one needs no CA key (issue 10).
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace

import sqlalchemy as sa
from cryptography import x509

from coordinator.store import Store
from coordinator.tables import (
    practices,
    studies,
    study_members,
    study_results,
    study_shares,
    study_steps,
)
from fedpeer.canonical import canonical_json
from fedpeer.collection import DefinitionDocument, decode_rows, encode_rows
from fedpeer.dates import reference_date_problem
from fedpeer.dp import release_with_noise
from fedpeer.identity import SigningIdentity, cert_to_pem
from fedpeer.policy import DisclosurePolicy, Noise
from fedpeer.release import to_rows
from fedpeer.secagg import Aggregator, PublicKeys, SecAggError
from fedpeer.signing import sign_bytes, verify_bytes
from fedpeer.standardise import ReferenceRates, Standardisation
from fedpeer.studies import (
    MEMBERSHIP_OF,
    Membership,
    Stage,
    Step,
    Study,
    StudyError,
    StudyState,
    b64,
    from_vector,
    survivors_digest,
    threshold,
    unb64,
    vector_length,
)

log = logging.getLogger("fedpeer.coordinator")

STAGES = tuple(Stage)


@dataclass(frozen=True)
class StudyRecord:
    """A study as stored, and where it stands."""

    study: Study
    signature: bytes
    signer_certificate: bytes  # DER, of the signing key; empty when the CA key signed
    state: StudyState
    stage: Stage | None
    stage_started_at: dt.datetime | None
    detail: str


@dataclass(frozen=True)
class SignedStep:
    """A practice's step as it signed it."""

    message: bytes
    signature: bytes

    @property
    def step(self) -> Step:
        return _parse_step(self.message)


# Stages read the same stored steps and study document again and again (every practice's
# call checks who is expected): parse each once. Bytes are the key, so a changed row is
# a new entry, never a stale one.
@functools.lru_cache(maxsize=8192)
def _parse_step(message: bytes) -> Step:
    return Step.from_bytes(message)


@functools.lru_cache(maxsize=64)
def _parse_study(document: bytes) -> Study:
    return Study.from_bytes(document)


def _utc(moment: dt.datetime | None) -> dt.datetime | None:
    if moment is None:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


class StudyBook:
    """The study tables behind plain methods, one transaction each."""

    def __init__(self, store: Store, network_policy: DisclosurePolicy) -> None:
        self.engine = store.engine
        self.network_policy = network_policy  # for the pooled counts

    def add(self, study: Study, signer: SigningIdentity, now: dt.datetime) -> None:
        """Store a new draft study, signed by ``signer`` with its certificate beside it."""
        document = study.to_bytes()
        with self.engine.begin() as conn:
            conn.execute(
                studies.insert().values(
                    study_id=study.study_id,
                    owner=study.owner,
                    document=document,
                    signature=sign_bytes(signer.key, document),
                    signer_certificate=signer.certificate_der,
                    state=StudyState.DRAFT.value,
                    stage="",
                    created_at=now,
                )
            )

    def _record(self, row: sa.Row) -> StudyRecord:
        return StudyRecord(
            _parse_study(bytes(row.document)),
            bytes(row.signature),
            bytes(row.signer_certificate),
            StudyState(row.state),
            Stage(row.stage) if row.stage else None,
            _utc(row.stage_started_at),
            row.detail,
        )

    def get(self, study_id: str) -> StudyRecord:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(studies).where(studies.c.study_id == study_id)).first()
        if row is None:
            raise StudyError(f"there is no study {study_id}")
        return self._record(row)

    def all(self, owner: str | None = None) -> list[StudyRecord]:
        query = sa.select(studies).order_by(studies.c.created_at)
        if owner is not None:
            query = query.where(studies.c.owner == owner)
        with self.engine.connect() as conn:
            return [self._record(r) for r in conn.execute(query)]

    def in_state(self, state: StudyState) -> list[str]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(studies.c.study_id).where(studies.c.state == state))
            return [r[0] for r in rows]

    def set_state(
        self,
        study_id: str,
        state: StudyState,
        now: dt.datetime,
        stage: Stage | None = None,
        detail: str = "",
        *,
        expect: tuple[StudyState, Stage | None] | None = None,
    ) -> bool:
        """Move a study on; with ``expect``, only from that state and stage (False if not)."""
        query = sa.update(studies).where(studies.c.study_id == study_id)
        if expect is not None:
            query = query.where(
                studies.c.state == expect[0].value,
                studies.c.stage == (expect[1].value if expect[1] else ""),
            )
        with self.engine.begin() as conn:
            done = conn.execute(
                query.values(
                    state=state.value,
                    stage=stage.value if stage else "",
                    stage_started_at=now,
                    detail=detail,
                )
            )
        return done.rowcount == 1

    def members(self, study_id: str) -> dict[str, Membership]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(study_members.c.practice_id, study_members.c.state).where(
                    study_members.c.study_id == study_id
                )
            )
            return {pid: Membership(state) for pid, state in rows}

    def set_member(
        self, study_id: str, practice_id: str, state: Membership, now: dt.datetime
    ) -> None:
        with self.engine.begin() as conn:
            done = conn.execute(
                sa.update(study_members)
                .where(
                    study_members.c.study_id == study_id,
                    study_members.c.practice_id == practice_id,
                )
                .values(state=state.value, updated_at=now)
            )
            if done.rowcount == 0:
                conn.execute(
                    study_members.insert().values(
                        study_id=study_id, practice_id=practice_id, state=state, updated_at=now
                    )
                )

    def add_step(
        self, study_id: str, stage: Stage, practice_id: str, signed: SignedStep, now: dt.datetime
    ) -> None:
        """Store a step once; an identical resend is fine, a different one is refused."""
        with self.engine.begin() as conn:
            existing = conn.execute(
                sa.select(study_steps.c.message).where(
                    study_steps.c.study_id == study_id,
                    study_steps.c.stage == stage.value,
                    study_steps.c.practice_id == practice_id,
                )
            ).scalar()
            if existing is not None:
                if bytes(existing) != signed.message:
                    raise StudyError(
                        f"study {study_id}: practice {practice_id} already sent another "
                        f"{stage.value} step"
                    )
                return
            conn.execute(
                study_steps.insert().values(
                    study_id=study_id,
                    stage=stage.value,
                    practice_id=practice_id,
                    message=signed.message,
                    signature=signed.signature,
                    received_at=now,
                )
            )
            if stage is Stage.SHARES:
                # Indexed by receiver, so each practice's inbox is one lookup, not a read
                # of every practice's shares (n^2 of them).
                conn.execute(
                    study_shares.insert(),
                    [
                        {
                            "study_id": study_id,
                            "sender": practice_id,
                            "receiver": receiver,
                            "ciphertext": text,
                        }
                        for receiver, text in signed.step.body["shares"].items()
                    ],
                )

    def senders(self, study_id: str, stage: Stage) -> list[str]:
        """Who sent a step in a stage, sorted (without reading the steps)."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(study_steps.c.practice_id)
                .where(study_steps.c.study_id == study_id, study_steps.c.stage == stage.value)
                .order_by(study_steps.c.practice_id)
            )
            return [r[0] for r in rows]

    def inbox(self, study_id: str, receiver: str) -> dict[str, str]:
        """The round-1 ciphertexts addressed to one practice, by sender."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(study_shares.c.sender, study_shares.c.ciphertext).where(
                    study_shares.c.study_id == study_id, study_shares.c.receiver == receiver
                )
            )
            return {sender: text for sender, text in rows}

    def steps(self, study_id: str, stage: Stage) -> dict[str, SignedStep]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(
                    study_steps.c.practice_id, study_steps.c.message, study_steps.c.signature
                ).where(study_steps.c.study_id == study_id, study_steps.c.stage == stage.value)
            )
            return {pid: SignedStep(bytes(m), bytes(s)) for pid, m, s in rows}

    def publish(self, study_id: str, rows: bytes, contributors: int, now: dt.datetime) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                study_results.insert().values(
                    study_id=study_id, rows=rows, practices=contributors, published_at=now
                )
            )
            conn.execute(
                sa.update(studies)
                .where(studies.c.study_id == study_id)
                .values(state=StudyState.PUBLISHED.value, stage="", stage_started_at=now)
            )

    def results(self, study_id: str) -> tuple[bytes, int, dt.datetime] | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(study_results).where(study_results.c.study_id == study_id)
            ).first()
        if row is None:
            return None
        return bytes(row.rows), int(row.practices), _utc(row.published_at)  # type: ignore[return-value]

    def practice_exists(self, practice_id: str) -> bool:
        with self.engine.connect() as conn:
            return (
                conn.execute(
                    sa.select(practices.c.practice_id).where(practices.c.practice_id == practice_id)
                ).first()
                is not None
            )


# -- the study's life -------------------------------------------------------------------


def create_study(
    book: StudyBook,
    signer: SigningIdentity,
    *,
    owner: str,
    title: str,
    purpose: str,
    as_of: dt.date,
    min_practices: int,
    definitions: Sequence[DefinitionDocument],
    budget_rho: float = 0.0,
    now: dt.datetime,
) -> StudyRecord:
    """Create a draft study signed by ``signer`` (the signing key, as for rounds).

    Its definitions must parse, and its date be a month end.
    """
    problem = reference_date_problem(as_of, now.date())
    if problem is not None:
        raise StudyError(problem)
    study = Study(
        study_id=f"study-{as_of.isoformat()}-{uuid.uuid4().hex[:8]}",
        owner=owner,
        title=title,
        purpose=purpose,
        as_of=as_of,
        min_practices=min_practices,
        definitions=tuple(definitions),
        budget_rho=budget_rho,
        created_at=now.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    )
    for document, definition in zip(study.definitions, study.parsed(), strict=True):
        # (a definition that does not parse is refused by parsed(), naming it)
        if document.id != definition.id:
            raise StudyError(f"definition {document.id} is sent under another id: {definition.id}")
    book.add(study, signer, now)
    log.info("event=study_created study=%s owner=%s", study.study_id, owner)
    return book.get(study.study_id)


def open_study(book: StudyBook, study_id: str, now: dt.datetime) -> StudyRecord:
    """Let practices see the study and join it."""
    if not book.set_state(study_id, StudyState.OPEN, now, expect=(StudyState.DRAFT, None)):
        raise StudyError(f"study {study_id} is not a draft: {book.get(study_id).state}")
    return book.get(study_id)


def close_study(book: StudyBook, study_id: str, now: dt.datetime) -> StudyRecord:
    """Fix the members and start the secure aggregation, or fail with too few members."""
    record = book.get(study_id)
    if record.state is not StudyState.OPEN:
        raise StudyError(f"study {study_id} is not open: {record.state}")
    joined = _joined(book, study_id)
    if len(joined) < record.study.min_practices:
        book.set_state(
            study_id,
            StudyState.FAILED,
            now,
            detail=f"{len(joined)} practices joined; the study needs {record.study.min_practices}",
            expect=(StudyState.OPEN, None),
        )
    else:
        book.set_state(
            study_id, StudyState.AGGREGATING, now, Stage.KEYS, expect=(StudyState.OPEN, None)
        )
    log.info("event=study_closed study=%s members=%d", study_id, len(joined))
    return book.get(study_id)


def _joined(book: StudyBook, study_id: str) -> list[str]:
    return sorted(p for p, s in book.members(study_id).items() if s is Membership.JOINED)


# -- the stages ---------------------------------------------------------------------------


def expected(book: StudyBook, record: StudyRecord) -> list[str]:
    """The practices expected to send a step in the study's current stage."""
    study_id, stage = record.study.study_id, record.stage
    if stage is Stage.KEYS:
        return _joined(book, study_id)
    assert stage is not None
    if stage is Stage.UNMASK:
        digest = survivors_digest(book.senders(study_id, Stage.MASKED))
        return sorted(
            p
            for p, signed in book.steps(study_id, Stage.CONSISTENCY).items()
            if signed.step.body.get("survivors_sha256") == digest
        )
    return book.senders(study_id, STAGES[STAGES.index(stage) - 1])


def post_step(
    book: StudyBook,
    practice_id: str,
    sender: x509.Certificate,
    study_id: str,
    signed: SignedStep,
    now: dt.datetime,
    step_seconds: float,
) -> StudyRecord:
    """Take one signed step from a practice; move the study on when the stage is complete."""
    verify_bytes(sender, signed.message, signed.signature, f"practice {practice_id}")
    step = signed.step
    if step.practice_id != practice_id or step.study_id != study_id:
        raise StudyError(f"study {study_id}: the step names another practice or study")
    record = book.get(study_id)
    if step.step in MEMBERSHIP_OF:
        if record.state is not StudyState.OPEN:
            raise StudyError(
                f"study {study_id} is {record.state}: practices join or withdraw while it is open"
            )
        book.set_member(study_id, practice_id, MEMBERSHIP_OF[step.step], now)
        log.info("event=study_%s study=%s practice=%s", step.step, study_id, practice_id)
        return book.get(study_id)
    if record.state is not StudyState.AGGREGATING or step.step != record.stage:
        raise StudyError(
            f"study {study_id} is not collecting {step.step} steps now "
            f"({record.state}{', ' + record.stage if record.stage else ''})"
        )
    if practice_id not in expected(book, record):
        raise StudyError(f"study {study_id}: practice {practice_id} is not in this stage")
    _check_body(record, step, sender)
    book.add_step(study_id, record.stage, practice_id, signed, now)
    log.info("event=study_step study=%s stage=%s practice=%s", study_id, step.step, practice_id)
    return advance(book, study_id, now, step_seconds)


def _check_body(record: StudyRecord, step: Step, sender: x509.Certificate) -> None:
    """What the coordinator can check of a step without learning anything from it."""
    body, stage = step.body, record.stage
    if stage is Stage.KEYS:
        keys = PublicKeys.from_bytes(unb64(body.get("keys"), "keys"))
        if keys.party != step.practice_id:
            raise StudyError("the advertised keys name another practice")
        if body.get("certificate") != cert_to_pem(sender).decode("ascii"):
            raise StudyError("the keys must carry the certificate they are signed with")
    elif stage is Stage.MASKED:
        length = vector_length(record.study.parsed())
        if len(unb64(body.get("masked"), "masked")) != 8 * length:
            raise StudyError(f"a masked vector must have {length} numbers")
    elif stage in (Stage.SHARES, Stage.UNMASK):
        shares = body.get("shares")
        if not isinstance(shares, dict):
            raise StudyError(f"a {stage} step carries its shares")
    elif stage is Stage.CONSISTENCY and not isinstance(body.get("survivors_sha256"), str):
        raise StudyError("a consistency step names the digest of the survivors it saw")


def step_document(book: StudyBook, study_id: str, practice_id: str) -> tuple[Stage, bytes]:
    """What a practice needs for the current stage, as canonical JSON."""
    record = book.get(study_id)
    if record.state is not StudyState.AGGREGATING or record.stage is None:
        raise StudyError(f"study {study_id} is {record.state}: there is no step to take")
    stage = record.stage
    if practice_id not in expected(book, record):
        raise StudyError(f"study {study_id}: practice {practice_id} is not in this stage")
    doc: dict[str, object] = {"stage": stage.value}
    if stage is Stage.KEYS:
        doc["members"] = _joined(book, study_id)
    elif stage is Stage.SHARES:
        doc["roster"] = [
            {"message": b64(s.message), "signature": b64(s.signature)}
            for _, s in sorted(book.steps(study_id, Stage.KEYS).items())
        ]
        doc["members"] = _joined(book, study_id)
    elif stage is Stage.MASKED:
        doc["inbox"] = book.inbox(study_id, practice_id)
    elif stage is Stage.CONSISTENCY:
        doc["survivors"] = book.senders(study_id, Stage.MASKED)
    else:
        survivors = book.senders(study_id, Stage.MASKED)
        digest = survivors_digest(survivors)
        doc["survivors"] = survivors
        doc["signatures"] = [
            {"message": b64(s.message), "signature": b64(s.signature)}
            for _, s in sorted(book.steps(study_id, Stage.CONSISTENCY).items())
            if s.step.body.get("survivors_sha256") == digest
        ]
    return stage, canonical_json(doc)


def advance(book: StudyBook, study_id: str, now: dt.datetime, step_seconds: float) -> StudyRecord:
    """Move the study to its next stage when this one is complete or its time is up."""
    record = book.get(study_id)
    if record.state is not StudyState.AGGREGATING or record.stage is None:
        return record
    waiting = expected(book, record)
    arrived = set(book.senders(study_id, record.stage))
    started = record.stage_started_at or now
    complete = set(waiting) <= set(arrived)
    if not complete and (now - started).total_seconds() < step_seconds:
        return record
    need = threshold(len(_joined(book, study_id)), record.study.min_practices)
    here = [p for p in waiting if p in arrived]
    if len(here) < need:
        book.set_state(
            study_id,
            StudyState.FAILED,
            now,
            detail=f"only {len(here)} practices completed the {record.stage} stage; "
            f"{need} are needed",
            expect=(StudyState.AGGREGATING, record.stage),
        )
        log.warning("event=study_failed study=%s stage=%s", study_id, record.stage)
        return book.get(study_id)
    if record.stage is Stage.UNMASK:
        _publish(book, record, need, now)
        return book.get(study_id)
    following = STAGES[STAGES.index(record.stage) + 1]
    book.set_state(
        study_id,
        StudyState.AGGREGATING,
        now,
        following,
        expect=(StudyState.AGGREGATING, record.stage),
    )
    return advance(book, study_id, now, step_seconds)


def advance_all(book: StudyBook, now: dt.datetime, step_seconds: float) -> None:
    """Move on every aggregating study whose stage is complete or out of time."""
    for study_id in book.in_state(StudyState.AGGREGATING):
        advance(book, study_id, now, step_seconds)


def _publish(book: StudyBook, record: StudyRecord, need: int, now: dt.datetime) -> None:
    study = record.study
    definitions = study.parsed()
    keys = book.steps(study.study_id, Stage.KEYS)  # the roster every member was shown
    roster = [PublicKeys.from_bytes(unb64(k.step.body["keys"], "keys")) for k in keys.values()]
    aggregator = Aggregator(study.study_id, need, roster, vector_length(definitions))
    masked = book.steps(study.study_id, Stage.MASKED)
    try:
        for practice_id, signed in sorted(masked.items()):
            aggregator.add_masked(practice_id, unb64(signed.step.body["masked"], "masked"))
        for practice_id, signed in sorted(book.steps(study.study_id, Stage.UNMASK).items()):
            shares = {p: unb64(s, "share") for p, s in signed.step.body["shares"].items()}
            aggregator.add_unmasking(practice_id, shares)
        pooled = aggregator.result()
    except (SecAggError, StudyError) as exc:
        book.set_state(
            study.study_id,
            StudyState.FAILED,
            now,
            detail=f"the sum could not be recovered: {exc}",
            expect=(StudyState.AGGREGATING, Stage.UNMASK),
        )
        return
    contributors = len(masked)
    if contributors < study.min_practices:
        book.set_state(
            study.study_id,
            StudyState.FAILED,
            now,
            detail=f"{contributors} practices are in the sum; the study needs "
            f"{study.min_practices}",
            expect=(StudyState.AGGREGATING, Stage.UNMASK),
        )
        return
    results = from_vector(definitions, pooled)
    released = release_with_noise(results, pooled_policy(study, book.network_policy))
    book.publish(study.study_id, encode_rows(to_rows(released)), contributors, now)
    log.info("event=study_published study=%s practices=%d", study.study_id, contributors)


def pooled_policy(study: Study, network: DisclosurePolicy) -> DisclosurePolicy:
    """The network's policy for the pooled counts, with noise when the study has a budget.

    A budget of rho over k parts buys discrete Gaussian noise of scale sqrt(k / (2 rho))
    on every pooled count: the study's whole budget, spent once, on its one publication.
    A definition is one part; a mean counts twice (its sum and its count), and so does a
    definition marked ``standardise``, whose vector carries every patient a second time,
    in their sex and age band.
    """
    if study.budget_rho <= 0:
        return network
    parts = sum(
        (2 if d.kind == "mean" else 1) * (2 if d.standardise is not None else 1)
        for d in study.parsed()
    )
    scale = math.sqrt(parts / (2 * study.budget_rho))
    return replace(
        network,
        noise=Noise.DISCRETE_GAUSSIAN,
        noise_scale=max(scale, network.noise_scale or 0.0),
    )


def reference_rates(
    book: StudyBook, study_id: str, definitions: Sequence[DefinitionDocument]
) -> Standardisation:
    """The pooled band counts of a published study, for the round definitions to standardise.

    Each definition marked ``standardise`` must be one the study asked, byte for byte
    (the same content hash): rates of another question would not fit it. The counts are
    the study's published rows (sums over its practices, after disclosure control).
    """
    from fedpeer.definitions import SEX_AGE_BANDS, deserialize

    found = book.results(study_id)
    if found is None:
        state = book.get(study_id).state
        raise StudyError(f"study {study_id} has no published results (it is {state})")
    rows, practices, _published = found
    study = book.get(study_id).study
    asked = {d.content_hash: d.id for d in study.definitions}
    wanted = [d for d in definitions if deserialize(d.body).standardise is not None]
    if not wanted:
        raise StudyError("none of the round's definitions is marked standardise")
    released = decode_rows(rows)
    rates = []
    for doc in wanted:
        if doc.content_hash not in asked:
            raise StudyError(
                f"study {study_id} did not ask {doc.id} as the round asks it "
                "(no definition with the same content hash)"
            )
        name = asked[doc.content_hash]
        cells = {r.category: r for r in released if r.indicator == name and r.category}
        bands = tuple(
            (b, cells[b].numerator, cells[b].denominator) if b in cells else (b, None, None)
            for b in SEX_AGE_BANDS
        )
        rates.append(ReferenceRates(doc.content_hash, doc.id, bands))
    return Standardisation(study_id, study.as_of, practices, tuple(rates))
