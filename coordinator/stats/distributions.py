"""Exact distributions without scipy: binomial and Poisson CDFs, normal and gamma tails.

The production code computes these itself so that the tests' comparison with scipy is
an independent check. Counts' probabilities are summed in logs over a window of the
counts that carry the probability, then normalised over that window: a common rounding
error in the log-coefficients (lgamma of 10^6 is 10^7) then cancels, and a national
denominator stays cheap.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

# Counts further than this many standard deviations from the mean carry less than 1e-20
# of the probability: leaving them out moves no limit.
TAIL_SDS = 10
_EPS = 1e-16
_TINY = 1e-300


@dataclass(frozen=True)
class CountCdf:
    """P(X = r) and P(X <= r) for r = first, first + 1, ... over the window."""

    first: int
    pmf: np.ndarray
    cumulative: np.ndarray

    def at(self, count: float) -> float:
        """P(X <= count)."""
        i = math.floor(count) - self.first
        if i < 0:
            return 0.0
        return float(self.cumulative[min(i, len(self.cumulative) - 1)])

    def upper_tail(self, count: float) -> float:
        """P(X >= count), summed from the tail so that small tails stay precise."""
        i = max(0, math.ceil(count) - self.first)
        return float(self.pmf[i:].sum()) if i < len(self.pmf) else 0.0

    def quantile(self, p: float) -> float:
        """Spiegelhalter's interpolated quantile (S6, S7): ``r_p - alpha``.

        ``r_p`` is the smallest count with P(X <= r_p) >= p and
        ``alpha = (P(X <= r_p) - p) / P(X = r_p)``, so a limit moves smoothly with the
        denominator instead of jumping between whole counts.
        """
        i = min(int(np.searchsorted(self.cumulative, p, side="left")), len(self.pmf) - 1)
        mass = float(self.pmf[i])
        alpha = 0.0 if mass <= 0 else (float(self.cumulative[i]) - p) / mass
        return self.first + i - alpha


def _normalised(first: int, log_relative: np.ndarray) -> CountCdf:
    pmf = np.exp(log_relative - log_relative.max())
    pmf /= pmf.sum()
    return CountCdf(first, pmf, np.minimum(np.cumsum(pmf), 1.0))


def _point(at: int) -> CountCdf:
    return CountCdf(at, np.ones(1), np.ones(1))


def binomial_cdf(n: int, p: float) -> CountCdf:
    """The distribution of Binomial(n, p) over the counts that carry its probability."""
    if p <= 0.0 or p >= 1.0 or n == 0:
        return _point(n if p >= 1.0 else 0)
    sd = math.sqrt(n * p * (1 - p))
    first = max(0, math.floor(n * p - TAIL_SDS * sd - 10))
    last = min(n, math.ceil(n * p + TAIL_SDS * sd + 10))
    r = np.arange(first + 1, last + 1, dtype=float)
    # P(r) / P(r - 1) = (n - r + 1) p / (r (1 - p)), written as log1p of its distance
    # from 1: near the mode the steps are tiny, and no rounding of log(p) builds up over
    # thousands of steps into a tilt of the whole distribution.
    steps = np.log1p(((n + 1) * p - r) / (r * (1 - p)))
    return _normalised(first, np.concatenate(([0.0], np.cumsum(steps))))


def poisson_cdf(mean: float) -> CountCdf:
    """The distribution of Poisson(mean) over the counts that carry its probability."""
    if mean <= 0:
        return _point(0)
    sd = math.sqrt(mean)
    first = max(0, math.floor(mean - TAIL_SDS * sd - 10))
    last = math.ceil(mean + TAIL_SDS * sd + 10)
    r = np.arange(first + 1, last + 1, dtype=float)
    steps = -np.log1p((r - mean) / mean)  # P(r) / P(r - 1) = mean / r, as for the binomial
    return _normalised(first, np.concatenate(([0.0], np.cumsum(steps))))


def two_sided_p(z: float) -> float:
    """2 (1 - Phi(|z|)), through erfc so that a large z keeps its small p (S12)."""
    return math.erfc(abs(z) / math.sqrt(2))


def regularized_gamma(a: float, x: float) -> tuple[float, float]:
    """(P(a, x), Q(a, x)): the regularized lower and upper incomplete gamma functions.

    The series where it converges fast (x < a + 1), Lentz's continued fraction for Q
    otherwise (Numerical Recipes, 6.2); each returns the smaller tail precisely.
    """
    if x <= 0:
        return 0.0, 1.0
    log_front = a * math.log(x) - x - math.lgamma(a)
    limit = 1000 + int(20 * math.sqrt(a))
    if x < a + 1:
        term = total = 1.0 / a
        for k in range(1, limit):
            term *= x / (a + k)
            total += term
            if abs(term) < abs(total) * _EPS:
                break
        lower = total * math.exp(log_front)
        return lower, 1.0 - lower
    b = x + 1.0 - a
    c = 1.0 / _TINY
    d = 1.0 / b
    h = d
    for i in range(1, limit):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        d = _TINY if abs(d) < _TINY else d
        c = b + an / c
        c = _TINY if abs(c) < _TINY else c
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < _EPS:
            break
    upper = math.exp(log_front) * h
    return 1.0 - upper, upper


def gamma_quantile(a: float, p: float) -> float:
    """The x with P(a, x) = p for Gamma(a, 1): Newton's method kept inside a bracket."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"a probability strictly between 0 and 1 is needed, not {p}")
    use_upper = p > 0.5  # solve on the smaller tail, where it is precise

    def miss(x: float) -> float:
        lower, upper = regularized_gamma(a, x)
        return (1.0 - p) - upper if use_upper else lower - p

    z = NormalDist().inv_cdf(p)
    x = max(a * (1 - 1 / (9 * a) + z / (3 * math.sqrt(a))) ** 3, 1e-8 * a, 1e-300)
    low, high = 0.0, max(2.0 * x, a + 10 * math.sqrt(a) + 10)
    while miss(high) < 0:
        low, high = high, 2.0 * high
    for _ in range(200):
        f = miss(x)
        if f == 0:
            return x
        if f < 0:
            low = max(low, x)
        else:
            high = min(high, x)
        density = math.exp((a - 1) * math.log(x) - x - math.lgamma(a))
        step = f / density if density > 0 else math.inf
        candidate = x - step
        if not low < candidate < high:
            candidate = (low + high) / 2
        if abs(candidate - x) <= 4 * _EPS * x:
            return candidate
        x = candidate
    return x
