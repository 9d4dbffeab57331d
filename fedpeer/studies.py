"""Studies: an analyst's questions, answered only as sums over practices (issue 8).

Both sides read the same documents from here, so that neither re-derives what the other
already said:

- ``Study``: what a study asks (definitions in the indicator language), of which date,
  for whom (its owner), from how many practices at least, as the coordinator signs it.
- ``Step``: one message of a practice's in a study (join, keys, shares, masked input,
  consistency, unmasking shares, withdraw), signed with the practice's key.
- The vector layout: each definition's raw counts as integers (``to_vector``), and the
  pooled counts back as results (``from_vector``), so the sum of the practices' vectors
  is the vector of the pooled results.
- ``threshold``: how many practices must take part in unmasking, one rule for both.

The protocol itself is ``fedpeer.secagg`` (Bonawitz et al., CCS 2017); the stages below
are its rounds, driven by the coordinator and checked by every agent.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import functools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from fedpeer.canonical import canonical_json, sha256_hex
from fedpeer.collection import DefinitionDocument
from fedpeer.errors import FedpeerError
from fedpeer.measures import Breakdown, Count, IndicatorResult, Kind, Mean, Proportion, Rate

if TYPE_CHECKING:  # parsed only where a study's questions are read (not while waiting)
    from fedpeer.definitions import IndicatorDefinition

STUDY_FORMAT = "fedpeer.study/1"
STEP_FORMAT = "fedpeer.study-step/1"
MEAN_SCALE = 1000  # a mean's sum travels in thousandths of its unit


class StudyError(FedpeerError):
    """A study cannot be created, joined or advanced as asked; the message says why."""


class StudyState(StrEnum):
    """Where a study stands."""

    DRAFT = "draft"  # created; practices do not see it yet
    OPEN = "open"  # practices may join or withdraw
    AGGREGATING = "aggregating"  # closed to joining: the secure aggregation is running
    PUBLISHED = "published"  # the pooled results are out
    FAILED = "failed"  # too few practices at some stage: nothing is published


class Stage(StrEnum):
    """The rounds of the secure aggregation (the paper's rounds 0 to 4)."""

    KEYS = "keys"  # each member advertises two X25519 public keys, signed
    SHARES = "shares"  # each sends Shamir shares of its secrets, encrypted to each other
    MASKED = "masked"  # each sends its masked vector
    CONSISTENCY = "consistency"  # each signs the list of practices whose vectors arrived
    UNMASK = "unmask"  # each reveals the shares that remove the survivors' masks only


class Membership(StrEnum):
    """A practice's part in a study."""

    JOINED = "joined"
    WITHDRAWN = "withdrawn"
    DECLINED = "declined"


# The step a practice sends to become each part of an open study.
STEP_FOR = {
    Membership.JOINED: "join",
    Membership.DECLINED: "decline",
    Membership.WITHDRAWN: "withdraw",
}
MEMBERSHIP_OF = {step: membership for membership, step in STEP_FOR.items()}


def threshold(members: int, min_practices: int) -> int:
    """Practices needed to unmask: more than half the members, and at least the minimum.

    More than half, so that no two disjoint groups can each reach it: a coordinator that
    tells some practices one story and others another cannot collect both kinds of share.
    """
    return max(members // 2 + 1, min_practices)


def survivors_digest(survivors: Sequence[str]) -> str:
    """What a practice signs in the consistency stage: the SHA-256 of the sorted list.

    A digest rather than the list, so that the signatures every practice checks before
    unmasking are a few bytes each, not a list of every practice each.
    """
    return sha256_hex(canonical_json(sorted(survivors)))


def b64(data: bytes) -> str:
    """Bytes as text inside a canonical document."""
    return base64.b64encode(data).decode("ascii")


def unb64(text: Any, what: str) -> bytes:
    """Bytes back from ``b64``; StudyError naming ``what`` when they are not."""
    if not isinstance(text, str):
        raise StudyError(f"{what}: expected base64 text")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise StudyError(f"{what}: not valid base64") from None


def _document(data: bytes, kind: str) -> dict[str, Any]:
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise StudyError(f"not a {kind} document") from None
    if not isinstance(doc, dict) or doc.get("format") != kind:
        raise StudyError(f"not a {kind} document")
    if canonical_json(doc) != data:
        raise StudyError(f"a {kind} document must be in canonical form")
    return doc


@functools.lru_cache(maxsize=64)
def _parsed(documents: tuple[DefinitionDocument, ...]) -> tuple[IndicatorDefinition, ...]:
    from fedpeer.definitions import deserialize

    return tuple(deserialize(d.body) for d in documents)


@dataclass(frozen=True)
class Study:
    """A study as its owner asked for it; the coordinator signs ``to_bytes``."""

    study_id: str
    owner: str
    title: str
    purpose: str
    as_of: dt.date
    min_practices: int
    definitions: tuple[DefinitionDocument, ...]
    budget_rho: float = 0.0  # privacy budget for noise on the pooled counts; 0 for none
    created_at: str = ""

    def __post_init__(self) -> None:
        for name in ("study_id", "owner", "title", "purpose"):
            if not str(getattr(self, name)).strip():
                raise StudyError(f"a study needs a {name.replace('_', ' ')}")
        if not isinstance(self.min_practices, int) or self.min_practices < 3:
            raise StudyError("a study's minimum number of practices must be at least 3")
        if not self.definitions:
            raise StudyError("a study asks at least one question")
        ids = [d.id for d in self.definitions]
        if len(set(ids)) != len(ids):
            raise StudyError("a study names each definition once")
        if self.budget_rho < 0:
            raise StudyError("a study's privacy budget cannot be negative")

    def parsed(self) -> list[IndicatorDefinition]:
        """The definitions, parsed (DefinitionError names a bad one)."""
        return list(_parsed(self.definitions))

    def to_bytes(self) -> bytes:
        """The canonical document the coordinator signs and every agent verifies."""
        return canonical_json(
            {
                "format": STUDY_FORMAT,
                "study_id": self.study_id,
                "owner": self.owner,
                "title": self.title,
                "purpose": self.purpose,
                "as_of": self.as_of.isoformat(),
                "min_practices": self.min_practices,
                "budget_rho": self.budget_rho,
                "created_at": self.created_at,
                "definitions": [
                    {"id": d.id, "content_hash": d.content_hash, "body": b64(d.body)}
                    for d in self.definitions
                ],
            }
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> Study:
        """A study back from its document; StudyError or DefinitionError when it is not one."""
        doc = _document(data, STUDY_FORMAT)
        try:
            return cls(
                study_id=doc["study_id"],
                owner=doc["owner"],
                title=doc["title"],
                purpose=doc["purpose"],
                as_of=dt.date.fromisoformat(doc["as_of"]),
                min_practices=doc["min_practices"],
                budget_rho=float(doc["budget_rho"]),
                created_at=doc["created_at"],
                definitions=tuple(
                    DefinitionDocument(d["id"], d["content_hash"], unb64(d["body"], d["id"]))
                    for d in doc["definitions"]
                ),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise StudyError(f"a study document is incomplete or malformed ({exc})") from None

    @property
    def digest(self) -> str:
        """The SHA-256 of the study's document."""
        return sha256_hex(self.to_bytes())


@dataclass(frozen=True)
class Step:
    """One practice's message in one stage of a study; the practice signs ``to_bytes``."""

    study_id: str
    practice_id: str
    step: str  # "join", "withdraw", "decline", or a Stage
    body: Mapping[str, Any] = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        """The canonical bytes the practice signs."""
        return canonical_json(
            {
                "format": STEP_FORMAT,
                "study_id": self.study_id,
                "practice_id": self.practice_id,
                "step": self.step,
                "body": dict(self.body),
            }
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> Step:
        """A step back from its bytes; StudyError when it is not one."""
        doc = _document(data, STEP_FORMAT)
        try:
            body = doc["body"]
            if not isinstance(body, dict):
                raise TypeError("body is not an object")
            return cls(str(doc["study_id"]), str(doc["practice_id"]), str(doc["step"]), body)
        except (KeyError, TypeError) as exc:
            raise StudyError(f"a study step is malformed ({exc})") from None


# -- the vector: a practice's raw counts, summed across practices ----------------------


def atoms(definition: IndicatorDefinition) -> list[str]:
    """The names of a definition's integer atoms in the vector, in order.

    A definition to be standardised (``standardise = "age_sex"``) also carries its
    numerator and denominator in every sex and age band, after its own two: the pooled
    sums are the reference rates of STATS.md S17 (``fedpeer.standardise``).
    """
    i = definition.id
    if definition.kind in (Kind.PROPORTION, Kind.RATE):
        bands = [f"{i}:{b}:{part}" for b in _bands(definition) for part in _PARTS]
        return [f"{i}:numerator", f"{i}:denominator", *bands]
    if definition.kind is Kind.COUNT:
        return [f"{i}:count"]
    if definition.kind is Kind.MEAN:
        return [f"{i}:count", f"{i}:sum_thousandths"]
    assert definition.breakdown is not None
    return [f"{i}:cell:{c}" for c in _categories(definition)] + [f"{i}:total"]


_PARTS = ("numerator", "denominator")


def _bands(definition: IndicatorDefinition) -> tuple[str, ...]:
    """The sex and age bands a definition's vector is broken down by: none unless standardised."""
    from fedpeer.definitions import SEX_AGE_BANDS

    return SEX_AGE_BANDS if definition.standardise is not None else ()


def needs_strata(definitions: Sequence[IndicatorDefinition]) -> bool:
    """Whether a practice must evaluate these definitions by sex and age band too."""
    return any(_bands(d) for d in definitions)


def _categories(definition: IndicatorDefinition) -> tuple[str, ...]:
    from fedpeer.definitions import IMD_CATEGORIES, SEX_AGE_BANDS, BreakdownBy

    assert definition.breakdown is not None
    by = definition.breakdown.by
    if by is BreakdownBy.SEX_AGE_BAND:
        return SEX_AGE_BANDS
    if by is BreakdownBy.IMD_DECILE:
        return IMD_CATEGORIES
    return definition.breakdown.categories


def vector_length(definitions: Sequence[IndicatorDefinition]) -> int:
    """How many integers a practice contributes."""
    return sum(len(atoms(d)) for d in definitions)


def to_vector(
    definitions: Sequence[IndicatorDefinition], results: Sequence[IndicatorResult]
) -> list[int]:
    """A practice's raw results as the integers it contributes (never sent unmasked)."""
    by_id = {(r.indicator, r.stratum): r.measure for r in results}
    out: list[int] = []
    for d in definitions:
        m = by_id[(d.id, "")]
        if isinstance(m, Proportion | Rate):
            out += [_int(m.numerator), _int(m.denominator)]
            for band in _bands(d):
                s = by_id[(d.id, band)]
                assert isinstance(s, Proportion | Rate)
                out += [_int(s.numerator), _int(s.denominator)]
        elif isinstance(m, Count):
            out.append(_int(m.value))
        elif isinstance(m, Mean):
            count = _int(m.count)
            total = Fraction(m.mean or 0) * count * MEAN_SCALE
            out += [count, round(total)]
        else:
            assert isinstance(m, Breakdown)
            out += [_int(c) for _, c in m.cells] + [_int(m.total)]
    return out


def _int(value: int | None) -> int:
    if value is None or value < 0:
        raise StudyError("a raw result must have every count")
    return value


def from_vector(
    definitions: Sequence[IndicatorDefinition], vector: Sequence[int]
) -> list[IndicatorResult]:
    """Pooled results from the summed vector, to go through disclosure control."""
    if len(vector) != vector_length(definitions):
        raise StudyError("the pooled vector does not fit the study's definitions")
    out: list[IndicatorResult] = []
    k = 0
    for d in definitions:
        n = len(atoms(d))
        part = [int(v) for v in vector[k : k + n]]
        k += n
        if d.kind in (Kind.PROPORTION, Kind.RATE):
            pairs = [(part[0], part[1], "")] + [
                (part[2 + 2 * j], part[3 + 2 * j], band) for j, band in enumerate(_bands(d))
            ]
            for num, den, stratum in pairs:
                ratio: Any = (
                    Proportion(num, den) if d.kind is Kind.PROPORTION else Rate(num, den, d.per)
                )
                out.append(IndicatorResult(d.id, ratio, stratum))
            continue
        measure: Any
        if d.kind is Kind.COUNT:
            measure = Count(part[0])
        elif d.kind is Kind.MEAN:
            count, total = part
            measure = Mean(count, total / MEAN_SCALE / count if count else None)
        else:
            cells = tuple(zip(_categories(d), part[:-1], strict=True))
            measure = Breakdown(cells, part[-1])
        out.append(IndicatorResult(d.id, measure))
    return out
