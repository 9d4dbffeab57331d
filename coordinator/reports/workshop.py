"""A locality's workshop pack: slides with the locality's practices side by side.

Practices are named only where the locality has agreed (``named``); otherwise each is
``Practice A``, ``Practice B``... in the order of their practice ids, the same on every
slide. The pack shows the locality's own practices only, against the pooled value of
all practices and of the locality (each withheld below the round's group minimum), and,
for an indicator the round standardised for age and sex, each practice's observed over
expected ratio with its 95% interval (STATS.md S17).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from coordinator.comparison_store import IndicatorTrend
from coordinator.comparisons import Comparison, StandardisedRatio
from coordinator.peers import peer_label
from coordinator.reports.sections import common_context, environment, group_cell, unadjusted
from coordinator.reports.trend_chart import Bar, side_by_side
from coordinator.reports.wording import counts, direction_words, verdict


def practice_letter(position: int) -> str:
    """``Practice A``, ``Practice B``, ... ``Practice AA``: the peers' lettering, renamed."""
    return "Practice " + peer_label(position).removeprefix("Peer ")


def locality_labels(comparison: Comparison, locality: str, *, named: bool) -> dict[str, str]:
    """How each of a locality's practices appears in its pack, in practice id order."""
    members = sorted(pid for pid, info in comparison.practices.items() if info.locality == locality)
    if named:
        return {pid: comparison.practices[pid].name for pid in members}
    return {pid: practice_letter(i) for i, pid in enumerate(members)}


def render_locality_slides(
    comparison: Comparison,
    locality: str,
    *,
    named: bool,
    trends: Mapping[str, IndicatorTrend] | None = None,
) -> str:
    """A locality's slide pack as one self-contained HTML page, one slide per section."""
    labels = locality_labels(comparison, locality, named=named)
    if not labels:
        raise KeyError(f"no practice in locality {locality!r} in this comparison")
    trends = trends or {}
    slides = []
    for indicator, ic in comparison.indicators.items():
        bars = [
            Bar(
                label,
                (v := ic.practices[pid]).value,
                ic.spec.format(v.value) if v.value is not None else "No value",
            )
            for pid, label in labels.items()
        ]
        own = next((g for g in ic.localities if g.name == locality), None)
        rows = [
            {
                "label": label,
                "value": ic.spec.format(ic.practices[pid].value),
                "counts": counts(ic.spec, ic.practices[pid]),
                "verdict": verdict(ic.spec, ic.practices[pid], overdispersed=unadjusted(ic)),
                "standardised": _ratio_text(ic.standardised.get(pid)),
            }
            for pid, label in labels.items()
        ]
        reference = ic.overall.value if ic.overall.published else None
        trend = trends.get(indicator)
        slides.append(
            {
                "title": ic.spec.title,
                "direction": direction_words(ic.spec.direction),
                "chart": side_by_side(
                    bars,
                    reference=reference,
                    reference_label=f"All practices {ic.spec.format(reference)}",
                    title=f"{ic.spec.title}: {locality} practices side by side",
                    percent=ic.spec.unit == "%",
                ),
                "overall": group_cell(ic, ic.overall),
                "locality": group_cell(ic, own),
                "rows": rows,
                "standardised": bool(ic.standardised),
                "trend": _trend_table(trend, labels, ic.spec.format)
                if trend is not None and len(trend.rounds) > 1
                else None,
            }
        )
    return environment.get_template("slides.html").render(
        **common_context(comparison, None, None),
        locality=locality,
        named=named,
        labels=list(labels.values()),
        slides=slides,
    )


def _ratio_text(ratio: StandardisedRatio | None) -> str:
    """O / E with its 95% interval (S17), or an em dash where the practice has none."""
    if ratio is None:
        return "—"
    return f"{ratio.ratio:.2f} ({ratio.low:.2f} to {ratio.high:.2f})"


def _trend_table(
    trend: IndicatorTrend, labels: Mapping[str, str], format_value: Any
) -> dict[str, Any]:
    return {
        "months": [f"{p.as_of:%b %Y}" for p in trend.rounds],
        "rows": [
            {
                "label": label,
                "cells": [
                    format_value(v) for v in trend.values.get(pid, (None,) * len(trend.rounds))
                ],
            }
            for pid, label in labels.items()
        ],
    }
