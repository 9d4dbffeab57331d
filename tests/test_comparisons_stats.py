"""The round's comparison publishes funnel_table's numbers, q-values across the round, and
never crashes on odd-but-accepted input."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from test_comparisons import frame_of, hand_frame
from test_comparisons_frame import round_frame, row

from coordinator.comparisons import build_comparison
from coordinator.funnel import FunnelStatus, status_of
from coordinator.stats import Distribution
from coordinator.stats.funnel import funnel_table


@pytest.mark.parametrize("overdispersion", [True, False])
def test_practice_values_are_the_funnel_table_on_the_indicator_scale(overdispersion: bool) -> None:
    c = build_comparison(hand_frame(), overdispersion=overdispersion)
    assert c.overdispersion is overdispersion
    ic = c.indicators["antibiotic_items_per_1000"]  # a rate per 1,000
    ids = list(ic.practices)
    num = np.array([ic.practices[p].numerator for p in ids], dtype=float)
    den = np.array([ic.practices[p].denominator for p in ids], dtype=float)
    table = funnel_table(Distribution.POISSON, num, den, overdispersion=overdispersion)
    for i, pid in enumerate(ids):
        v = ic.practices[pid]
        assert v.value == pytest.approx(1000 * table.value[i], rel=1e-12)
        assert (v.ci_low, v.ci_high) == pytest.approx(
            (1000 * table.ci_low[i], 1000 * table.ci_high[i]), rel=1e-12
        )
        assert (v.z, v.p, v.tail) == (table.z[i], table.p[i], table.tail[i])
        assert (v.flag95, v.flag998) == (table.flag95[i], table.flag998[i])
        assert v.status is status_of(v.flag95, v.flag998)
        assert v.percentile == table.percentile[i] and v.decile == table.decile[i]
    assert ic.phi == table.phi and ic.tau2 == table.tau2
    assert ic.funnel is not None and ic.funnel.adjusted is table.adjusted


def test_q_values_are_benjamini_hochberg_over_the_whole_round() -> None:
    c = build_comparison(round_frame())
    tested = [
        (name, pid, v)
        for name, ic in c.indicators.items()
        for pid, v in ic.practices.items()
        if v.p is not None
    ]
    assert len({name for name, _, _ in tested}) > 3
    q = stats.false_discovery_control([v.p for _, _, v in tested], method="bh")
    assert [v.q for _, _, v in tested] == pytest.approx(list(q), rel=1e-9, abs=1e-12)
    untested = [v for ic in c.indicators.values() for v in ic.practices.values() if v.p is None]
    assert untested and all(v.q is None for v in untested)


def test_means_get_percentiles_and_deciles_but_no_funnel_numbers() -> None:
    minutes = build_comparison(hand_frame()).indicators["gp_f2f_minutes"]
    a = minutes.practices["A"]
    assert a.percentile is not None and a.decile is not None
    assert a.z is None and a.ci_low is None and a.flag95 is None


def counts_frame(counts: list[tuple[float | None, float | None]]) -> object:
    rows = [
        row(f"P{i}", f"P{i}", "L", "flu_vacc_65", numerator=x, denominator=n)
        for i, (x, n) in enumerate(counts)
    ]
    rows += [
        row(f"P{i}", f"P{i}", "L", "antibiotic_items_per_1000", numerator=x, denominator=n)
        for i, (x, n) in enumerate(counts)
    ]
    return frame_of(rows)


@pytest.mark.parametrize(
    "counts",
    [
        [(None, None)] * 6,  # all suppressed
        [(3, 10)],  # one practice
        [(0, 0)] * 6,  # no eligible patients anywhere
        [(10, 10), (20, 20), (30, 30), (40, 40), (50, 50)],  # numerator = denominator
        [(0, 10), (0, 20), (0, 30), (0, 40), (0, 50)],  # theta0 = 0
        [(5, 3), (1, 2), (1, 2), (1, 2), (1, 2), (1, 2)],  # inconsistent counts
    ],
)
def test_odd_but_accepted_rounds_do_not_crash(counts: list) -> None:
    c = build_comparison(counts_frame(counts))
    flu = c.indicators["flu_vacc_65"]
    for v in flu.practices.values():
        assert v.value is None or 0 <= v.value <= 1
        assert v.status in set(FunnelStatus)
        assert v.p is None or 0 <= v.p <= 1
    if counts[0] == (5, 3):
        assert flu.practices["P0"].value is None and "inconsistent" in flu.practices["P0"].note
        assert flu.overall.contributing == 5


def test_theta0_of_one_flags_nobody() -> None:
    c = build_comparison(counts_frame([(10, 10), (20, 20), (30, 30), (40, 40), (50, 50)]))
    flu = c.indicators["flu_vacc_65"]
    assert flu.overall.value == 1.0 and flu.tau2 == 0.0
    assert all(v.status is FunnelStatus.WITHIN and v.p == 1.0 for v in flu.practices.values())
    assert not math.isnan(flu.phi)
