"""The commissioners' summary: group-level results only, never a practice's own value.

Each indicator shows the pooled value of all practices, how many practices contributed,
how many had no value and how many were outside the funnel limits; then each locality's
pooled value, the pooled value across rounds, appointments by role and the population
pyramid of all practices together. Quartiles, medians, strips, funnels with a dot per
practice and decile bands are left out: each of them is, or can be, one practice's value.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

from coordinator.comparison_store import IndicatorTrend
from coordinator.comparisons import Comparison
from coordinator.reports.sections import (
    SKILL_MIX_LABELS,
    common_context,
    environment,
    group_cell,
    pyramid,
)
from coordinator.reports.trend_chart import TrendSeries, month_label, trend_chart, trend_legend
from coordinator.reports.wording import direction_words


def _overall_trend(trend: IndicatorTrend | None, spec: Any) -> dict[str, Any] | None:
    if trend is None or len(trend.rounds) < 2:
        return None
    series = TrendSeries(
        [p.as_of for p in trend.rounds],
        [()] * len(trend.rounds),
        overall=[p.overall for p in trend.rounds],
    )
    return {
        "title": spec.title,
        "svg": trend_chart(
            series, title=f"All practices across rounds: {spec.title}", percent=spec.unit == "%"
        ),
        "shown": "; ".join(
            f"{month_label(p.as_of)} {spec.format(p.overall)}" for p in trend.rounds
        ),
    }


def render_commissioner_summary(
    comparison: Comparison, *, trends: Mapping[str, IndicatorTrend] | None = None
) -> str:
    """The commissioners' summary of a round as a self-contained HTML page."""
    trends = trends or {}
    rows = [
        {
            "title": ic.spec.title,
            "direction": direction_words(ic.spec.direction),
            "overall": group_cell(ic, ic.overall),
            "contributing": ic.overall.contributing,
            "no_value": sum(v.value is None for v in ic.practices.values()),
            "outside_95": ic.count_outside(alarm=False) if ic.funnel else None,
            "outside_998": ic.count_outside() if ic.funnel else None,
        }
        for ic in comparison.indicators.values()
    ]
    trend_charts = [
        t
        for indicator, ic in comparison.indicators.items()
        if (t := _overall_trend(trends.get(indicator), ic.spec)) is not None
    ]
    return environment.get_template("commissioners.html").render(
        **common_context(comparison, None, None),
        **_locality_table(comparison),
        rows=rows,
        trends=trend_charts,
        trend_legend=trend_legend(practice=False, peers=False, bands=False),
        pyramid=pyramid(comparison, None),
        skill_mix=_skill_mix_overall(comparison),
    )


def _skill_mix_overall(comparison: Comparison) -> list[dict[str, str]]:
    mix = comparison.skill_mix
    if mix is None:
        return []
    return [
        {
            "role": SKILL_MIX_LABELS.get(role, role),
            "share": f"{100 * g.value:.1f}%" if g.published and g.value is not None else "Withheld",
        }
        for role, g in mix.overall.items()
    ]


def _locality_table(comparison: Comparison) -> dict[str, Any]:
    """The localities section: every locality's pooled value per indicator, and its size."""
    return {
        "localities": sorted({info.locality for info in comparison.practices.values()}),
        "locality_rows": [
            {
                "title": ic.spec.title,
                "cells": {g.name: (group_cell(ic, g), g.rank) for g in ic.localities},
            }
            for ic in comparison.indicators.values()
        ],
        "locality_sizes": Counter(info.locality for info in comparison.practices.values()),
    }
