"""Indirect age-sex standardisation (STATS.md S17) as a round carries it and agents answer it.

A "reference rates" study (``fedpeer.studies``: a standardised definition's vector carries
its numerator and denominator in every sex and 5-year age band) gives the pooled band
counts, summed over the practices by secure aggregation and released under the network's
disclosure control: only sums over practices. A round started with that study
(``fedpeer-coordinator round start --standardise-with STUDY``) carries them as a
``Standardisation`` document, signed with the round (its SHA-256 is in the manifest).

Each agent then answers, beside the definition itself, one more question per standardised
definition, ``<id>.expected``: its expected count E = sum_k n_k r_k, where n_k is its own
denominator in band k and r_k = pooled numerator_k / pooled denominator_k, computed
exactly (fractions) from its own extract. E is released as a count is, in units of the
largest band rate u (``ReferenceRates.unit``): one patient moves E by r_k <= u, so E / u
moves by at most 1, exactly as a count does, and the count rules (rounding, suppression,
noise) protect it as they protect a count. The coordinator gets E back as the released
count times u; the observed count O is the definition's own released numerator.

A band whose pooled counts were withheld (at most the threshold across every practice),
or that has no one in it, has no rate and adds nothing to E.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from fedpeer.canonical import canonical_json, sha256_hex
from fedpeer.errors import RoundError

if TYPE_CHECKING:
    from fedpeer.collection import DefinitionDocument, Round
    from fedpeer.definitions import IndicatorDefinition

RATES_FORMAT = "fedpeer.reference-rates/1"
EXPECTED_FORMAT = "fedpeer.expected/1"
EXPECTED_SUFFIX = ".expected"


class StandardisationError(RoundError):
    """A round's reference rates are malformed or do not fit its definitions."""


def _bands() -> tuple[str, ...]:
    from fedpeer.definitions import SEX_AGE_BANDS

    return SEX_AGE_BANDS


def expected_indicator(indicator: str) -> str:
    """The name of the row carrying a standardised indicator's expected count."""
    return indicator + EXPECTED_SUFFIX


def standardised_indicator(name: str) -> str | None:
    """The indicator an ``<id>.expected`` row belongs to, or None for any other row."""
    return name[: -len(EXPECTED_SUFFIX)] if name.endswith(EXPECTED_SUFFIX) else None


@dataclass(frozen=True)
class ReferenceRates:
    """One definition's pooled counts by sex and age band (None where withheld)."""

    definition_hash: str
    indicator: str
    bands: tuple[tuple[str, int | None, int | None], ...]  # (band, numerator, denominator)

    def __post_init__(self) -> None:
        where = f"reference rates for {self.indicator}"
        if [b for b, _, _ in self.bands] != list(_bands()):
            raise StandardisationError(f"{where}: not one entry for each sex and age band")
        for band, num, den in self.bands:
            for name, n in (("numerator", num), ("denominator", den)):
                if n is not None and (type(n) is not int or n < 0):
                    raise StandardisationError(f"{where}, {band}: {name} is not a count")
        if not self.rates():
            raise StandardisationError(f"{where}: no band has a rate")

    def rates(self) -> dict[str, Fraction]:
        """r_k = pooled numerator / pooled denominator, for the bands that have one."""
        return {
            band: Fraction(num, den)
            for band, num, den in self.bands
            if num is not None and den  # withheld, or nobody in the band: no rate
        }

    @property
    def unit(self) -> Fraction:
        """The largest band rate: the most one person adds to an expected count."""
        return max(self.rates().values())

    def expected(self, denominators: Mapping[str, int]) -> Fraction:
        """E = sum over bands of n_k r_k, exactly."""
        rates = self.rates()
        return sum((n * rates[b] for b, n in denominators.items() if b in rates), Fraction(0))

    def expected_units(self, denominators: Mapping[str, int]) -> int:
        """E in units of ``unit``, to the nearest whole (halves up): released as a count."""
        units = self.expected(denominators) / self.unit
        return int(units + Fraction(1, 2))  # floor(x + 1/2); x >= 0

    def to_data(self) -> dict[str, Any]:
        """The entry as it stands in the document."""
        return {
            "definition": self.definition_hash,
            "indicator": self.indicator,
            "bands": [[b, n, d] for b, n, d in self.bands],
        }

    @property
    def question_hash(self) -> str:
        """Names the expected-count question in a release, as a content hash names a definition."""
        return sha256_hex(canonical_json({"format": EXPECTED_FORMAT, **self.to_data()}))

    def meaning(self, definition_meaning: str) -> str:
        """What the expected count asks (the ledger's key): the question and these rates."""
        bands = [[b, n, d] for b, n, d in self.bands]
        data = {"format": EXPECTED_FORMAT, "meaning": definition_meaning, "bands": bands}
        return sha256_hex(canonical_json(data))


@dataclass(frozen=True)
class Standardisation:
    """The reference rates a round carries: which study they came from, and for what."""

    study_id: str
    as_of: dt.date
    practices: int  # how many practices the study's sums are over
    rates: tuple[ReferenceRates, ...]

    def __post_init__(self) -> None:
        if not self.rates:
            raise StandardisationError("reference rates for no definition")
        hashes = [r.definition_hash for r in self.rates]
        if len(set(hashes)) != len(hashes):
            raise StandardisationError("reference rates name a definition twice")

    def to_bytes(self) -> bytes:
        """The canonical document: carried with the round, its SHA-256 signed in the manifest."""
        return canonical_json(
            {
                "format": RATES_FORMAT,
                "study_id": self.study_id,
                "as_of": self.as_of.isoformat(),
                "practices": self.practices,
                "rates": [r.to_data() for r in self.rates],
            }
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> Standardisation:
        """The document back; StandardisationError saying what is wrong when it is not one."""
        try:
            doc = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            raise StandardisationError("the reference rates are not JSON") from None
        if not isinstance(doc, dict) or doc.get("format") != RATES_FORMAT:
            raise StandardisationError(f"the reference rates are not a {RATES_FORMAT} document")
        try:
            found = cls(
                study_id=_text(doc["study_id"]),
                as_of=dt.date.fromisoformat(_text(doc["as_of"])),
                practices=_count(doc["practices"]),
                rates=tuple(
                    ReferenceRates(
                        _text(r["definition"]),
                        _text(r["indicator"]),
                        tuple((_text(b), n, d) for b, n, d in r["bands"]),
                    )
                    for r in doc["rates"]
                ),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise StandardisationError(f"the reference rates are incomplete ({exc})") from None
        if found.to_bytes() != data:
            raise StandardisationError("the reference rates are not in canonical form")
        return found

    @property
    def digest(self) -> str:
        """The SHA-256 of the document."""
        return sha256_hex(self.to_bytes())

    def check_fits(self, definitions: Sequence[tuple[str, IndicatorDefinition]]) -> None:
        """Every entry names one of the round's (hash, definition)s marked ``standardise``."""
        by_hash = dict(definitions)
        for r in self.rates:
            defn = by_hash.get(r.definition_hash)
            if defn is None:
                raise StandardisationError(
                    f"reference rates for {r.indicator}: not a definition of the round"
                )
            if defn.standardise is None or not defn.standardisable:
                raise StandardisationError(
                    f"reference rates for {r.indicator}: the definition is not to be standardised"
                )


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError("expected text")
    return value


def _count(value: object) -> int:
    if type(value) is not int or value < 0:  # a bool is not a count
        raise TypeError("expected a count")
    return value


def asks_standardised(round_: Round) -> bool:
    """True when a definition of the round says ``standardise`` (no agent before 0.4.0 reads it)."""
    return _any_standardised(round_.definitions)


@functools.lru_cache(maxsize=32)
def _any_standardised(definitions: tuple[DefinitionDocument, ...]) -> bool:
    from fedpeer.definitions import deserialize

    return any(deserialize(d.body).standardise is not None for d in definitions)


def standardisation_of(round_: Round) -> Standardisation | None:
    """The round's reference rates, checked against its definitions; None when it has none."""
    if not round_.reference_rates:
        return None
    return _checked(round_.reference_rates, round_.definitions)


@functools.lru_cache(maxsize=32)
def _checked(rates: bytes, definitions: tuple[DefinitionDocument, ...]) -> Standardisation:
    # Once per round, not once per submission: a round never changes once signed.
    from fedpeer.definitions import deserialize

    found = Standardisation.from_bytes(rates)
    found.check_fits([(d.content_hash, deserialize(d.body)) for d in definitions])
    return found
