"""Trend charts and their words: what each sentence says is what the numbers beside it say."""

from __future__ import annotations

import re
from datetime import date

import numpy as np
import pytest
from test_comparisons_frame import round_frame

from coordinator.comparison_store import decile_cuts, peer_median
from coordinator.comparisons import build_comparison
from coordinator.reports.history import band_words
from coordinator.reports.palette import VERMILION
from coordinator.reports.trend_chart import TrendSeries, trend_chart
from coordinator.reports.workshop import locality_labels, practice_letter

CUTS = tuple(float(x) for x in range(10, 100, 10))  # 10, 20, ... 90


@pytest.mark.parametrize(
    ("value", "words"),
    [
        (5.0, "at or below the 10th percentile"),
        (10.0, "at or below the 10th percentile"),
        (10.5, "between the 10th and 20th percentiles"),
        (55.0, "between the 50th and 60th percentiles"),
        (90.0, "between the 80th and 90th percentiles"),
        (95.0, "above the 90th percentile"),
    ],
)
def test_band_words_follow_the_cut_points(value: float, words: str) -> None:
    assert words in band_words(CUTS, value)


def test_no_band_words_without_a_value_or_cut_points() -> None:
    assert band_words(CUTS, None) == ""
    assert band_words((), 0.5) == ""


def test_decile_cuts_are_the_practice_values_percentiles_and_withheld_for_small_groups() -> None:
    comparison = build_comparison(round_frame())
    ic = next(iter(comparison.indicators.values()))
    assert decile_cuts(ic) == pytest.approx(tuple(np.percentile(ic.values, range(10, 100, 10))))
    small = build_comparison(round_frame(), group_minimum=len(comparison.practices) + 1)
    assert decile_cuts(next(iter(small.indicators.values()))) == ()


def test_peer_median_is_withheld_below_the_group_minimum() -> None:
    comparison = build_comparison(round_frame())
    pid = next(p for p in comparison.practices if comparison.peers(p) is not None)
    ic = next(iter(comparison.indicators.values()))
    values = [ic.practices[q].value for q in comparison.peers(pid).peer_ids]
    known = [v for v in values if v is not None]
    expected = float(np.median(known)) if len(known) >= comparison.group_minimum else None
    assert peer_median(comparison, ic, pid) == expected
    strict = build_comparison(round_frame(), group_minimum=len(known) + 1)
    assert peer_median(strict, next(iter(strict.indicators.values())), pid) is None


def test_trend_chart_draws_a_point_per_value_and_gaps_for_missing_ones() -> None:
    days = [date(2026, 7, 31), date(2026, 8, 31), date(2026, 9, 30)]
    svg = trend_chart(
        TrendSeries(days, [CUTS, (), CUTS], practice=[0.4, None, 0.5], peers=[0.45, 0.5, None]),
        title="Trend: <HbA1c>",
        percent=True,
    )
    assert "&lt;HbA1c&gt;" in svg and "<HbA1c>" not in svg
    assert svg.count(f'fill="{VERMILION}"') == 2  # two values, two dots
    # No line joins across the round without a value: the practice has no polyline.
    assert not re.search(rf'<polyline[^>]*stroke="{VERMILION}"', svg)
    assert [m for m in re.findall(r">(\w{3} 2026)</text>", svg)] == [
        "Jul 2026",
        "Aug 2026",
        "Sep 2026",
    ]


def test_lettered_practices_follow_practice_id_order() -> None:
    comparison = build_comparison(round_frame())
    locality = next(iter(comparison.practices.values())).locality
    lettered = locality_labels(comparison, locality, named=False)
    assert list(lettered) == sorted(lettered)
    assert list(lettered.values()) == [practice_letter(i) for i in range(len(lettered))]
    named = locality_labels(comparison, locality, named=True)
    assert list(named.values()) == [comparison.practices[p].name for p in lettered]
