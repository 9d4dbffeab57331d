"""The pieces the reports are built from: the Jinja environment, cells, charts, profile.

The templates (``templates/*.html``) and the stylesheet (``templates/report.css``) are
package data; the stylesheet and every chart are inlined, so a report opens offline from
a file, prints on A4 and needs no script.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

import jinja2
from markupsafe import Markup

from coordinator.comparisons import (
    Comparison,
    IndicatorComparison,
)
from coordinator.localities import GroupValue, Withheld
from coordinator.peers import FEATURE_LABELS, FEATURES
from coordinator.reports import charts
from coordinator.reports.history import policy_sentences
from coordinator.reports.pyramid import age_sex_shares, population_pyramid
from coordinator.reports.wording import (
    denominator_words,
    value_words,
)

SKILL_MIX_LABELS = {
    "gp": "GP",
    "nurse": "Nurse",
    "pharmacist": "Pharmacist",
    "hca": "Healthcare assistant",
    "other": "Other",
}


environment = jinja2.Environment(
    loader=jinja2.PackageLoader("coordinator.reports", "templates"),
    autoescape=jinja2.select_autoescape(["html"]),
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


@dataclass(frozen=True)
class Cell:
    """A formatted value and the small print under it."""

    text: str
    detail: str = ""


def group_cell(comparison: IndicatorComparison, group: GroupValue | None) -> Cell:
    """A comparison group's value for a table cell, or why it is withheld."""
    if group is None:
        return Cell("—", "not available")
    if not group.published:
        if group.withheld is Withheld.COMPLEMENTARY:
            return Cell("Withheld", "with a smaller withheld locality, which it would give away")
        contributed = "practice" if group.contributing == 1 else "practices"
        return Cell("Withheld", f"only {group.contributing} {contributed} contributed")
    return Cell(comparison.spec.format(group.value), f"{group.contributing} practices")


def date_words(as_of: str | date) -> str:
    """A reference date as people write it: ``30 September 2026``."""
    if isinstance(as_of, date):
        return f"{as_of.day} {as_of:%B %Y}"
    return as_of


def common_context(
    comparison: Comparison, round_label: str | None, as_of: str | date | None
) -> dict[str, Any]:
    """What every report template needs: round, date, counts and the disclosure rules."""
    return {
        "round_label": round_label if round_label is not None else comparison.round_label,
        "as_of": date_words(as_of if as_of is not None else comparison.as_of),
        "practice_count": len(comparison.practices),
        "group_minimum": comparison.group_minimum,
        "threshold": comparison.policy.threshold,
        "rounding_base": comparison.policy.rounding_base,
        "min_mean_count": comparison.policy.min_mean_count,
        "notes": comparison.notes,
        "policy_sentences": policy_sentences(comparison.policy),
    }


def funnel_chart(ic: IndicatorComparison, highlight: str) -> Markup | None:
    """An indicator's funnel plot with one practice highlighted, if it has limits."""
    if ic.funnel is None:
        return None
    points = [
        charts.FunnelPoint(v.denominator, v.value, pid == highlight)
        for pid, v in ic.practices.items()
        if v.value is not None and v.denominator
    ]
    if not points:
        return None
    return charts.funnel_plot(
        ic.funnel,
        points,
        title=f"Funnel plot: {ic.spec.title}",
        percent=ic.spec.unit == "%",
        x_label=denominator_words(ic.spec),
        y_label=value_words(ic.spec),
    )


def unadjusted(ic: IndicatorComparison) -> bool:
    """True when practices are overdispersed but the limits were not widened for it."""
    return ic.overdispersed and ic.funnel is not None and not ic.funnel.adjusted


def strip(ic: IndicatorComparison, highlight: float | None) -> Markup:
    """The spread of practice values as a strip, with one value highlighted."""
    return charts.range_strip(
        ic.values,
        lower_quartile=ic.lower_quartile,
        median=ic.median,
        upper_quartile=ic.upper_quartile,
        highlight=highlight,
        label=f"Spread of practice values: {ic.spec.title}",
    )


def skill_mix_chart(comparison: Comparison, practice_id: str) -> Markup | None:
    """Appointments by clinician role as bars: the practice, its peers, all practices."""
    mix = comparison.skill_mix
    if mix is None:
        return None
    labels = [SKILL_MIX_LABELS.get(c, c) for c in mix.categories]
    own = mix.practices.get(practice_id, {})
    bars = [charts.StackedBar("Your practice", [own.get(c) for c in mix.categories])]
    group = comparison.peers(practice_id)
    if group is not None:
        peer_totals = {c: 0.0 for c in mix.categories}
        contributing = 0
        for pid in group.peer_ids:
            shares, total = mix.practices.get(pid, {}), mix.totals.get(pid)
            if not total:
                continue
            contributing += 1
            for c in mix.categories:
                peer_totals[c] += (shares.get(c) or 0.0) * total
        if contributing >= comparison.group_minimum:
            whole = sum(peer_totals.values()) or 1.0
            bars.append(
                charts.StackedBar(
                    "Most alike practices", [peer_totals[c] / whole for c in mix.categories]
                )
            )
    if all(g.published for g in mix.overall.values()):
        bars.append(
            charts.StackedBar("All practices", [mix.overall[c].value for c in mix.categories])
        )
    return charts.stacked_bars(labels, bars, title="Appointments by clinician role")


def profile_rows(comparison: Comparison, practice_id: str) -> list[dict[str, Any]]:
    """The practice profile against all practices, one row per feature."""
    complete = [p for p in comparison.profiles.values() if p.complete]
    if len(complete) < comparison.group_minimum:
        return []
    own = comparison.profiles.get(practice_id)
    rows = []
    for feature in FEATURES:
        attr = "list_size" if feature == "log_list_size" else feature
        values = sorted(float(getattr(p, attr)) for p in complete)
        median = (
            values[len(values) // 2]
            if len(values) % 2
            else sum(values[len(values) // 2 - 1 : len(values) // 2 + 1]) / 2
        )
        mine = getattr(own, attr) if own is not None else None

        def show(v: float | None, attr: str = attr) -> str:
            if v is None:
                return "—"
            if attr == "list_size":
                return f"{v:,.0f}"
            if attr == "mean_imd_decile":
                return f"{v:.1f}"
            return f"{100 * v:.1f}%"

        rows.append(
            {
                "label": FEATURE_LABELS[feature],
                "value": show(mine),
                "median": show(median),
                "strip": charts.range_strip(
                    values,
                    lower_quartile=None,
                    median=median,
                    upper_quartile=None,
                    highlight=None if mine is None else float(mine),
                    label=FEATURE_LABELS[feature],
                ),
            }
        )
    return rows


def pooled_age_sex(comparison: Comparison) -> dict[str, float] | None:
    """All practices' age-sex shares pooled, or None below the group minimum."""
    with_counts = [p.age_sex for p in comparison.profiles.values() if p.age_sex]
    if len(with_counts) < comparison.group_minimum:
        return None  # a pooled pyramid of too few practices is one of them
    pooled: dict[str, float] = {}
    for cells in with_counts:
        for cell, count in cells.items():
            pooled[cell] = pooled.get(cell, 0.0) + count
    return age_sex_shares(pooled)


def pyramid(comparison: Comparison, practice_id: str | None) -> Markup:
    """The population pyramid: a practice against all practices, or all practices alone."""
    reference = pooled_age_sex(comparison)
    if practice_id is None:
        if reference is None:
            return Markup("")
        return population_pyramid(
            reference,
            None,
            title="Registered patients by age and sex, all practices",
            shares_label="All practices",
        )
    profile = comparison.profiles.get(practice_id)
    if profile is None or not profile.age_sex:
        return Markup("")
    return population_pyramid(
        age_sex_shares(profile.age_sex),
        reference,
        title="Registered patients by age and sex: your practice and all practices",
    )
