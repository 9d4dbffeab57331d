"""In-control practices: how often the published flags fire when nothing is wrong.

Practices share one true rate (on the asin-sqrt scale, 0.3 as a proportion), spread
between practices by a random effect of SD tau, and binomial chance within each
practice. Denominators run from 50 to 3,000. Every practice is in control: each flag is
a false alarm. Fixed seed, 24 rounds of 250 practices = 6,000 practice results each way.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from coordinator.stats import Distribution, Flag
from coordinator.stats.funnel import dispersion, funnel_table

ROUNDS, PRACTICES = 24, 250


def alarm_rates(tau: float, *, overdispersion: bool, seed: int = 2026) -> tuple[float, float]:
    """Share of practices outside the published 95% and 99.8% limits."""
    rng = np.random.default_rng(seed)
    out95 = out998 = 0
    for _ in range(ROUNDS):
        den = rng.integers(50, 3000, PRACTICES)
        y = math.asin(math.sqrt(0.3)) + rng.normal(0.0, tau, PRACTICES)
        num = rng.binomial(den, np.sin(np.clip(y, 0, math.pi / 2)) ** 2)
        table = funnel_table(Distribution.BINOMIAL, num, den, overdispersion=overdispersion)
        out95 += int(np.sum(table.flag95 != Flag.WITHIN))
        out998 += int(np.sum(table.flag998 != Flag.WITHIN))
    total = ROUNDS * PRACTICES
    return out95 / total, out998 / total


def test_without_overdispersion_the_flags_fire_at_their_nominal_rate() -> None:
    # Pure binomial chance: the exact limits (tau2 is 0 nearly every round). Tolerance:
    # 6,000 results give a binomial SE of 0.28% at 5% and 0.058% at 0.2%; allow about 4
    # SE, plus the exact limits' discreteness at small denominators.
    rate95, rate998 = alarm_rates(0.0, overdispersion=True)
    assert rate95 == pytest.approx(0.05, abs=0.012)
    assert rate998 == pytest.approx(0.002, abs=0.0025)


def test_with_overdispersion_adjustment_brings_false_alarms_back_towards_nominal() -> None:
    # tau = 0.03 on the asin-sqrt scale: at 1,500 patients phi is about 6, as in the demo's
    # calmer indicators. Exact limits then flag about 40% and 20% of in-control practices.
    exact95, exact998 = alarm_rates(0.03, overdispersion=False)
    adjusted95, adjusted998 = alarm_rates(0.03, overdispersion=True)
    assert exact95 > 0.3 and exact998 > 0.15
    # Measured here: 11.3% and 1.5%. STATS.md S9 Winsorises z at 10%/90% and takes
    # the mean square without correcting for the Winsorising, which keeps only ~0.68 of
    # a normal z's variance; tau2 is estimated low, so the adjusted flags run at ~2.3x
    # (95%) and ~7x (99.8%) nominal. The bounds pin that: a regression in the
    # adjustment (tau2 lost, or limits from the wrong scale) moves them far outside.
    assert 0.05 < adjusted95 < 0.15
    assert 0.002 < adjusted998 < 0.025


def test_winsorised_mean_square_of_pure_chance_is_two_thirds() -> None:
    # Why the adjustment stops short: for standard normal z, E[winsorised z^2] at the
    # 10%/90% points is 0.8 - 2c phi(c) + 0.2 c^2 with c = 1.2816, i.e. 0.6786.
    z = np.random.default_rng(1).normal(size=200_000)
    assert dispersion(z, np.full(z.size, 100.0)).phi == pytest.approx(0.6786, abs=0.01)
