"""The round lifecycle, as plain functions over the store: start, submit, refuse, close.

The coordinator signs each round's manifest and each receipt with its signing key
(``fedpeer.identity.SigningIdentity``), and each carries the signer's certificate. Every
round carries the network's disclosure policy; no round sets its own. A release is
verified and checked (``coordinator.release_check``) before it is stored, and its
receipt names the SHA-256 of exactly the bytes the practice signed.

A round may carry a signed deadline and a quorum (issue 9): past the deadline no answer
is taken (``DeadlinePassed``), and the round clock (``coordinator.round_clock``) moves it
to closing, then closed. Its states and their order are ``coordinator.round_states``.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Iterable
from dataclasses import replace

from cryptography import x509

from coordinator.ca import CaKeyOffline, CoordinatorKeys
from coordinator.comparison_store import record_comparison
from coordinator.plausibility import check_plausible
from coordinator.release_check import check_document, verified_document
from coordinator.round_states import RoundState
from coordinator.store import PendingSubmission, RoundStatus, Store
from fedpeer.collection import (
    DeadlinePassed,
    DefinitionDocument,
    Receipt,
    ReleaseDocument,
    Round,
    RoundClosed,
    SignedRelease,
)
from fedpeer.dates import reference_date_problem
from fedpeer.definitions import load_round_set, serialize
from fedpeer.errors import RoundError
from fedpeer.identity import CertificateAuthority, SigningIdentity
from fedpeer.policy import DisclosurePolicy
from fedpeer.signing import sign
from fedpeer.standardise import Standardisation, standardisation_of

# The check of a verified release against its round (``release_check.check_document``);
# a test may pass None to store what an agent sent without it.
DocumentCheck = Callable[[ReleaseDocument, Round], None]


def isoformat_z(moment: dt.datetime) -> str:
    """An instant as ISO 8601 UTC with a Z, microseconds kept."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def utc_now() -> dt.datetime:
    """The current instant, in UTC."""
    return dt.datetime.now(dt.UTC)


_now = utc_now


def standard_definitions() -> list[DefinitionDocument]:
    """The standard round's definitions (twelve indicators and the profile) as documents."""
    return [DefinitionDocument.of(d.id, serialize(d)) for d in load_round_set()]


def start_round(
    store: Store,
    signer: SigningIdentity,
    as_of: dt.date,
    definitions: Iterable[DefinitionDocument] = (),
    policy: DisclosurePolicy | None = None,
    deadline: dt.datetime | None = None,
    quorum: int = 0,
    now: dt.datetime | None = None,
    standardisation: Standardisation | None = None,
) -> Round:
    """Open and sign a round under the network's ``policy`` (the defaults when None).

    With ``standardisation`` (``coordinator.studies.reference_rates``) the round carries
    the reference rates, signed with it, for its definitions marked ``standardise``.
    """
    now = now or _now()
    problem = reference_date_problem(as_of, now.date())
    if problem is not None:
        raise RoundError(problem)
    if deadline is not None and deadline <= now:
        raise RoundError("a round's deadline must be in the future")
    if quorum < 0:
        raise RoundError("a round's quorum is a number of practices, 0 or more")
    unsigned = Round(
        round_id=f"{as_of.isoformat()}-{uuid.uuid4().hex[:8]}",
        as_of=as_of,
        policy=policy or DisclosurePolicy(),
        definitions=tuple(definitions),
        created_at=isoformat_z(now),
        deadline="" if deadline is None else isoformat_z(deadline),
        quorum=quorum,
        reference_rates=b"" if standardisation is None else standardisation.to_bytes(),
    )
    ids = [d.id for d in unsigned.definitions]
    if len(set(ids)) != len(ids):
        raise RoundError("a round names each indicator definition once")
    standardisation_of(unsigned)  # what every agent will check: they fit the definitions
    signed = Round(**{**unsigned.__dict__, **_signed(signer, unsigned.manifest())})
    store.add_round(signed, now)
    return signed


def _check_deadline(round_: Round, now: dt.datetime) -> None:
    deadline = round_.deadline_at
    if deadline is not None and now >= deadline:
        raise DeadlinePassed(
            f"round {round_.round_id} closed to answers at its deadline, {round_.deadline}"
        )


def _signed(signer: SigningIdentity, document: object) -> dict[str, bytes]:
    return {"signature": sign(signer.key, document), "signer_certificate": signer.certificate_der}


def ca_for_old_agents(ca: CoordinatorKeys) -> CertificateAuthority:
    """The CA, to sign for an agent before 0.3.0; CaKeyOffline telling it to upgrade.

    Such an agent checks rounds, receipts and studies against the CA key it pinned, so
    it is served while the CA key is online and told to upgrade while it is not.
    """
    if ca.authority is None:
        raise CaKeyOffline(
            "this agent checks the coordinator's signatures against the CA key, which this"
            " coordinator keeps offline: upgrade the agent (fedpeer 0.3.0 or newer)"
        )
    return ca.authority


def signed_by_ca(item: Round | Receipt, authority: CertificateAuthority) -> Round | Receipt:
    """``item`` signed by the CA key itself, with no signer certificate (agents before 0.3.0)."""
    document = item.manifest() if isinstance(item, Round) else item.document()
    return replace(item, signature=sign(authority.key, document), signer_certificate=b"")


def prepare_release(
    signer: SigningIdentity,
    practice_id: str,
    sender: x509.Certificate,
    round_: Round,
    signed: SignedRelease,
    check: DocumentCheck | None = check_document,
) -> PendingSubmission:
    """Verify and check a signed release for ``round_`` and sign its receipt: CPU only."""
    _check_deadline(round_, _now())
    document = verified_document(signed, sender, practice_id, round_)
    check_plausible(document, round_)  # always: one absurd release must not move a round
    if check is not None:
        check(document, round_)  # raises; nothing is stored for a release that fails it
    now = _now()
    unsigned = Receipt(
        submission_id=uuid.uuid4().hex,
        round_id=round_.round_id,
        practice_id=practice_id,
        received_at=isoformat_z(now),
        content_sha256=signed.digest,
    )
    receipt = Receipt(**{**unsigned.__dict__, **_signed(signer, unsigned.document())})
    return PendingSubmission(receipt, signed, document, now)


def submit(
    store: Store,
    signer: SigningIdentity,
    practice_id: str,
    sender: x509.Certificate,
    round_id: str,
    signed: SignedRelease,
    check: DocumentCheck | None = check_document,
) -> Receipt:
    """Verify, check and store a signed release; the signed receipt of record, after the commit."""
    pending = prepare_release(signer, practice_id, sender, store.round(round_id), signed, check)
    return store.record_submission(
        pending.receipt, pending.signed, pending.document, pending.received_at
    )


def refuse(store: Store, practice_id: str, round_id: str, reason: str) -> dt.datetime:
    """Record a practice's refusal of a round; when it was first received."""
    _check_deadline(store.round(round_id), _now())
    return store.record_refusal(round_id, practice_id, reason.strip()[:2000], _now())


def awaiting_approval(store: Store, practice_id: str, round_id: str) -> None:
    """Record that a practice's release for a round waits for the practice's approval."""
    _check_deadline(store.round(round_id), _now())
    store.record_wait(round_id, practice_id, _now())


def close_round(store: Store, round_id: str) -> RoundStatus:
    """Close a round to further submissions; its final status."""
    store.close_round(round_id, _now())
    record_comparison(store, round_id)  # stored once, so that reports and trends only read
    return store.round_status(round_id)


def change_round(store: Store, round_id: str, state: RoundState) -> RoundStatus:
    """Publish or cancel a round (``round_states`` says which moves are allowed)."""
    store.set_round_state(round_id, state, _now())
    return store.round_status(round_id)


def pass_deadlines(store: Store, now: dt.datetime) -> list[tuple[str, RoundState]]:
    """Move open rounds past their deadline to closing, and closing rounds to closed."""
    moved = []
    for round_id, state in store.rounds_past_deadline(now):
        new = RoundState.CLOSING if state is RoundState.OPEN else RoundState.CLOSED
        try:
            store.set_round_state(round_id, new, now)
        except RoundClosed:
            continue  # another process moved it first
        if new is RoundState.CLOSED:
            record_comparison(store, round_id)  # as ``close_round`` does
        moved.append((round_id, new))
    return moved


def open_round(store: Store, round_id: str) -> Round:
    """An open round; RoundClosed when it has closed."""
    round_ = store.round(round_id)
    state = store.round_state(round_id)
    if state is not RoundState.OPEN:
        raise RoundClosed(f"round {round_id} is {state}")
    return round_
