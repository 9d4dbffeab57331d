"""Pooled values, spreads, percentiles, funnel flags and group withholding, by hand."""

from __future__ import annotations

import pandas as pd
import pytest
from test_comparisons_frame import round_frame, row

from coordinator.comparisons import (
    CATALOGUE,
    FRAME_COLUMNS,
    Direction,
    build_comparison,
    percentile_ranks,
)
from coordinator.funnel import FunnelStatus
from coordinator.localities import Contribution, Withheld, group_value, locality_values


def frame_of(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=list(FRAME_COLUMNS))


# Six practices: two localities, North (5) and South (1).
HAND = [
    # id, locality, dna numerator/denominator, minutes count/mean, antibiotic items/registered
    ("A", "North", 50, 1000, 100, 10.0, 600, 1000),
    ("B", "North", 30, 1000, 300, 12.0, 1200, 2000),
    ("C", "North", 100, 1000, 100, 8.0, 500, 1000),
    ("D", "North", 40, 500, 50, 10.0, 250, 500),
    ("E", "North", None, 20, 10, None, 300, 500),
    ("F", "South", 20, 1000, 40, 11.0, 700, 1000),
]


def hand_frame() -> pd.DataFrame:
    rows = []
    for pid, loc, num, den, cnt, mean, items, reg in HAND:
        name = f"Practice {pid}"
        rows.append(
            row(pid, name, loc, "dna_rate", numerator=num, denominator=den, suppressed=num is None)
        )
        rows.append(
            row(pid, name, loc, "gp_f2f_minutes", count=cnt, mean=mean, suppressed=mean is None)
        )
        rows.append(
            row(pid, name, loc, "antibiotic_items_per_1000", numerator=items, denominator=reg)
        )
    return frame_of(rows)


def test_directions_are_data() -> None:
    assert CATALOGUE["dna_rate"].direction is Direction.LOWER_IS_BETTER
    assert CATALOGUE["antibiotic_items_per_1000"].direction is Direction.LOWER_IS_BETTER
    assert CATALOGUE["skill_mix"].direction is Direction.NEITHER
    assert CATALOGUE["flu_vacc_65"].direction is Direction.HIGHER_IS_BETTER
    assert len(CATALOGUE) == 12


def test_pooled_values_by_hand() -> None:
    c = build_comparison(hand_frame())
    dna = c.indicators["dna_rate"]
    # E is suppressed; pooled over A-D and F: 240 / 4500.
    assert dna.overall.value == pytest.approx(240 / 4500)
    assert dna.overall.contributing == 5
    minutes = c.indicators["gp_f2f_minutes"]
    assert minutes.overall.value == pytest.approx((1000 + 3600 + 800 + 500 + 440) / 590)
    abx = c.indicators["antibiotic_items_per_1000"]
    assert abx.overall.value == pytest.approx(1000 * 3550 / 6000)
    assert abx.practices["B"].value == pytest.approx(600)


def test_quartiles_and_percentiles_by_hand() -> None:
    dna = build_comparison(hand_frame()).indicators["dna_rate"]
    # Values: F .02, B .03, A .05, D .08, C .10 -> type 7 quartiles .03, .05, .08.
    assert (dna.lower_quartile, dna.median, dna.upper_quartile) == pytest.approx((0.03, 0.05, 0.08))
    assert dna.practices["F"].percentile == pytest.approx(10)
    assert dna.practices["A"].percentile == pytest.approx(50)
    assert dna.practices["C"].percentile == pytest.approx(90)


def test_percentile_ties_share_the_mid_rank() -> None:
    ranks = percentile_ranks({"a": 1.0, "b": 2.0, "c": 2.0, "d": 3.0})
    assert ranks == {"a": 12.5, "b": 50.0, "c": 50.0, "d": 87.5}


def test_suppressed_practice_has_no_value_and_says_why() -> None:
    dna = build_comparison(hand_frame()).indicators["dna_rate"]
    e = dna.practices["E"]
    assert e.value is None and e.percentile is None
    assert e.status is FunnelStatus.NO_VALUE
    assert "Suppressed" in e.note


def test_missing_practice_row_is_noted() -> None:
    frame = hand_frame()
    frame = frame[~((frame["practice_id"] == "A") & (frame["indicator"] == "dna_rate"))]
    assert build_comparison(frame).indicators["dna_rate"].practices["A"].note == "Not submitted."


def test_funnel_flags_by_hand() -> None:
    dna = build_comparison(hand_frame(), overdispersion=False).indicators["dna_rate"]
    # Exact limits (S6). Target 5.3%; C's 10% of 1,000 is far above, F's 2% of 1,000
    # far below; A within.
    assert dna.practices["C"].status is FunnelStatus.ABOVE_998
    assert dna.practices["F"].status is FunnelStatus.BELOW_998
    assert dna.practices["A"].status is FunnelStatus.WITHIN
    assert dna.count_outside() == 3  # C, F and B (3% of 1,000)
    assert build_comparison(hand_frame()).indicators["gp_f2f_minutes"].funnel is None


def test_locality_below_minimum_is_withheld() -> None:
    dna = build_comparison(hand_frame()).indicators["dna_rate"]
    localities = {g.name: g for g in dna.localities}
    assert not localities["South"].published
    assert localities["South"].value is None
    assert "fewer than the minimum of 5" in localities["South"].note
    # North has 5 practices but E is suppressed: 4 contributed, so withheld too.
    assert localities["North"].contributing == 4 and not localities["North"].published


def test_all_practices_below_minimum_withholds_everything() -> None:
    frame = hand_frame()
    frame = frame[frame["practice_id"].isin(["A", "B", "C", "D"])]
    dna = build_comparison(frame).indicators["dna_rate"]
    assert not dna.overall.published and dna.overall.value is None
    assert dna.median is None
    assert all(p.percentile is None for p in dna.practices.values())
    assert dna.funnel is None


def test_group_minimum_can_be_raised() -> None:
    dna = build_comparison(hand_frame(), group_minimum=6).indicators["dna_rate"]
    assert not dna.overall.published


def test_group_value_pools_and_withholds() -> None:
    parts = [Contribution(str(i), 1, 4) for i in range(5)]
    assert group_value("g", parts, scale=1, group_minimum=5).value == pytest.approx(0.25)
    assert not group_value("g", parts[:4], scale=1, group_minimum=5).published
    # The same practice twice still counts once towards the minimum.
    assert not group_value("g", parts[:4] + parts[:1], scale=1, group_minimum=5).published


def test_realistic_round() -> None:
    c = build_comparison(round_frame(), round_label="2026 Q3", as_of="2026-09-30")
    assert set(c.indicators) == set(CATALOGUE) - {"skill_mix"}
    assert c.indicators["asthma_review"].overall.contributing == 19
    assert "Suppressed" in c.indicators["asthma_review"].practices["P020"].note
    localities = {g.name: g for g in c.indicators["flu_vacc_65"].localities}
    assert not localities["West"].published  # three practices
    assert not localities["North"].published  # five, withheld with West: see below
    assert sorted(g.rank for g in localities.values() if g.published) == [1, 2]
    mix = c.skill_mix
    assert mix is not None
    assert sum(g.value for g in mix.overall.values()) == pytest.approx(1)
    assert sum(v for v in mix.practices["P001"].values() if v is not None) == pytest.approx(1)


def test_overdispersion_is_on_by_default_widens_limits_and_flags_fewer() -> None:
    plain = build_comparison(round_frame(), overdispersion=False).indicators["seen_within_14d"]
    wide = build_comparison(round_frame()).indicators["seen_within_14d"]
    assert plain.phi > 1 and plain.tau2 > 0 and plain.overdispersed
    assert plain.funnel is not None and not plain.funnel.adjusted
    assert wide.funnel is not None and wide.funnel.adjusted
    assert wide.funnel.tau2 == pytest.approx(plain.tau2)
    assert wide.count_outside() < plain.count_outside()


def test_study_indicator_kind_is_inferred() -> None:
    rows = [
        row(p, p, "L", "study_rate", numerator=10 * i, denominator=1000, value=10 * i)
        for i, p in enumerate("ABCDE", start=1)
    ]
    c = build_comparison(frame_of(rows))
    assert c.indicators["study_rate"].spec.per == 1000
    assert c.indicators["study_rate"].overall.value == pytest.approx(30)


def test_frame_without_columns_is_refused() -> None:
    with pytest.raises(ValueError, match="lacks columns"):
        build_comparison(pd.DataFrame({"practice_id": ["A"]}))


def test_store_dtypes_give_the_same_comparison() -> None:
    plain = round_frame()
    stored = plain.copy()
    for name in ("numerator", "denominator", "count"):
        stored[name] = stored[name].astype("Float64").astype("Int64")
    stored.loc[stored["practice_id"] == "P001", "locality"] = None
    a, b = build_comparison(plain), build_comparison(stored)
    for indicator, ic in a.indicators.items():
        assert b.indicators[indicator].practices["P002"] == ic.practices["P002"]
    assert b.practices["P001"].locality == "No locality"


def test_a_small_withheld_locality_cannot_be_worked_out_by_subtraction() -> None:
    # Three localities of 6, 8 and 2 practices: with only the smallest withheld, the
    # all-practice value and the other two would give it away, so the next smallest goes too.
    locality_of = {
        f"{name}{i}": name for name, n in (("N", 6), ("M", 8), ("S", 2)) for i in range(n)
    }
    parts = [Contribution(pid, 1, 10) for pid in locality_of]
    groups = {
        g.name: g
        for g in locality_values(
            parts, locality_of, scale=1, group_minimum=5, higher_is_better=True
        )
    }
    assert not groups["S"].published and "fewer than the minimum" in groups["S"].note
    assert not groups["N"].published and "cannot be worked out" in groups["N"].note
    assert (groups["S"].withheld, groups["N"].withheld) == (
        Withheld.TOO_FEW,
        Withheld.COMPLEMENTARY,
    )
    assert groups["M"].published and groups["M"].value == pytest.approx(0.1)
    # Withheld localities that already reach the minimum together need no company.
    big = {**locality_of, **{f"T{i}": "T" for i in range(3)}}
    parts = [Contribution(pid, 1, 10) for pid in big]
    groups = {
        g.name: g
        for g in locality_values(parts, big, scale=1, group_minimum=5, higher_is_better=True)
    }
    assert [n for n, g in sorted(groups.items()) if not g.published] == ["S", "T"]
