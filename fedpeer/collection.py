"""What a collection round exchanges, as domain objects both sides share.

A ``Round`` carries declarative indicator definitions as opaque bytes named by their
hash, the network's disclosure policy, and the coordinator's signature over its
manifest. The agent answers with a ``ReleaseDocument``, signed with the practice's own
key (``SignedRelease``), or a ``Refusal``; the coordinator answers a release with a
signed ``Receipt`` once it is stored.

The release document is the one form of an answer: its canonical bytes are what the
practice previews, what its key signs, what is sent, what the coordinator verifies and
stores, what the receipt names by their SHA-256, and what the audit log records.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass, fields

from fedpeer.canonical import canonical_json, round_float, sha256_hex
from fedpeer.errors import DefinitionError, PolicyError, RoundError
from fedpeer.policy import DisclosurePolicy
from fedpeer.release import ResultRow

RELEASE_FORMAT = "fedpeer.release/2"
# What the coordinator hears of any refusal that depends on the practice's data: the
# same words whatever the cause, so a yes/no cannot be read from them.
DECLINED = "declined under the practice's disclosure rules"


def parse_instant(text: str) -> dt.datetime:
    """An ISO 8601 instant with its zone (a Z or an offset); RoundError when it is not one."""
    try:
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise RoundError("not an ISO 8601 instant (e.g. 2026-12-31T17:00:00Z)") from None
    if moment.tzinfo is None:
        raise RoundError("an instant needs its time zone (e.g. a Z for UTC)")
    return moment


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
    """A collection round: what to compute, for which date, under the network's policy."""

    round_id: str
    as_of: dt.date
    policy: DisclosurePolicy
    definitions: tuple[DefinitionDocument, ...] = ()
    created_at: str = ""
    signature: bytes = b""
    # When answers stop being taken (ISO 8601 UTC with a Z; "" for none), and how many
    # practices must submit for the round to count (0 for no quorum).
    deadline: str = ""
    quorum: int = 0
    signer_certificate: bytes = b""  # DER; who made ``signature`` (empty: the CA key)
    # The reference rates for indirect standardisation (``fedpeer.standardise``), as
    # canonical bytes; empty for a round that is not standardised.
    reference_rates: bytes = b""

    def manifest(self) -> dict[str, object]:
        """The canonical document the coordinator signs."""
        manifest: dict[str, object] = {
            "kind": "fedpeer.round/2",
            "round_id": self.round_id,
            "as_of": self.as_of.isoformat(),
            "created_at": self.created_at,
            "policy": self.policy.to_data(),
            "definitions": [{"id": d.id, "content_hash": d.content_hash} for d in self.definitions],
        }
        # Only when set, so a round without them signs exactly the bytes it always did.
        if self.deadline:
            manifest["deadline"] = self.deadline
        if self.quorum:
            manifest["quorum"] = self.quorum
        if self.reference_rates:
            manifest["reference_rates"] = sha256_hex(self.reference_rates)
        return manifest

    @property
    def deadline_at(self) -> dt.datetime | None:
        """The deadline as an aware instant, or None; RoundError when it is not one."""
        return parse_instant(self.deadline) if self.deadline else None

    @property
    def definition_hashes(self) -> tuple[str, ...]:
        """The content hashes of the round's definitions, in order."""
        return tuple(d.content_hash for d in self.definitions)


@dataclass(frozen=True)
class Refusal:
    """The practice declines a round; ``reason`` is what the coordinator hears."""

    reason: str


# What each field of a row may hold on the wire (a bool is not taken for an int).
_TYPE_CHECKS: dict[str, Callable[[object], bool]] = {
    "str": lambda value: isinstance(value, str),
    "bool": lambda value: isinstance(value, bool),
    "int | None": lambda value: (
        value is None or (isinstance(value, int) and not isinstance(value, bool))
    ),
    "float | None": lambda value: value is None or isinstance(value, float),
}
_ROW_CHECKS = {f.name: _TYPE_CHECKS[str(f.type)] for f in fields(ResultRow)}


def _row_data(row: ResultRow) -> dict[str, object]:
    # Field by field, not ``dataclasses.asdict``: a row is flat, and asdict's deep copy
    # was most of the cost of a release's canonical bytes (the coordinator makes them
    # again for every release it receives, to check that it came in canonical form).
    data = {name: getattr(row, name) for name in _ROW_CHECKS}
    data["mean"], data["value"] = round_float(row.mean), round_float(row.value)
    return data


def _row_from_data(data: object) -> ResultRow:
    if not isinstance(data, dict) or data.keys() != _ROW_CHECKS.keys():
        raise RoundError("a release row does not have the row's fields")
    for name, ok in _ROW_CHECKS.items():
        if not ok(data[name]):
            raise RoundError(f"a release row's {name} is not of its type")
    return ResultRow(**data)


def encode_rows(rows: tuple[ResultRow, ...] | list[ResultRow]) -> bytes:
    """Rows as canonical bytes, in the order given (the agent's ledger keeps answers so)."""
    return canonical_json([_row_data(r) for r in rows])


def decode_rows(data: bytes) -> tuple[ResultRow, ...]:
    """Rows back from ``encode_rows``."""
    return tuple(_row_from_data(r) for r in json.loads(data))


@dataclass(frozen=True)
class Answer:
    """One question's released rows, and the policy they were released under."""

    definition_hash: str
    indicator: str
    policy: DisclosurePolicy
    rows: tuple[ResultRow, ...]

    def to_data(self) -> dict[str, object]:
        """The answer as it stands in a release document."""
        ordered = sorted(self.rows, key=lambda r: (r.indicator, r.category))
        return {
            "definition": self.definition_hash,
            "indicator": self.indicator,
            "policy": self.policy.to_data(),
            "rows": [_row_data(r) for r in ordered],
        }


@dataclass(frozen=True)
class ReleaseDocument:
    """Everything one practice releases for one round, in one canonical document."""

    practice_id: str
    round_id: str
    as_of: dt.date
    answers: tuple[Answer, ...]

    def to_bytes(self) -> bytes:
        """The canonical bytes: previewed, signed, sent, stored, receipted and audited."""
        answers = sorted(self.answers, key=lambda a: a.definition_hash)
        return canonical_json(
            {
                "format": RELEASE_FORMAT,
                "practice_id": self.practice_id,
                "round_id": self.round_id,
                "as_of": self.as_of.isoformat(),
                "answers": [a.to_data() for a in answers],
            }
        )

    @property
    def digest(self) -> str:
        """The SHA-256 of the canonical bytes: the one name of this release everywhere."""
        return sha256_hex(self.to_bytes())

    @property
    def rows(self) -> list[ResultRow]:
        """Every released row, answer by answer."""
        return [row for a in self.answers for row in a.rows]

    @classmethod
    def from_bytes(cls, data: bytes) -> ReleaseDocument:
        """Parse and validate canonical bytes; RoundError when they are not a release."""
        try:
            raw = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            raise RoundError("the release is not canonical JSON") from None
        keys = {"format", "practice_id", "round_id", "as_of", "answers"}
        if not isinstance(raw, dict) or set(raw) != keys or raw["format"] != RELEASE_FORMAT:
            raise RoundError(f"the release is not a {RELEASE_FORMAT} document")
        if not all(isinstance(raw[k], str) for k in ("practice_id", "round_id", "as_of")):
            raise RoundError("the release's practice, round or date is not text")
        try:
            as_of = dt.date.fromisoformat(raw["as_of"])
        except ValueError:
            raise RoundError("the release's reference date is not an ISO date") from None
        if not isinstance(raw["answers"], list):
            raise RoundError("the release's answers are not a list")
        answers = []
        for item in raw["answers"]:
            akeys = {"definition", "indicator", "policy", "rows"}
            if not isinstance(item, dict) or set(item) != akeys:
                raise RoundError("a release answer does not have the answer's fields")
            if not isinstance(item["rows"], list):
                raise RoundError("a release answer's rows are not a list")
            if not isinstance(item["definition"], str) or not isinstance(item["indicator"], str):
                raise RoundError("a release answer's definition or indicator is not text")
            try:
                policy = DisclosurePolicy.from_data(item["policy"])
            except PolicyError:
                raise RoundError("a release answer's policy is not a disclosure policy") from None
            rows = tuple(_row_from_data(r) for r in item["rows"])
            answers.append(Answer(item["definition"], item["indicator"], policy, rows))
        document = cls(raw["practice_id"], raw["round_id"], as_of, tuple(answers))
        if document.to_bytes() != data:
            raise RoundError("the release is not in canonical form")
        return document


@dataclass(frozen=True)
class SignedRelease:
    """A release document's bytes and the practice's signature over exactly them."""

    document: bytes
    signature: bytes

    @property
    def digest(self) -> str:
        """The SHA-256 of the document's bytes."""
        return sha256_hex(self.document)


@dataclass(frozen=True)
class Receipt:
    """The coordinator's signed acknowledgement that a submission is durably stored."""

    submission_id: str
    round_id: str
    practice_id: str
    received_at: str
    content_sha256: str
    signature: bytes = b""
    signer_certificate: bytes = b""  # DER; who made ``signature`` (empty: the CA key)

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


class DeadlinePassed(RoundClosed):
    """The round's deadline has passed: it takes no more answers."""


class SubmissionConflict(RoundError):
    """The practice already submitted different content for this round."""
