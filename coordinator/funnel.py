"""Funnel plot control limits (Spiegelhalter, Statistics in Medicine 2005; 24:1185-1202).

A practice's value is compared with the all-practice (pooled) value, allowing for the
chance variation expected at its size. Limits are *exact*: the quantile of the binomial
(proportions) or Poisson (rates) distribution around the pooled value, interpolated
between integers as in the paper's appendix. We prefer that to the normal approximation
because many practice denominators here are small (a few dozen diabetics or asthmatics),
where the normal limits are visibly asymmetric-wrong and can fall below 0 or above 1.

Overdispersion: practices differ for reasons beyond chance (case mix, coding), so with
many practices most fall outside the exact limits. ``estimate_overdispersion`` gives the
multiplicative factor phi from winsorised z-scores (paper, section 3.2); when it is
applied the limits widen to ``target ± z * sqrt(phi * variance)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from statistics import NormalDist

import numpy as np

# Two-sided coverage of the inner ("warning") and outer ("alarm") limits.
COVERAGE_95 = 0.95
COVERAGE_998 = 0.998
WINSORISE_FRACTION = 0.10  # paper: shrink the top and bottom 10% of z-scores


class FunnelStatus(StrEnum):
    """Where a practice lies against its funnel limits."""

    WITHIN = "within"  # inside the 95% limits
    ABOVE_95 = "above_95"  # between the upper 95% and 99.8% limits: an alert
    BELOW_95 = "below_95"
    ABOVE_998 = "above_998"  # above the 99.8% limit: an alarm
    BELOW_998 = "below_998"
    NO_VALUE = "no_value"  # suppressed or missing: nothing to compare


class Distribution(StrEnum):
    """The chance model behind the limits."""

    BINOMIAL = "binomial"  # proportions: numerator of denominator
    POISSON = "poisson"  # rates: events among a population, per ``per``


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
        if value > self.upper_998:
            return FunnelStatus.ABOVE_998
        if value < self.lower_998:
            return FunnelStatus.BELOW_998
        if value > self.upper_95:
            return FunnelStatus.ABOVE_95
        if value < self.lower_95:
            return FunnelStatus.BELOW_95
        return FunnelStatus.WITHIN


@dataclass(frozen=True)
class FunnelModel:
    """The pooled target, the distribution and the overdispersion factor of one funnel."""

    distribution: Distribution
    target: float  # on the value's scale: a proportion, or a rate per ``per``
    per: float = 1.0
    phi: float = 1.0  # multiplicative overdispersion; 1.0 means none applied

    def __post_init__(self) -> None:
        if self.distribution is Distribution.BINOMIAL and not 0.0 <= self.target <= 1.0:
            raise ValueError(f"a proportion's target must be in [0, 1], not {self.target}")
        if self.target < 0 or self.per <= 0 or self.phi <= 0:
            raise ValueError("target, per and phi must be positive")

    def limits(self, denominator: float) -> FunnelLimits:
        """The 95% and 99.8% limits at one denominator."""
        quantile = self._quantile_fn(denominator)
        lo95, hi95 = quantile((1 - COVERAGE_95) / 2), quantile((1 + COVERAGE_95) / 2)
        lo998, hi998 = quantile((1 - COVERAGE_998) / 2), quantile((1 + COVERAGE_998) / 2)
        return FunnelLimits(denominator, self.target, lo95, hi95, lo998, hi998)

    def curve(self, denominators: Sequence[float]) -> list[FunnelLimits]:
        """Limits at each denominator, for drawing the funnel."""
        return [self.limits(n) for n in denominators]

    def z_score(self, value: float, denominator: float) -> float:
        """The (unadjusted) z-score of a value at a denominator, for overdispersion."""
        sd = math.sqrt(self._variance(denominator))
        return 0.0 if sd == 0 else (value - self.target) / sd

    def _variance(self, denominator: float) -> float:
        if self.distribution is Distribution.BINOMIAL:
            return self.target * (1 - self.target) / denominator
        return self.target * self.per / denominator

    def _quantile_fn(self, denominator: float) -> Callable[[float], float]:
        if denominator <= 0:
            raise ValueError(f"a denominator must be positive, not {denominator}")
        if self.target == 0 or (self.distribution is Distribution.BINOMIAL and self.target == 1):
            return lambda p: self.target  # no variation: every practice should be on target
        if self.phi != 1.0:
            # Overdispersed limits: the paper's normal approximation with inflated variance.
            sd = math.sqrt(self.phi * self._variance(denominator))
            upper = 1.0 if self.distribution is Distribution.BINOMIAL else math.inf
            return lambda p: min(upper, max(0.0, self.target + NormalDist().inv_cdf(p) * sd))
        if self.distribution is Distribution.BINOMIAL:
            n = round(denominator)
            binomial = binomial_cdf(n, self.target)
            return lambda p: binomial.quantile(p) / n
        poisson = poisson_cdf(self.target * denominator / self.per)
        return lambda p: poisson.quantile(p) * self.per / denominator


# Counts further than this many standard deviations from the mean carry less than 1e-20
# of the probability: leaving them out keeps a national funnel (denominators of 10^5)
# cheap without moving a limit.
TAIL_SDS = 10


@dataclass(frozen=True)
class CountCdf:
    """P(X <= first + i) for i = 0.. of a distribution on counts, over a window."""

    first: int
    cumulative: np.ndarray

    def at(self, count: int) -> float:
        """P(X <= count)."""
        if count < self.first:
            return 0.0
        return float(self.cumulative[min(count - self.first, len(self.cumulative) - 1)])

    def quantile(self, p: float) -> float:
        """The paper's interpolated quantile.

        With r the smallest count where P(X <= r) >= p, the quantile is ``r - alpha``
        where ``alpha = (P(X <= r) - p) / P(X = r)``, so a limit moves smoothly with the
        denominator instead of jumping between integers.
        """
        i = min(int(np.searchsorted(self.cumulative, p, side="left")), len(self.cumulative) - 1)
        r = self.first + i
        below = self.cumulative[i - 1] if i > 0 else 0.0
        mass = self.cumulative[i] - below
        if mass <= 0:
            return float(r)
        return max(0.0, r - float((self.cumulative[i] - p) / mass))


def _window(mean: float, sd: float, top: int | None) -> tuple[int, int]:
    first = max(0, math.floor(mean - TAIL_SDS * sd - 10))
    last = math.ceil(mean + TAIL_SDS * sd + 10)
    return first, last if top is None else min(top, last)


def binomial_cdf(n: int, p: float) -> CountCdf:
    """The CDF of Binomial(n, p), computed in logs so that large n stays finite."""
    if p <= 0.0 or p >= 1.0:
        return CountCdf(n, np.ones(1)) if p >= 1.0 else CountCdf(0, np.ones(1))
    first, last = _window(n * p, math.sqrt(n * p * (1 - p)), n)
    r = np.arange(first, last + 1, dtype=float)
    log_first = math.lgamma(n + 1) - math.lgamma(first + 1) - math.lgamma(n - first + 1)
    ratios = np.log(n - r[1:] + 1) - np.log(r[1:])  # C(n, r) / C(n, r - 1)
    log_comb = log_first + np.concatenate(([0.0], np.cumsum(ratios)))
    log_pmf = log_comb + r * math.log(p) + (n - r) * math.log1p(-p)
    return CountCdf(first, np.minimum(np.cumsum(np.exp(log_pmf)), 1.0))


def poisson_cdf(mean: float) -> CountCdf:
    """The CDF of Poisson(mean), over the counts that carry its probability."""
    if mean <= 0:
        return CountCdf(0, np.ones(1))
    first, last = _window(mean, math.sqrt(mean), None)
    o = np.arange(first, last + 1, dtype=float)
    log_factorial = math.lgamma(first + 1) + np.concatenate(([0.0], np.cumsum(np.log(o[1:]))))
    log_pmf = o * math.log(mean) - mean - log_factorial
    return CountCdf(first, np.minimum(np.cumsum(np.exp(log_pmf)), 1.0))


def estimate_overdispersion(z_scores: Sequence[float]) -> tuple[float, bool]:
    """Phi from winsorised z-scores and whether it is significant (chi-squared, 5%).

    Returns ``(phi, significant)``; callers apply phi only when significant, as the
    paper suggests, so a well-behaved group keeps its exact limits.
    """
    z = np.sort(np.asarray([v for v in z_scores if math.isfinite(v)], dtype=float))
    count = len(z)
    if count < 3:
        return 1.0, False
    cut = math.floor(count * WINSORISE_FRACTION)
    if cut > 0:
        z = np.clip(z, z[cut], z[count - 1 - cut])
    phi = float(np.mean(z**2))
    return phi, count * phi > _chi2_quantile(0.95, count - 1)


def _chi2_quantile(p: float, df: int) -> float:
    # Wilson-Hilferty: within a fraction of a percent for df >= 3, enough for a test at 5%.
    z = NormalDist().inv_cdf(p)
    a = 2 / (9 * df)
    return df * (1 - a + z * math.sqrt(a)) ** 3
