"""The round lifecycle, as plain functions over the store: start, submit, refuse, close.

The coordinator signs each round's manifest and each receipt with its CA key. A
submission must answer the round's exact definitions, and is checked against the round's
disclosure policy before it is stored (the agent applies it too; this is the second
line, per DESIGN.md principle 1).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Iterable, Sequence

from coordinator.store import RoundStatus, Store
from fedpeer.collection import (
    DefinitionDocument,
    Receipt,
    Round,
    RoundClosed,
    Submission,
)
from fedpeer.errors import DisclosureViolation, RoundError
from fedpeer.identity import CertificateAuthority
from fedpeer.policy import DisclosurePolicy
from fedpeer.release import ResultRow
from fedpeer.signing import sign

RowCheck = Callable[[Sequence[ResultRow], DisclosurePolicy], None]


def isoformat_z(moment: dt.datetime) -> str:
    """An instant as ISO 8601 UTC with a Z, microseconds kept."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def start_round(
    store: Store,
    ca: CertificateAuthority,
    as_of: dt.date,
    definitions: Iterable[DefinitionDocument] = (),
    policy: DisclosurePolicy | None = None,
    standard: bool = True,
) -> Round:
    """Open and sign a round; a standard round's reference date must be a month end."""
    now = _now()
    unsigned = Round(
        round_id=f"{as_of.isoformat()}-{uuid.uuid4().hex[:8]}",
        as_of=as_of,
        policy=policy or DisclosurePolicy(),
        definitions=tuple(definitions),
        standard=standard,
        created_at=isoformat_z(now),
    )
    ids = [d.id for d in unsigned.definitions]
    if len(set(ids)) != len(ids):
        raise RoundError("a round names each indicator definition once")
    signed = Round(**{**unsigned.__dict__, "signature": sign(ca.key, unsigned.manifest())})
    store.add_round(signed, now)
    return signed


def default_row_check() -> RowCheck | None:
    """The disclosure module's check of released rows, raising DisclosureViolation."""
    try:
        from fedpeer.disclosure import check_release
    except ImportError:  # pragma: no cover - the disclosure module lands separately
        return None

    def check(rows: Sequence[ResultRow], policy: DisclosurePolicy) -> None:
        violations = check_release(rows, policy)
        if violations:
            shown = "; ".join(str(v) for v in violations[:5])
            more = f" (and {len(violations) - 5} more)" if len(violations) > 5 else ""
            raise DisclosureViolation(f"the submission breaks the round's policy: {shown}{more}")

    return check


def submit(
    store: Store,
    ca: CertificateAuthority,
    practice_id: str,
    submission: Submission,
    check: RowCheck | None = None,
) -> Receipt:
    """Check and store a submission; the signed receipt of record, after the commit."""
    round_ = store.round(submission.round_id)
    if tuple(submission.definition_hashes) != round_.definition_hashes:
        raise RoundError(
            f"round {round_.round_id}: the submission answers other definitions than the round's"
        )
    if check is not None:
        # Raises DisclosureViolation; nothing is stored for a submission that fails it.
        check(submission.rows, round_.policy)
    now = _now()
    unsigned = Receipt(
        submission_id=uuid.uuid4().hex,
        round_id=submission.round_id,
        practice_id=practice_id,
        received_at=isoformat_z(now),
        content_sha256=submission.digest(),
    )
    receipt = Receipt(**{**unsigned.__dict__, "signature": sign(ca.key, unsigned.document())})
    return store.record_submission(receipt, submission, now)


def refuse(store: Store, practice_id: str, round_id: str, reason: str) -> dt.datetime:
    """Record a practice's refusal of a round; when it was first received."""
    return store.record_refusal(round_id, practice_id, reason.strip()[:2000], _now())


def close_round(store: Store, round_id: str) -> RoundStatus:
    """Close a round to further submissions; its final status."""
    store.close_round(round_id, _now())
    return store.round_status(round_id)


def open_round(store: Store, round_id: str) -> Round:
    """An open round; RoundClosed when it has closed."""
    round_ = store.round(round_id)
    if store.round_state(round_id) != "open":
        raise RoundClosed(f"round {round_id} is closed")
    return round_
