"""The funnel core (STATS.md S1-S16) against an independent computation on generated tables.

``_stats_reference`` recomputes every column from the printed formulas with scipy; the
two must agree to 1e-9 x max(1, |v|), and on every flag and decile.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from _stats_reference import close, funnel, phi_tau2
from hypothesis import given, settings
from hypothesis import strategies as st

from coordinator.stats import Distribution, Flag
from coordinator.stats.funnel import COLUMNS, FunnelTable, dispersion, funnel_table

KINDS = {"proportion": Distribution.BINOMIAL, "rate": Distribution.POISSON}
EXACT_COLUMNS = ("flag95", "flag998", "decile")


def assert_agrees(kind: str, num: np.ndarray, den: np.ndarray, *, overdispersion: bool) -> None:
    """Every cell of funnel_table equals the reference's (empty where it is empty)."""
    table = funnel_table(KINDS[kind], num, den, overdispersion=overdispersion)
    expected = funnel(kind, list(num), list(den), overdispersion=overdispersion)
    for i, row in enumerate(expected):
        assert bool(table.valued[i]) == row["valued"]
        for name in COLUMNS:
            got = _cell(table, name, i)
            want = row.get(name)
            if want is None:
                assert got is None, (name, i, got)
            elif name in EXACT_COLUMNS:
                assert got == want, (name, i, got, want)
            else:
                assert got is not None and close(got, want), (name, i, got, want)


def _cell(table: FunnelTable, name: str, i: int) -> object:
    column = getattr(table, name)
    value = column[i] if isinstance(column, np.ndarray) else column
    if not table.valued[i] or value is None:
        return None
    if isinstance(value, Flag):
        return str(value)
    if math.isnan(value):
        return None
    return int(value) if name == "decile" else float(value)


def generated_table(rng: np.random.Generator, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """A round's practices: mixed sizes, overdispersed truth, some suppressed or empty."""
    count = int(rng.integers(1, 80))
    size = rng.choice([20, 300, 5000, 100_000])
    den = rng.integers(0, size, count).astype(float)
    if kind == "proportion":
        truth = rng.beta(*rng.choice([[2, 8], [30, 3], [50, 50], [1, 200]]), count)
        num = rng.binomial(den.astype(int), truth).astype(float)
    else:
        truth = rng.gamma(rng.choice([2.0, 20.0]), rng.choice([0.001, 0.05, 1.0]), count)
        num = rng.poisson(truth * den).astype(float)
    hidden = rng.random(count) < 0.1  # suppressed cells are empty
    num[hidden & (rng.random(count) < 0.5)] = np.nan
    den[hidden & (rng.random(count) >= 0.5)] = np.nan
    return num, den


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("overdispersion", [True, False])
def test_generated_tables_agree_with_scipy(kind: str, overdispersion: bool) -> None:
    rng = np.random.default_rng(20261202)
    for _ in range(15):
        num, den = generated_table(rng, kind)
        assert_agrees(kind, num, den, overdispersion=overdispersion)


pairs = st.lists(
    st.tuples(st.integers(0, 60), st.integers(0, 60)).map(lambda t: (min(t), max(t))),
    min_size=0,
    max_size=25,
)


@settings(derandomize=True, max_examples=100, deadline=None)
@given(pairs, st.booleans())
def test_small_whole_tables_agree_with_scipy(rows: list[tuple[int, int]], on: bool) -> None:
    # Small counts hit the edges: 0 of n, n of n, zero denominators, ties, theta0 0 or 1.
    num = np.array([float(x) for x, _ in rows])
    den = np.array([float(n) for _, n in rows])
    for kind in KINDS:
        assert_agrees(kind, num, den, overdispersion=on)


@pytest.mark.parametrize(
    "num, den",
    [
        ([], []),  # nothing submitted
        ([math.nan] * 6, [50.0] * 6),  # all suppressed
        ([3.0], [10.0]),  # one practice
        ([0.0] * 7, [0.0] * 7),  # every denominator zero
        ([10.0, 20, 30, 40, 50, 60], [10.0, 20, 30, 40, 50, 60]),  # theta0 = 1
        ([0.0] * 6, [10.0, 20, 30, 40, 50, 60]),  # theta0 = 0
        ([5.0, 5, 5, 5, 5, 6], [5.0, 5, 5, 5, 5, 6]),  # numerator = denominator throughout
    ],
)
def test_odd_but_accepted_tables_do_not_crash(num: list[float], den: list[float]) -> None:
    for kind in KINDS:
        assert_agrees(kind, np.array(num), np.array(den), overdispersion=True)


def test_fewer_than_five_practices_get_value_and_interval_only() -> None:
    # S3: the group minimum applies before theta0, limits, ranks and q.
    table = funnel_table(Distribution.BINOMIAL, np.array([1.0, 2, 3, 4]), np.array([10.0] * 4))
    assert np.all(np.isfinite(table.value)) and np.all(np.isfinite(table.ci_low))
    assert math.isnan(table.theta0) and math.isnan(table.phi)
    assert np.all(np.isnan(table.high95)) and np.all(np.isnan(table.percentile))
    assert all(f is None for f in table.flag95)


def test_dispersion_matches_the_formulas_for_known_numbers() -> None:
    # z = -2, -1, 0, 1, 2, 10: type-7 10th/90th percentiles are -1.5 and 6; phi is the mean
    # of 2.25, 1, 0, 1, 4, 36; tau2 uses w = 4n.
    z = np.array([-2.0, -1, 0, 1, 2, 10])
    n = np.array([100.0, 200, 300, 400, 500, 600])
    got = dispersion(z, n)
    assert got.phi == pytest.approx((2.25 + 1 + 0 + 1 + 4 + 36) / 6, rel=1e-12)
    w = 4 * n
    tau2 = (6 * got.phi - 5) / (w.sum() - (w**2).sum() / w.sum())
    assert got.tau2 == pytest.approx(tau2, rel=1e-12)
    assert (got.phi, got.tau2) == pytest.approx(phi_tau2(list(z), list(n)), rel=1e-12)


def test_no_tau2_when_phi_is_within_chance() -> None:
    # S10: I x phi <= I - 1 gives tau2 = 0, and the published limits are the exact ones.
    assert dispersion(np.array([-0.5, 0.0, 0.5, 0.1, -0.1]), np.full(5, 100.0)).tau2 == 0.0


def test_funnelplotr_test_table_widens_under_overdispersion() -> None:
    # FunnelPlotR's tests (nhs-r-community/FunnelPlotR, tests/testthat/test-funnel_plot.R)
    # use these six groups and check that the exact lower 95% limit of the fifth lies above
    # its overdispersion-adjusted one. Their test asserts no numbers beyond that; the
    # numbers here are checked against scipy in the reference.
    num = np.array([100.0, 150, 180, 80, 120, 225])
    den = np.array([108.0, 112, 165, 95, 100, 220])
    table = funnel_table(Distribution.POISSON, num, den)
    assert table.tau2 > 0 and table.adjusted
    assert table.exact_low95[4] > table.low95[4]
    assert_agrees("rate", num, den, overdispersion=True)


def test_mid_rank_percentiles_and_deciles_by_hand() -> None:
    # Values 0.1, 0.2, 0.2, 0.3, 0.4: the tied pair sits at (1 + 2/2) / 5 = 40%.
    table = funnel_table(Distribution.BINOMIAL, np.array([1.0, 2, 2, 3, 4]), np.array([10.0] * 5))
    assert list(table.percentile) == pytest.approx([10, 40, 40, 70, 90])
    assert list(table.decile) == [2, 5, 5, 8, 10]
