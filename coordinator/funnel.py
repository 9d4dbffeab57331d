"""Funnel plot limits of a round's indicator (Spiegelhalter, Stat Med 2005; 24:1185-1202).

A practice's value is compared with the all-practice (pooled) value, allowing for the
chance variation expected at its size. The arithmetic is ``coordinator.stats.funnel``
(STATS.md S5-S13); this module gives it the shapes the comparison and the charts use: a
``FunnelModel`` that draws limits at any denominator, on the value's scale (a rate per
``per``), and a ``FunnelStatus`` that reads both flags at once.

Limits are *exact* (binomial or Poisson quantiles, interpolated) unless the model carries
a between-practice variance ``tau2 > 0``: then they are the overdispersion-adjusted
limits of S11, which is what the round publishes by default.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from coordinator.stats import Distribution, Flag
from coordinator.stats.funnel import Limits, adjusted_limits, exact_limits, flag

__all__ = ["Distribution", "FunnelLimits", "FunnelModel", "FunnelStatus", "status_of"]


class FunnelStatus(StrEnum):
    """Where a practice lies against its funnel limits."""

    WITHIN = "within"  # inside the 95% limits
    ABOVE_95 = "above_95"  # between the upper 95% and 99.8% limits: an alert
    BELOW_95 = "below_95"
    ABOVE_998 = "above_998"  # above the 99.8% limit: an alarm
    BELOW_998 = "below_998"
    NO_VALUE = "no_value"  # suppressed or missing: nothing to compare


def status_of(flag95: Flag | None, flag998: Flag | None) -> FunnelStatus:
    """Both flags as one status, the 99.8% flag decided first (S13)."""
    if flag95 is None or flag998 is None:
        return FunnelStatus.NO_VALUE
    if flag998 is Flag.HIGHER:
        return FunnelStatus.ABOVE_998
    if flag998 is Flag.LOWER:
        return FunnelStatus.BELOW_998
    if flag95 is Flag.HIGHER:
        return FunnelStatus.ABOVE_95
    if flag95 is Flag.LOWER:
        return FunnelStatus.BELOW_95
    return FunnelStatus.WITHIN


@dataclass(frozen=True)
class FunnelLimits:
    """Control limits around ``target`` for one denominator, on the value's scale."""

    denominator: float
    target: float
    lower_95: float
    upper_95: float
    lower_998: float
    upper_998: float

    def status(self, value: float | None) -> FunnelStatus:
        """Classify a value against these limits (points on a limit count as within)."""
        if value is None or math.isnan(value):
            return FunnelStatus.NO_VALUE
        return status_of(
            flag(value, self.lower_95, self.upper_95),
            flag(value, self.lower_998, self.upper_998),
        )


@dataclass(frozen=True)
class FunnelModel:
    """One funnel: pooled target, chance model, and the overdispersion it allows for."""

    distribution: Distribution
    target: float  # on the value's scale: a proportion, or a rate per ``per``
    per: float = 1.0
    phi: float = 1.0  # the estimated overdispersion ratio (S9); informative only
    tau2: float = 0.0  # between-practice variance the limits allow for (S10); 0 = exact

    def __post_init__(self) -> None:
        if self.distribution is Distribution.BINOMIAL and not 0.0 <= self.target <= 1.0:
            raise ValueError(f"a proportion's target must be in [0, 1], not {self.target}")
        if self.target < 0 or self.per <= 0 or self.phi < 0 or self.tau2 < 0:
            raise ValueError("target, per, phi and tau2 must not be negative")

    @property
    def adjusted(self) -> bool:
        """True when the limits are widened for overdispersion (S11), not exact."""
        return self.tau2 > 0

    def limits(self, denominator: float) -> FunnelLimits:
        """The published 95% and 99.8% limits at one denominator (S13)."""
        if denominator <= 0:
            raise ValueError(f"a denominator must be positive, not {denominator}")
        theta0 = self.target / self.per  # per patient, as every computation is (S1)
        if self.adjusted:
            lim: Limits = adjusted_limits(self.distribution, denominator, theta0, self.tau2)
        else:
            lim = exact_limits(self.distribution, denominator, theta0)
        k = self.per
        return FunnelLimits(
            denominator, self.target, k * lim.low95, k * lim.high95, k * lim.low998, k * lim.high998
        )

    def curve(self, denominators: Sequence[float]) -> list[FunnelLimits]:
        """Limits at each denominator, for drawing the funnel."""
        return [self.limits(n) for n in denominators]
