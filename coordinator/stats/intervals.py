"""A practice's own 95% interval (S16) and indirect standardisation (S17)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from coordinator.stats import Z95
from coordinator.stats.distributions import gamma_quantile

# Below this many observed events the ratio's interval is exact; from it on, Byar's
# approximation (PHEindicatormethods' choice, S17).
BYAR_FROM = 10


def wilson(numerator: float, denominator: float, z: float = Z95) -> tuple[float, float]:
    """Wilson's score interval for a proportion (S16)."""
    x, n = numerator, denominator
    centre = 2 * x + z * z
    half = z * math.sqrt(z * z + 4 * x * (1 - x / n))
    scale = 2 * (n + z * z)
    return max(0.0, (centre - half) / scale), min(1.0, (centre + half) / scale)


def garwood_count(count: float) -> tuple[float, float]:
    """Garwood's exact 95% interval for a Poisson count: chi2(0.025; 2x)/2, chi2(0.975; 2x+2)/2."""
    low = 0.0 if count <= 0 else gamma_quantile(count, 0.025)
    return low, gamma_quantile(count + 1, 0.975)


def garwood(numerator: float, denominator: float) -> tuple[float, float]:
    """Garwood's exact 95% interval for a rate per patient (S16)."""
    low, high = garwood_count(numerator)
    return low / denominator, high / denominator


def byar_count(count: float, z: float = Z95) -> tuple[float, float]:
    """Byar's approximate 95% interval for a Poisson count."""
    o, o1 = count, count + 1
    low = o * (1 - 1 / (9 * o) - z / (3 * math.sqrt(o))) ** 3
    high = o1 * (1 - 1 / (9 * o1) + z / (3 * math.sqrt(o1))) ** 3
    return low, high


@dataclass(frozen=True)
class Standardised:
    """Indirectly standardised ratios of practices: observed over expected, with intervals."""

    observed: np.ndarray
    expected: np.ndarray
    ratio: np.ndarray
    low: np.ndarray
    high: np.ndarray
    band_rates: np.ndarray


def band_rates(numerators: np.ndarray, denominators: np.ndarray) -> np.ndarray:
    """S17's reference rates: each band's numerators over its denominators, summed over the
    rows (practices); 0 for a band with no one in it (it adds nothing to any expected count).
    """
    num = np.atleast_2d(np.asarray(numerators, dtype=float))
    den = np.atleast_2d(np.asarray(denominators, dtype=float))
    totals = den.sum(axis=0)
    return np.divide(num.sum(axis=0), totals, out=np.zeros_like(totals), where=totals > 0)


def standardised_ratios(
    observed: np.ndarray, expected: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """S17's ratio O / E with its 95% interval: Garwood on O below 10, Byar's from 10, over E.

    NaN where E is not positive (no expected count, no ratio).
    """
    observed = np.asarray(observed, dtype=float)
    expected = np.asarray(expected, dtype=float)
    ratio = np.full_like(observed, np.nan)
    low = np.full_like(observed, np.nan)
    high = np.full_like(observed, np.nan)
    for i, (o, e) in enumerate(zip(observed, expected, strict=True)):
        if not e > 0:
            continue
        lo, hi = garwood_count(o) if o < BYAR_FROM else byar_count(o)
        ratio[i], low[i], high[i] = o / e, lo / e, hi / e
    return ratio, low, high


def indirect_standardisation(numerators: np.ndarray, denominators: np.ndarray) -> Standardised:
    """S17: practices x bands counts -> observed / expected from the pooled band rates.

    A band no practice has anyone in has no rate and adds nothing to any expected count.
    (In a round the bands never reach the coordinator: each agent sends its expected count
    from rates pooled by secure aggregation, and ``standardised_ratios`` does the rest.)
    """
    num = np.asarray(numerators, dtype=float)
    den = np.asarray(denominators, dtype=float)
    rates = band_rates(num, den)
    observed = num.sum(axis=1)
    expected = den @ rates
    ratio, low, high = standardised_ratios(observed, expected)
    return Standardised(observed, expected, ratio, low, high, rates)
