"""The exact distributions, intervals, ranks and q-values against scipy (STATS.md S4-S17)."""

from __future__ import annotations

import math
from decimal import Decimal, localcontext

import numpy as np
import pytest
from _stats_reference import close, exact_limit
from scipy import special, stats

from coordinator.stats import Z95, Z998, Distribution
from coordinator.stats.distributions import (
    binomial_cdf,
    gamma_quantile,
    poisson_cdf,
    regularized_gamma,
    two_sided_p,
)
from coordinator.stats.funnel import exact_limits
from coordinator.stats.intervals import garwood, indirect_standardisation, wilson
from coordinator.stats.ranks import (
    benjamini_hochberg,
    deciles,
    mid_rank_percentiles,
    shown_percentile,
)

SIZES = [1, 2, 7, 25, 143, 1000, 12_345, 100_000, 1_000_000]
LEVELS = [("low95", 0.025), ("high95", 0.975), ("low998", 0.001), ("high998", 0.999)]
THETAS = [1e-4, 0.003, 0.05, 0.3, 0.5, 0.9, 0.997]


def test_constants_are_the_exact_normal_quantiles() -> None:
    assert abs(Z95 - stats.norm.ppf(0.975)) <= 1e-15
    assert abs(Z998 - stats.norm.ppf(0.999)) <= 1e-15


@pytest.mark.parametrize("n", SIZES)
def test_binomial_cdf_agrees_with_scipy(n: int) -> None:
    for theta in THETAS:
        cdf = binomial_cdf(n, theta)
        mean, sd = n * theta, math.sqrt(n * theta * (1 - theta))
        r = np.unique(np.clip(np.round(mean + sd * np.linspace(-6, 6, 41)), 0, n)).astype(int)
        assert [cdf.at(x) for x in r] == pytest.approx(stats.binom.cdf(r, n, theta), abs=1e-12)
        assert [cdf.upper_tail(x) for x in r] == pytest.approx(
            stats.binom.sf(r - 1, n, theta), rel=1e-9, abs=1e-300
        )


@pytest.mark.parametrize("mean", [1e-3, 0.4, 3.0, 17.5, 400.0, 25_000.0])
def test_poisson_cdf_agrees_with_scipy(mean: float) -> None:
    cdf = poisson_cdf(mean)
    r = np.unique(np.clip(np.round(mean + math.sqrt(mean) * np.linspace(-6, 6, 41)), 0, None))
    assert [cdf.at(x) for x in r] == pytest.approx(stats.poisson.cdf(r, mean), abs=1e-12)


def test_poisson_cdf_of_two_million_against_fifty_digit_arithmetic() -> None:
    # At this size scipy's own gammaincc is 2.6e-10 off in the upper tail (P(X <= 2,006,788)
    # = 0.99999919711173..., scipy gives ...9738), so the referee is the distribution summed
    # in 50-digit decimals over +/- 14 SD, which holds all but 1e-40 of it.
    mean = 2_000_000
    first, last = mean - 14 * 1415, mean + 14 * 1415
    cdf = poisson_cdf(float(mean))
    with localcontext() as context:
        context.prec = 50
        relative = [Decimal(1)]
        for r in range(first + 1, last + 1):
            relative.append(relative[-1] * mean / r)
        total = sum(relative)
        for x in (mean - 3 * 1414, mean, mean + 4788, mean + 6788):
            exact = float(sum(relative[: x - first + 1]) / total)
            assert cdf.at(x) == pytest.approx(exact, abs=1e-13)


@pytest.mark.parametrize("kind", ["proportion", "rate"])
def test_exact_limits_agree_with_scipy_across_sizes(kind: str) -> None:
    distribution = Distribution.BINOMIAL if kind == "proportion" else Distribution.POISSON
    for n in SIZES:
        for theta in [*THETAS, 0.0, *([1.0] if kind == "proportion" else [2.5])]:
            got = exact_limits(distribution, n, theta)
            for name, p in LEVELS:
                want = exact_limit(kind, n, theta, p)
                assert close(getattr(got, name), want), (kind, n, theta, name)


def test_binomial_limit_by_hand_for_25_against_90_percent() -> None:
    # Binomial(25, 0.9): P(X <= 24) = 1 - 0.9^25, so the 99.9% point is r = 25 with
    # alpha = (1 - 0.999) / 0.9^25 (S6): 25 of 25 lies above that limit.
    high = exact_limits(Distribution.BINOMIAL, 25, 0.9).high998
    assert high == pytest.approx((25 - 0.001 / 0.9**25) / 25, rel=1e-12)
    assert high < 1.0


@pytest.mark.parametrize("a", [0.5, 1.0, 2.0, 9.0, 10.0, 11.0, 250.0, 1e4, 3e5])
def test_gamma_agrees_with_scipy(a: float) -> None:
    for x in a * np.array([0.01, 0.5, 0.9, 1.0, 1.1, 2.0, 5.0]):
        lower, upper = regularized_gamma(a, float(x))
        assert lower == pytest.approx(special.gammainc(a, x), rel=1e-10, abs=1e-300)
        assert upper == pytest.approx(special.gammaincc(a, x), rel=1e-10, abs=1e-300)
    for p in (0.001, 0.025, 0.5, 0.975, 0.999):
        assert close(gamma_quantile(a, p), float(stats.chi2.ppf(p, 2 * a)) / 2)


def test_two_sided_p_agrees_with_scipy() -> None:
    for z in (-40.0, -8.0, -3.0, -1.0, 0.0, 0.3, 2.5, 9.0):
        assert two_sided_p(z) == pytest.approx(2 * stats.norm.sf(abs(z)), rel=1e-12, abs=1e-300)


def test_wilson_agrees_with_scipy() -> None:
    rng = np.random.default_rng(7)
    for n in [1, 2, 5, 25, 400, 90_000]:
        for x in {0, n, *rng.integers(0, n + 1, 5).tolist()}:
            ci = stats.binomtest(int(x), n).proportion_ci(0.95, method="wilson")
            low, high = wilson(x, n)
            assert close(low, ci.low) and close(high, ci.high), (x, n)


def test_garwood_agrees_with_chi2() -> None:
    for x in [0, 1, 2, 9, 10, 57, 1234, 250_000]:
        for n in [100.0, 5432.0]:
            low, high = garwood(x, n)
            want_low = 0.0 if x == 0 else stats.chi2.ppf(0.025, 2 * x) / 2 / n
            assert close(low, want_low) and close(high, stats.chi2.ppf(0.975, 2 * x + 2) / 2 / n)


def test_garwood_quantiles_give_funnelplotr_published_poisson_limits() -> None:
    # FunnelPlotR's own numbers (nhs-r-community/FunnelPlotR,
    # tests/testthat/test-poisson_limits.R): limits of a standardised ratio about a target
    # of 1 at expected counts 15, 20 and 30, printed to 7 significant digits. They are
    # Garwood's chi-square quantiles at x = E, divided by E: chi2(p; 2E) / 2E below and
    # chi2(1 - p; 2E + 2) / 2E above, which is S16's formula at 95% and the same
    # quantiles at 99.8%.
    published = {
        15: (0.5596924, 1.649348, 0.3862650, 2.082907),
        20: (0.6108260, 1.544419, 0.4479107, 1.902094),
        30: (0.6746958, 1.427562, 0.5289724, 1.702771),
    }
    for e, (low95, high95, low998, high998) in published.items():
        assert garwood(e, e) == pytest.approx((low95, high95), abs=5e-7)
        assert gamma_quantile(e, 0.001) / e == pytest.approx(low998, abs=5e-8)
        assert gamma_quantile(e + 1, 0.999) / e == pytest.approx(high998, abs=5e-7)


def test_indirect_standardisation_exact_below_ten_and_byar_from_ten() -> None:
    # Two bands (say under 65 and 65+): pooled band rates, E = sum n_k r_k, O / E.
    num = np.array([[2.0, 5.0], [30.0, 60.0], [8.0, 0.0]])
    den = np.array([[100.0, 50.0], [1000.0, 400.0], [300.0, 10.0]])
    got = indirect_standardisation(num, den)
    rates = num.sum(axis=0) / den.sum(axis=0)
    expected = den @ rates
    assert got.expected == pytest.approx(expected, rel=1e-12)
    assert got.ratio == pytest.approx(num.sum(axis=1) / expected, rel=1e-12)
    # O = 7 and 8 (< 10): exact, Garwood on O divided by E.
    for i in (0, 2):
        o, e = num[i].sum(), expected[i]
        assert close(got.low[i], stats.chi2.ppf(0.025, 2 * o) / 2 / e)
        assert close(got.high[i], stats.chi2.ppf(0.975, 2 * o + 2) / 2 / e)
    # O = 90: Byar, as PHEindicatormethods R/Byars.R writes it.
    o, e, z = 90.0, expected[1], stats.norm.ppf(0.975)
    assert close(got.low[1], o * (1 - 1 / (9 * o) - z / (3 * math.sqrt(o))) ** 3 / e)
    high = (o + 1) * (1 - 1 / (9 * (o + 1)) + z / (3 * math.sqrt(o + 1))) ** 3
    assert close(got.high[1], high / e)


def test_benjamini_hochberg_agrees_with_scipy() -> None:
    rng = np.random.default_rng(3)
    for size in [1, 2, 10, 500]:
        p = rng.random(size) ** 3
        p[: size // 3] = p[0]  # ties
        want = stats.false_discovery_control(p, method="bh")
        assert all(close(a, b) for a, b in zip(benjamini_hochberg(p), want, strict=True))
    assert len(benjamini_hochberg(np.array([]))) == 0


def test_percentiles_agree_with_scipy_and_deciles_follow() -> None:
    rng = np.random.default_rng(11)
    values = rng.integers(0, 20, 97).astype(float)  # plenty of ties
    got = mid_rank_percentiles(values)
    want = [stats.percentileofscore(values, v, kind="mean") for v in values]
    assert all(close(a, b) for a, b in zip(got, want, strict=True))
    assert list(deciles(got)) == [min(math.floor(p / 10) + 1, 10) for p in want]
    assert deciles(np.array([0.0, 9.999, 10.0, 99.9, 100.0])).tolist() == [1, 1, 2, 10, 10]


def test_shown_percentile_rounds_half_up_within_1_and_99() -> None:
    assert [shown_percentile(p) for p in (0.4, 2.5, 3.5, 50.0, 99.5, 100.0)] == [
        1,
        3,
        4,
        50,
        99,
        99,
    ]
