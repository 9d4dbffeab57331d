"""What an indicator evaluates to: raw inside the practice, released after disclosure control.

The same classes carry both. A raw measure (from an engine) has every count present; a
released measure (from ``fedpeer.disclosure``) has rounded counts, and ``None`` where a
value is suppressed. Raw measures never leave the practice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Kind(StrEnum):
    """The shape of an indicator's result."""

    PROPORTION = "proportion"
    MEAN = "mean"
    BREAKDOWN = "breakdown"
    RATE = "rate"
    COUNT = "count"


@dataclass(frozen=True)
class Proportion:
    """Numerator of a denominator (patients or appointments)."""

    numerator: int | None
    denominator: int | None
    kind: Kind = field(default=Kind.PROPORTION, init=False, repr=False)


@dataclass(frozen=True)
class Mean:
    """A mean over ``count`` units; the mean is released only when the count allows."""

    count: int | None
    mean: float | None
    kind: Kind = field(default=Kind.MEAN, init=False, repr=False)


@dataclass(frozen=True)
class Breakdown:
    """Counts by category, in a fixed category order.

    ``total`` is the size of the whole population the cells partition; when it is larger
    than the sum of the cells, the difference is an unlisted cell (for example patients of
    unknown sex in an age-sex breakdown) that disclosure control must protect too. For a
    released breakdown, ``total`` is the sum of the released (rounded) cells.
    """

    cells: tuple[tuple[str, int | None], ...]
    total: int | None = None
    kind: Kind = field(default=Kind.BREAKDOWN, init=False, repr=False)

    def cell(self, category: str) -> int | None:
        """The count of one category."""
        return dict(self.cells)[category]


@dataclass(frozen=True)
class Rate:
    """Events per ``per`` people: numerator events over a denominator of people."""

    numerator: int | None
    denominator: int | None
    per: int = 1000
    kind: Kind = field(default=Kind.RATE, init=False, repr=False)


@dataclass(frozen=True)
class Count:
    """A single count, such as the registered list size."""

    value: int | None
    kind: Kind = field(default=Kind.COUNT, init=False, repr=False)


Measure = Proportion | Mean | Breakdown | Rate | Count


@dataclass(frozen=True)
class IndicatorResult:
    """One indicator's measure for one practice on one reference date.

    ``stratum`` is empty for the whole practice, or names a sex and age band stratum
    (``female.40-44``) when a round asks for patient-based indicators by age and sex.
    """

    indicator: str
    measure: Measure
    stratum: str = ""
