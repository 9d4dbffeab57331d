"""A funnel's numbers for a table of practices: S1, S3, S5-S14 of STATS.md.

``funnel_table`` is the whole computation, over numpy arrays of numerators and
denominators (per patient: a rate is never scaled here). The round's comparison and the
offline ``stats funnel`` command both call it, so they publish the same numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from coordinator.stats import Z95, Z998, Distribution, Flag
from coordinator.stats.distributions import binomial_cdf, poisson_cdf, two_sided_p
from coordinator.stats.intervals import garwood, wilson
from coordinator.stats.ranks import benjamini_hochberg, deciles, mid_rank_percentiles
from fedpeer.policy import DEFAULT_GROUP_MINIMUM

WINSORISE_PERCENTILES = (10.0, 90.0)  # S9
# The computed columns of the offline interface, in order (STATS.md): FunnelTable's
# fields. ``q`` is S15 within the table, ``tail`` the exact one-sided tail under theta0.
COLUMNS = (
    "value",
    "ci_low",
    "ci_high",
    "theta0",
    "exact_low95",
    "exact_high95",
    "exact_low998",
    "exact_high998",
    "phi",
    "tau2",
    "low95",
    "high95",
    "low998",
    "high998",
    "z",
    "p",
    "flag95",
    "flag998",
    "percentile",
    "decile",
    "q",
    "tail",
)
_PER_PRACTICE = ("value", "ci_low", "ci_high")  # S3: all a table of too few practices gets
_SCALARS = ("theta0", "phi", "tau2")
_FLAGS = ("flag95", "flag998")
_GROUP_COLUMNS = tuple(c for c in COLUMNS if c not in {*_PER_PRACTICE, *_SCALARS, *_FLAGS})


@dataclass(frozen=True)
class Limits:
    """The 95% and 99.8% limits at one denominator, on the per-patient scale."""

    low95: float
    high95: float
    low998: float
    high998: float


def exact_limits(distribution: Distribution, n: float, theta0: float) -> Limits:
    """S6 (binomial) and S7 (Poisson): interpolated exact quantiles around theta0, over n.

    A binomial needs a whole number of trials: n is rounded for the distribution (released
    counts are whole already).
    """
    if distribution is Distribution.BINOMIAL:
        if theta0 <= 0.0 or theta0 >= 1.0:
            return Limits(theta0, theta0, theta0, theta0)
        cdf, top = binomial_cdf(round(n), theta0), 1.0
    else:
        if theta0 <= 0.0:
            return Limits(0.0, 0.0, 0.0, 0.0)
        cdf, top = poisson_cdf(theta0 * n), math.inf

    def limit(p: float) -> float:
        return min(top, max(0.0, cdf.quantile(p) / n))

    return Limits(limit(0.025), limit(0.975), limit(0.001), limit(0.999))


def transform(distribution: Distribution, value: np.ndarray | float) -> np.ndarray:
    """S8's variance-stabilising scale: asin(sqrt(p)) for proportions, sqrt(rate) for rates."""
    root = np.sqrt(np.asarray(value, dtype=float))
    return np.arcsin(np.minimum(root, 1.0)) if distribution is Distribution.BINOMIAL else root


def back_transform(distribution: Distribution, y: np.ndarray | float) -> np.ndarray:
    """S11: clip to the scale's valid range, then square back (sin^2, ^2)."""
    top = math.pi / 2 if distribution is Distribution.BINOMIAL else math.inf
    clipped = np.clip(np.asarray(y, dtype=float), 0.0, top)
    return np.sin(clipped) ** 2 if distribution is Distribution.BINOMIAL else clipped**2


def adjusted_limits(distribution: Distribution, n: float, theta0: float, tau2: float) -> Limits:
    """S11: target +/- z sqrt(s^2 + tau2) on the transformed scale, back-transformed."""
    target = float(transform(distribution, theta0))
    sd = math.sqrt(1 / (4 * n) + tau2)

    def limit(z: float) -> float:
        return float(back_transform(distribution, target + z * sd))

    return Limits(limit(-Z95), limit(Z95), limit(-Z998), limit(Z998))


@dataclass(frozen=True)
class Dispersion:
    """Phi (S9) and the additive random-effects variance tau2 (S10)."""

    phi: float
    tau2: float


def dispersion(z: np.ndarray, denominators: np.ndarray) -> Dispersion:
    """Phi from z Winsorised at its type-7 10th/90th percentiles, and tau2 from phi."""
    z = np.asarray(z, dtype=float)
    count = len(z)
    low, high = np.percentile(z, WINSORISE_PERCENTILES, method="linear")
    phi = float(np.mean(np.clip(z, low, high) ** 2))
    w = 4.0 * np.asarray(denominators, dtype=float)  # 1 / s^2
    spread = float(w.sum() - (w**2).sum() / w.sum())
    if count * phi <= count - 1 or spread <= 0:
        return Dispersion(phi, 0.0)
    return Dispersion(phi, (count * phi - (count - 1)) / spread)


def flag(value: float, low: float, high: float) -> Flag:
    """S13: strictly above the upper limit is higher, strictly below the lower is lower."""
    if value > high:
        return Flag.HIGHER
    if value < low:
        return Flag.LOWER
    return Flag.WITHIN


def exact_tail(distribution: Distribution, numerator: float, n: float, theta0: float) -> float:
    """P(X >= x) under theta0 when the value is at or above it, else P(X <= x).

    What a sentence may claim about chance: the exact binomial or Poisson tail (S15).
    """
    if distribution is Distribution.BINOMIAL:
        cdf = binomial_cdf(round(n), min(max(theta0, 0.0), 1.0))
    else:
        cdf = poisson_cdf(theta0 * n)
    if numerator >= theta0 * n:
        return cdf.upper_tail(numerator)
    return cdf.at(numerator)


def valid_rows(distribution: Distribution, num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """S1: which practices have a value (a count of a positive denominator, both released)."""
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(num) & np.isfinite(den) & (den > 0) & (num >= 0)
        if distribution is Distribution.BINOMIAL:
            ok &= num <= den
    return ok


@dataclass(frozen=True)
class FunnelTable:
    """Every practice's funnel numbers; NaN (or None for a flag) where S1 or S3 leaves none.

    Field names are the offline interface's columns. ``low*``/``high*`` are the published
    limits (S13), ``z``/``p`` those of S12, or unadjusted when overdispersion is off.
    """

    distribution: Distribution
    overdispersion: bool
    valued: np.ndarray
    value: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    theta0: float
    exact_low95: np.ndarray
    exact_high95: np.ndarray
    exact_low998: np.ndarray
    exact_high998: np.ndarray
    phi: float
    tau2: float
    low95: np.ndarray
    high95: np.ndarray
    low998: np.ndarray
    high998: np.ndarray
    z: np.ndarray
    p: np.ndarray
    flag95: np.ndarray
    flag998: np.ndarray
    percentile: np.ndarray
    decile: np.ndarray
    q: np.ndarray
    tail: np.ndarray

    @property
    def adjusted(self) -> bool:
        """True when the published limits, z and p allow for overdispersion."""
        return self.overdispersion and self.tau2 > 0


def _nan(size: int) -> np.ndarray:
    return np.full(size, np.nan)


def funnel_table(
    distribution: Distribution,
    numerators: np.ndarray,
    denominators: np.ndarray,
    *,
    overdispersion: bool = True,
    group_minimum: int = DEFAULT_GROUP_MINIMUM,
) -> FunnelTable:
    """S1-S16 for one indicator's practices: values, intervals, limits, z, p, flags, ranks."""
    num = np.asarray(numerators, dtype=float)
    den = np.asarray(denominators, dtype=float)
    size = len(num)
    valued = valid_rows(distribution, num, den)
    rows = np.flatnonzero(valued)
    value, ci_low, ci_high = _nan(size), _nan(size), _nan(size)
    interval = wilson if distribution is Distribution.BINOMIAL else garwood
    for i in rows:
        value[i] = num[i] / den[i]
        ci_low[i], ci_high[i] = interval(num[i], den[i])
    columns = {name: _nan(size) for name in _GROUP_COLUMNS}
    flags = {name: np.full(size, None, dtype=object) for name in _FLAGS}
    table = dict(
        distribution=distribution,
        overdispersion=overdispersion,
        valued=valued,
        value=value,
        ci_low=ci_low,
        ci_high=ci_high,
        theta0=math.nan,
        phi=math.nan,
        tau2=math.nan,
        **columns,
        **flags,
    )
    if len(rows) < max(group_minimum, 1):  # S3: no group statistic of too few practices
        return FunnelTable(**table)  # type: ignore[arg-type]
    theta0 = float(num[rows].sum() / den[rows].sum())
    n = den[rows]
    s2 = 1 / (4 * n)
    y = transform(distribution, value[rows])
    target = float(transform(distribution, theta0))
    z0 = (y - target) / np.sqrt(s2)
    spread = dispersion(z0, n)
    adjusted = overdispersion and spread.tau2 > 0
    cache: dict[float, tuple[Limits, Limits]] = {}
    for i in rows:
        if den[i] not in cache:
            exact = exact_limits(distribution, den[i], theta0)
            wide = adjusted_limits(distribution, den[i], theta0, spread.tau2) if adjusted else exact
            cache[den[i]] = exact, wide
        exact, published = cache[den[i]]
        for name in ("low95", "high95", "low998", "high998"):
            columns[f"exact_{name}"][i] = getattr(exact, name)
            columns[name][i] = getattr(published, name)
        # S13: the 99.8% flag first; the 95% flag is its own comparison, never weaker.
        flags["flag998"][i] = flag(value[i], published.low998, published.high998)
        flags["flag95"][i] = flag(value[i], published.low95, published.high95)
        columns["tail"][i] = exact_tail(distribution, num[i], den[i], theta0)
    z = (y - target) / np.sqrt(s2 + spread.tau2) if overdispersion else z0  # S12
    columns["z"][rows] = z
    columns["p"][rows] = [two_sided_p(v) for v in z]
    columns["q"][rows] = benjamini_hochberg(columns["p"][rows])
    columns["percentile"][rows] = mid_rank_percentiles(value[rows])
    columns["decile"][rows] = deciles(columns["percentile"][rows])
    table.update(theta0=theta0, phi=spread.phi, tau2=spread.tau2)
    return FunnelTable(**table)  # type: ignore[arg-type]
