"""Funnel limits against hand-computed and independently computed values."""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
import pytest

from coordinator.funnel import Distribution, FunnelModel, FunnelStatus
from coordinator.stats.distributions import CountCdf, binomial_cdf, poisson_cdf


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


def test_adjusted_limits_are_wider_and_follow_s11_by_hand() -> None:
    plain = FunnelModel(Distribution.BINOMIAL, 0.6).limits(500)
    wide = FunnelModel(Distribution.BINOMIAL, 0.6, phi=4.0, tau2=0.01).limits(500)
    # S11: asin(sqrt(0.6)) +/- z998 sqrt(1 / (4 x 500) + 0.01), then sin^2.
    half = 3.090232306167813 * math.sqrt(1 / 2000 + 0.01)
    target = math.asin(math.sqrt(0.6))
    assert wide.upper_998 == pytest.approx(math.sin(target + half) ** 2, rel=1e-12)
    assert wide.lower_998 == pytest.approx(math.sin(target - half) ** 2, rel=1e-12)
    assert wide.upper_998 - wide.lower_998 > plain.upper_998 - plain.lower_998


def test_adjusted_rate_limits_are_on_the_value_scale() -> None:
    # 20 per 1,000 is 0.02 per patient (S1); sqrt scale, squared back, times 1,000.
    wide = FunnelModel(Distribution.POISSON, 20.0, per=1000, tau2=1e-4).limits(500)
    half = 1.959963984540054 * math.sqrt(1 / 2000 + 1e-4)
    assert wide.upper_95 == pytest.approx(1000 * (math.sqrt(0.02) + half) ** 2, rel=1e-12)
    assert wide.lower_95 == pytest.approx(1000 * (math.sqrt(0.02) - half) ** 2, rel=1e-12)


def test_quantile_of_a_point_mass() -> None:
    # S6: r_p = 0 and alpha = (1 - 0.5) / 1; the limit, not the quantile, is clipped at 0.
    assert CountCdf(0, np.array([1.0]), np.array([1.0])).quantile(0.5) == -0.5
    limits = FunnelModel(Distribution.BINOMIAL, 1.0).limits(10)
    assert limits.lower_998 == limits.upper_998 == 1.0
    assert limits.status(0.9) is FunnelStatus.BELOW_998


def test_invalid_models_are_refused() -> None:
    with pytest.raises(ValueError):
        FunnelModel(Distribution.BINOMIAL, 1.5)
    with pytest.raises(ValueError):
        FunnelModel(Distribution.BINOMIAL, 0.5).limits(0)
    with pytest.raises(ValueError):
        FunnelModel(Distribution.BINOMIAL, 0.5, tau2=-1.0)
