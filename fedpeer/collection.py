"""What a collection round exchanges, as domain objects both sides share.

A ``Round`` carries declarative indicator definitions as opaque bytes named by their
hash, a disclosure policy, and the coordinator's signature over its manifest. The agent
answers with a ``Submission`` (released rows) or a ``Refusal``; the coordinator answers a
submission with a signed ``Receipt`` once it is stored. The canonical documents that are
hashed and signed are defined here, once, for both sides.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import asdict, dataclass, field

from fedpeer.dates import is_month_end
from fedpeer.errors import DefinitionError, RoundError
from fedpeer.policy import DisclosurePolicy
from fedpeer.release import ResultRow
from fedpeer.signing import canonical_json


def sha256_hex(data: bytes) -> str:
    """The SHA-256 of bytes, lower-case hex."""
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class DefinitionDocument:
    """One indicator definition, opaque bytes here, named by the SHA-256 of its body."""

    id: str
    content_hash: str
    body: bytes

    def __post_init__(self) -> None:
        if sha256_hex(self.body) != self.content_hash:
            raise DefinitionError(f"definition {self.id}: content hash does not match its body")

    @classmethod
    def of(cls, id: str, body: bytes) -> DefinitionDocument:
        """A document whose hash is computed from its body."""
        return cls(id, sha256_hex(body), body)


@dataclass(frozen=True)
class Round:
    """A collection round: what to compute, for which date, under which policy."""

    round_id: str
    as_of: dt.date
    policy: DisclosurePolicy
    definitions: tuple[DefinitionDocument, ...] = ()
    standard: bool = True
    created_at: str = ""
    signature: bytes = b""

    def __post_init__(self) -> None:
        if self.standard and not is_month_end(self.as_of):
            raise RoundError(
                f"a standard round's reference date must be a month end, not {self.as_of}"
            )

    def manifest(self) -> dict[str, object]:
        """The canonical document the coordinator signs."""
        return {
            "kind": "fedpeer.round/1",
            "round_id": self.round_id,
            "as_of": self.as_of.isoformat(),
            "standard": self.standard,
            "created_at": self.created_at,
            "policy": asdict(self.policy),
            "policy_digest": self.policy.digest(),
            "definitions": [{"id": d.id, "content_hash": d.content_hash} for d in self.definitions],
        }

    @property
    def definition_hashes(self) -> tuple[str, ...]:
        """The content hashes of the round's definitions, in order."""
        return tuple(d.content_hash for d in self.definitions)


@dataclass(frozen=True)
class Refusal:
    """The practice declines a round; the reason is shown to the coordinator."""

    reason: str


@dataclass(frozen=True)
class Release:
    """Released rows with the policy actually applied (at least as strict as the round's)."""

    rows: tuple[ResultRow, ...]
    policy: DisclosurePolicy


@dataclass(frozen=True)
class Submission:
    """Released rows for one round, as sent; its digest is the idempotency key."""

    round_id: str
    definition_hashes: tuple[str, ...]
    policy_digest: str
    rows: tuple[ResultRow, ...] = field(default=())

    def document(self) -> dict[str, object]:
        """The canonical content that is hashed."""
        return {
            "kind": "fedpeer.submission/1",
            "round_id": self.round_id,
            "definition_hashes": list(self.definition_hashes),
            "policy_digest": self.policy_digest,
            "rows": [asdict(r) for r in self.rows],
        }

    def digest(self) -> str:
        """The SHA-256 of the canonical content."""
        return sha256_hex(canonical_json(self.document()))


@dataclass(frozen=True)
class Receipt:
    """The coordinator's signed acknowledgement that a submission is durably stored."""

    submission_id: str
    round_id: str
    practice_id: str
    received_at: str
    content_sha256: str
    signature: bytes = b""

    def document(self) -> dict[str, object]:
        """The canonical document the coordinator signs."""
        return {
            "kind": "fedpeer.receipt/1",
            "submission_id": self.submission_id,
            "round_id": self.round_id,
            "practice_id": self.practice_id,
            "received_at": self.received_at,
            "content_sha256": self.content_sha256,
        }


class UnknownRound(RoundError):
    """No round has this id."""


class RoundClosed(RoundError):
    """The round is closed and takes no more submissions."""


class SubmissionConflict(RoundError):
    """The practice already submitted different content for this round."""
