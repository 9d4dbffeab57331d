"""Funnel limits against hand-computed and independently computed values."""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
import pytest

from coordinator.funnel import (
    CountCdf,
    Distribution,
    FunnelModel,
    FunnelStatus,
    binomial_cdf,
    estimate_overdispersion,
    poisson_cdf,
)


def exact_binomial_cdf(n: int, p: float) -> list[float]:
    """The binomial CDF summed term by term with exact integer coefficients."""
    total, out = 0.0, []
    for r in range(n + 1):
        total += math.comb(n, r) * p**r * (1 - p) ** (n - r)
        out.append(total)
    return out


def test_binomial_cdf_matches_term_by_term_sum() -> None:
    cdf = binomial_cdf(20, 0.3)
    assert [cdf.at(r) for r in range(21)] == pytest.approx(exact_binomial_cdf(20, 0.3), abs=1e-12)


def test_binomial_cdf_of_a_large_denominator_is_a_window() -> None:
    cdf = binomial_cdf(100_000, 0.05)
    assert cdf.first > 0 and len(cdf.cumulative) < 2000
    assert cdf.at(0) == 0.0 and cdf.at(100_000) == pytest.approx(1.0)
    assert cdf.at(5000) == pytest.approx(0.5, abs=0.01)


def test_poisson_cdf_matches_term_by_term_sum() -> None:
    expected = np.cumsum([math.exp(-10) * 10**k / math.factorial(k) for k in range(40)])
    cdf = poisson_cdf(10.0)
    assert [cdf.at(k) for k in range(40)] == pytest.approx(expected, abs=1e-12)


def test_binomial_limits_by_hand_for_ten_coin_tosses() -> None:
    # Binomial(10, 1/2): P(R<=1)=11/1024, P(R<=2)=56/1024, P(R<=7)=968/1024,
    # P(R<=8)=1013/1024. Upper 97.5%: r=8, alpha=(1013-998.4)/45; lower 2.5%:
    # r=2, alpha=(56-25.6)/45. Limits are (r - alpha)/n.
    limits = FunnelModel(Distribution.BINOMIAL, 0.5).limits(10)
    assert limits.upper_95 == pytest.approx((8 - 14.6 / 45) / 10)
    assert limits.lower_95 == pytest.approx((2 - 30.4 / 45) / 10)


def test_poisson_upper_limit_by_hand() -> None:
    # Poisson(10): the 97.5% quantile is 17 (published tables); interpolate within it.
    cdf = [sum(math.exp(-10) * 10**k / math.factorial(k) for k in range(r + 1)) for r in range(40)]
    r = next(i for i, c in enumerate(cdf) if c >= 0.975)
    assert r == 17
    expected = r - (cdf[r] - 0.975) / (cdf[r] - cdf[r - 1])
    # A rate per 1,000 of 20 among 500 people expects 10 events.
    limits = FunnelModel(Distribution.POISSON, 20.0, per=1000).limits(500)
    assert limits.upper_95 == pytest.approx(expected * 1000 / 500)


@pytest.mark.parametrize("coverage_z, attr", [(0.975, "upper_95"), (0.999, "upper_998")])
def test_exact_limits_approach_normal_for_large_denominators(coverage_z: float, attr: str) -> None:
    p, n = 0.7, 40_000
    normal = p + NormalDist().inv_cdf(coverage_z) * math.sqrt(p * (1 - p) / n)
    limit = getattr(FunnelModel(Distribution.BINOMIAL, p).limits(n), attr)
    assert limit == pytest.approx(normal, abs=2e-4)


def test_limits_narrow_as_denominator_grows_and_stay_in_range() -> None:
    model = FunnelModel(Distribution.BINOMIAL, 0.95)
    curve = model.curve([10, 50, 200, 1000])
    widths = [c.upper_998 - c.lower_998 for c in curve]
    assert widths == sorted(widths, reverse=True)
    assert all(0 <= c.lower_998 <= c.lower_95 <= c.upper_95 <= c.upper_998 <= 1 for c in curve)


def test_status_bands() -> None:
    limits = FunnelModel(Distribution.BINOMIAL, 0.5).limits(400)
    assert limits.status(0.5) is FunnelStatus.WITHIN
    assert limits.status((limits.upper_95 + limits.upper_998) / 2) is FunnelStatus.ABOVE_95
    assert limits.status(limits.upper_998 + 0.01) is FunnelStatus.ABOVE_998
    assert limits.status((limits.lower_95 + limits.lower_998) / 2) is FunnelStatus.BELOW_95
    assert limits.status(limits.lower_998 - 0.01) is FunnelStatus.BELOW_998
    assert limits.status(None) is FunnelStatus.NO_VALUE


def test_overdispersion_found_only_when_present() -> None:
    rng = np.random.default_rng(1)
    calm = rng.normal(0, 1, 200)
    phi, significant = estimate_overdispersion(calm)
    # Winsorising at 10% shrinks phi for pure chance to about 0.68 (E of clipped z^2).
    assert phi < 1 and not significant
    phi, significant = estimate_overdispersion(3 * calm)
    assert phi > 3 and significant


def test_overdispersion_winsorises_outliers() -> None:
    z = [0.1 * i for i in range(-9, 10)] + [100.0]
    phi, _ = estimate_overdispersion(z)
    assert phi < 1  # the outlier is pulled in to the 90th percentile


def test_overdispersed_limits_are_wider() -> None:
    plain = FunnelModel(Distribution.BINOMIAL, 0.6).limits(500)
    wide = FunnelModel(Distribution.BINOMIAL, 0.6, phi=4.0).limits(500)
    assert wide.upper_998 - wide.lower_998 == pytest.approx(
        2 * 2 * NormalDist().inv_cdf(0.999) * math.sqrt(0.24 / 500)
    )
    assert wide.upper_998 - wide.lower_998 > plain.upper_998 - plain.lower_998


def test_quantile_of_a_point_mass() -> None:
    assert CountCdf(0, np.array([1.0, 1.0])).quantile(0.5) == 0.0
    limits = FunnelModel(Distribution.BINOMIAL, 1.0).limits(10)
    assert limits.lower_998 == limits.upper_998 == 1.0
    assert limits.status(0.9) is FunnelStatus.BELOW_998


def test_invalid_models_are_refused() -> None:
    with pytest.raises(ValueError):
        FunnelModel(Distribution.BINOMIAL, 1.5)
    with pytest.raises(ValueError):
        FunnelModel(Distribution.BINOMIAL, 0.5).limits(0)
