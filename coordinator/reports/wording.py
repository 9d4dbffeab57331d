"""What the numbers mean, in plain words: funnel statuses, percentiles and counts."""

from __future__ import annotations

import math
from dataclasses import dataclass

from coordinator.comparisons import (
    Direction,
    IndicatorComparison,
    IndicatorSpec,
    PracticeValue,
    StandardisedRatio,
)
from coordinator.funnel import FunnelStatus
from coordinator.stats.ranks import shown_percentile
from fedpeer.measures import Kind


@dataclass(frozen=True)
class Verdict:
    """A status as a short label, a tone for colour, and a sentence of interpretation."""

    label: str
    tone: str  # css class: good, concern, notable, neutral, none
    sentence: str


_HIGH = {FunnelStatus.ABOVE_95, FunnelStatus.ABOVE_998}
_LOW = {FunnelStatus.BELOW_95, FunnelStatus.BELOW_998}
_ALARM = {FunnelStatus.ABOVE_998, FunnelStatus.BELOW_998}
# "Less than 1 time in N" is claimed only for a tail probability below 1 / N.
_ODDS = (1_000_000, 100_000, 10_000, 1_000, 100)


def chance_words(tail: float) -> str:
    """How often chance alone gives a result this far out, claiming no more than ``tail``.

    Below 1 in 100 the words are the largest "less than 1 time in N" that is true;
    otherwise "about K times in 100" with K the tail rounded half up to a whole per cent
    (never 0, so a rare result never reads as impossible).
    """
    for odds in _ODDS:
        if tail < 1 / odds:
            return f"less than 1 time in {odds:,}"
    times = max(1, math.floor(100 * tail + 0.5))
    return f"about {times} {'time' if times == 1 else 'times'} in 100"


def verdict(spec: IndicatorSpec, value: PracticeValue, *, overdispersed: bool = False) -> Verdict:
    """How a practice's funnel status reads, given which way is better for the indicator.

    ``overdispersed``: practices differ more than chance explains and the limits were
    not widened for it, so an outlying status is a weaker signal; the sentence says so.
    A probability in the sentence is ``value.chance`` (the exact binomial or Poisson
    tail under the all-practice value, or the overdispersion-adjusted p if larger),
    never the limit's nominal level: at a small denominator the two differ (25 of 25
    against 90% is above the exact 99.8% limit, yet chance gives it 7 times in 100).
    """
    if value.value is None:
        return Verdict("No value", "none", value.note or "No value for this indicator.")
    if not spec.has_funnel:
        return Verdict(
            "Not tested",
            "none",
            "Means have no funnel: the spread within each practice is not released.",
        )
    status = value.status
    if status is FunnelStatus.NO_VALUE:
        return Verdict("Not tested", "none", "Too few practices to set limits.")
    if status is FunnelStatus.WITHIN:
        return Verdict(
            "As expected",
            "neutral",
            "Within the range that chance alone would give for a practice of this size.",
        )
    much = status in _ALARM
    higher = status in _HIGH
    label = ("Much " if much else "") + ("higher" if higher else "lower") + " than expected"
    label = label[0].upper() + label[1:]
    limit = "99.8%" if much else "95%"
    side = "above" if higher else "below"
    chance = f"{side.capitalize()} the {limit} limit."
    if value.chance is not None:
        extreme = "high" if higher else "low"
        chance += (
            f" At the all-practice value, chance gives a result this {extreme} "
            f"{chance_words(value.chance)}."
        )
    if overdispersed:
        chance += " Many practices are outside these limits, so read this as a guide."
    better = spec.direction.higher_is_better
    if better is None:
        return Verdict(label, "notable", chance)
    if better == higher:
        return Verdict(label, "good", f"{chance} Likely good practice worth sharing.")
    return Verdict(label, "concern", f"{chance} Worth a closer look.")


def ordinal(n: float | None) -> str:
    """72.4 -> ``72nd``; a percentile as people say it (rounded half up, within 1..99)."""
    if n is None:
        return "—"
    k = shown_percentile(n)  # S14: half up, within 1..99
    suffix = "th" if 10 <= k % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(k % 10, "th")
    return f"{k}{suffix}"


def counts(spec: IndicatorSpec, value: PracticeValue) -> str:
    """The released counts behind a value, e.g. ``412 of 560`` or ``n = 1,240``."""
    if spec.kind is Kind.MEAN:
        return "" if value.denominator is None else f"n = {value.denominator:,.0f}"
    if value.numerator is None or value.denominator is None:
        return "" if value.denominator is None else f"of {value.denominator:,.0f}"
    return f"{value.numerator:,.0f} of {value.denominator:,.0f}"


def direction_words(direction: Direction) -> str:
    """Which way is better, for a table column."""
    return {
        Direction.HIGHER_IS_BETTER: "Higher is better",
        Direction.LOWER_IS_BETTER: "Lower is better",
        Direction.NEITHER: "Neither way is better",
    }[direction]


def denominator_words(spec: IndicatorSpec) -> str:
    """The funnel's x axis for an indicator."""
    if spec.kind is Kind.RATE:
        return "Registered patients"
    if spec.id in {"dna_rate", "seen_within_14d"}:
        return "Appointments in the period"
    return "Eligible patients"


def value_words(spec: IndicatorSpec) -> str:
    """The funnel's y axis for an indicator."""
    if spec.unit == "%":
        return "Per cent"
    if spec.kind is Kind.RATE:
        return f"Per {spec.per:,}"
    return spec.unit or "Value"


def spread_words(comparison: IndicatorComparison) -> str:
    """A caption on whether practices vary more than chance, and what the limits allow."""
    funnel = comparison.funnel
    if funnel is None or not comparison.overdispersed:
        return ""
    if funnel.adjusted:
        return f"Limits widened for overdispersion (phi {funnel.phi:.1f})."
    return (
        f"Practices differ more than chance alone explains (overdispersion, phi "
        f"{comparison.phi:.1f}), so many fall outside these limits: read them as a guide."
    )


def standardised_words(ratio: StandardisedRatio | None) -> str:
    """A practice's indirectly standardised ratio (S17) in one sentence, or "" without one.

    The interval is exact (Garwood) below 10 observed and Byar's from 10; the words say
    only on which side of 1 it lies, or that it includes 1.
    """
    if ratio is None:
        return ""
    if ratio.low > 1:
        side = "higher than expected for a list of its age and sex"
    elif ratio.high < 1:
        side = "lower than expected for a list of its age and sex"
    else:
        side = "the interval includes 1: no different from expected, given its age and sex"
    return (
        f"Standardised for age and sex: {ratio.ratio:.2f} times the expected "
        f"(95% interval {ratio.low:.2f} to {ratio.high:.2f}; observed {ratio.observed:,.0f}, "
        f"expected {ratio.expected:,.0f}), {side}."
    )
