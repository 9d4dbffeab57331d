"""The commissioners' summary: every indicator's spread, funnels and localities, anonymous."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any

from markupsafe import Markup

from coordinator.comparisons import (
    Comparison,
)
from coordinator.reports.sections import (
    common_context,
    environment,
    funnel_chart,
    group_cell,
    profile_rows,
    pyramid,
    skill_mix_chart,
    strip,
)
from coordinator.reports.wording import (
    direction_words,
    spread_words,
)


def render_summary_report(
    comparison: Comparison,
    *,
    named: bool = False,
    round_label: str | None = None,
    as_of: str | date | None = None,
) -> str:
    """The commissioners' summary: every indicator, its spread, funnels and localities."""
    rows = []
    for ic in comparison.indicators.values():
        no_value = sum(v.value is None for v in ic.practices.values())
        rows.append(
            {
                "title": ic.spec.title,
                "direction": direction_words(ic.spec.direction),
                "overall": group_cell(ic, ic.overall),
                "median": ic.spec.format(ic.median),
                "iqr": f"{ic.spec.format(ic.lower_quartile)} to {ic.spec.format(ic.upper_quartile)}"
                if ic.lower_quartile is not None
                else "—",
                "strip": strip(ic, None) if ic.overall.published else Markup(""),
                "no_value": no_value,
                "outside_95": ic.count_outside(alarm=False) if ic.funnel else None,
                "outside_998": ic.count_outside() if ic.funnel else None,
            }
        )
    funnels = [
        {"title": ic.spec.title, "svg": svg, "spread": spread_words(ic)}
        for ic in comparison.indicators.values()
        if (svg := funnel_chart(ic, None)) is not None
    ]
    practice_rows = []
    if named:
        for pid, info in sorted(comparison.practices.items(), key=lambda kv: kv[1].name):
            practice_rows.append(
                {
                    "name": info.name,
                    "locality": info.locality,
                    "values": [
                        ic.spec.format(ic.practices[pid].value)
                        for ic in comparison.indicators.values()
                    ],
                }
            )
    return environment.get_template("summary.html").render(
        **common_context(comparison, round_label, as_of),
        rows=rows,
        funnels=funnels,
        **locality_table(comparison),
        skill_mix=skill_mix_chart(comparison, None),
        profile=profile_rows(comparison, None),
        pyramid=pyramid(comparison, None),
        named=named,
        titles=[ic.spec.title for ic in comparison.indicators.values()],
        practice_rows=practice_rows,
    )


def locality_table(comparison: Comparison) -> dict[str, Any]:
    """What ``localities_table.html`` shows: every locality's pooled value per indicator."""
    return {
        "localities": sorted({info.locality for info in comparison.practices.values()}),
        "locality_rows": [
            {
                "title": ic.spec.title,
                "cells": {g.name: (group_cell(ic, g), g.rank) for g in ic.localities},
            }
            for ic in comparison.indicators.values()
        ],
        "locality_sizes": locality_sizes(comparison),
    }


def locality_sizes(comparison: Comparison) -> Mapping[str, int]:
    """How many practices each locality has in the round."""
    sizes: dict[str, int] = {}
    for info in comparison.practices.values():
        sizes[info.locality] = sizes.get(info.locality, 0) + 1
    return sizes
