"""A practice's own report: where it stands, its funnels, its most alike peers, its locality.

It names that practice only: other practices are unlabelled dots, and its most alike
peers are "Peer A", "Peer B"... unless the comparison says the group agreed to be named.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any

from markupsafe import Markup

from coordinator.comparison_store import IndicatorTrend
from coordinator.comparisons import (
    CATALOGUE,
    SKILL_MIX,
    Comparison,
    PracticeValue,
)
from coordinator.reports import charts
from coordinator.reports.history import policy_effects, quality_notes, trend_rows
from coordinator.reports.sections import (
    Cell,
    common_context,
    environment,
    funnel_chart,
    group_cell,
    profile_rows,
    pyramid,
    skill_mix_chart,
    strip,
    unadjusted,
)
from coordinator.reports.trend_chart import trend_legend
from coordinator.reports.wording import (
    counts,
    direction_words,
    ordinal,
    spread_words,
    standardised_words,
    verdict,
)


def _summary_rows(comparison: Comparison, practice_id: str) -> list[dict[str, Any]]:
    rows = []
    for ic in comparison.indicators.values():
        own = ic.practices[practice_id]
        rows.append(
            {
                "id": ic.spec.id,
                "title": ic.spec.title,
                "direction": direction_words(ic.spec.direction),
                "value": Cell(ic.spec.format(own.value), counts(ic.spec, own)),
                "overall": group_cell(ic, ic.overall),
                "median": ic.spec.format(ic.median),
                "strip": strip(ic, own.value) if ic.overall.published else Markup(""),
                "percentile": ordinal(own.percentile),
                "verdict": verdict(ic.spec, own, overdispersed=unadjusted(ic)),
            }
        )
    return rows


def _peer_section(comparison: Comparison, practice_id: str) -> dict[str, Any]:
    group = comparison.peers(practice_id)
    if group is None:
        if comparison.peer_groups:
            why = (
                "your practice's profile (age, sex and deprivation counts, list size) was "
                "incomplete in this round, so it could not be matched"
            )
        else:
            why = (
                "too few practices in this round have a complete profile to form a peer "
                f"group of at least {comparison.group_minimum}"
            )
        return {"available": False, "why": why, "labels": [], "rows": []}
    labels = [comparison.peer_label(practice_id, pid) for pid in group.peer_ids]
    rows = []
    for indicator, ic in comparison.indicators.items():
        peers: list[PracticeValue] = [ic.practices[pid] for pid in group.peer_ids]
        rows.append(
            {
                "title": ic.spec.title,
                "value": ic.spec.format(ic.practices[practice_id].value),
                "pooled": group_cell(ic, comparison.peer_value(practice_id, indicator)),
                "peers": [ic.spec.format(p.value) for p in peers],
            }
        )
    return {"available": True, "labels": labels, "rows": rows}


def _locality_section(comparison: Comparison, practice_id: str) -> dict[str, Any]:
    locality = comparison.practices[practice_id].locality
    rows = []
    withheld: set[str] = set()  # why, in the group's own words
    for ic in comparison.indicators.values():
        own = next((g for g in ic.localities if g.name == locality), None)
        published = [g for g in ic.localities if g.published and g.value is not None]
        if own is None or not own.published:
            withheld.add(own.note if own is not None else "")
            continue
        rows.append(
            {
                "title": ic.spec.title,
                "locality": group_cell(ic, own),
                "rank": f"{own.rank} of {len(published)}" if own.rank else "—",
                "overall": group_cell(ic, ic.overall),
                "best": ic.spec.direction.higher_is_better is not None,
            }
        )
    return {"name": locality, "rows": rows, "withheld": sorted(n for n in withheld if n)}


def render_practice_report(
    comparison: Comparison,
    practice_id: str,
    *,
    round_label: str | None = None,
    as_of: str | date | None = None,
    trends: Mapping[str, IndicatorTrend] | None = None,
) -> str:
    """One practice's report as a self-contained HTML page.

    ``trends`` (from ``coordinator.comparison_store.trends``) adds each indicator's line
    across rounds over the decile bands; without it the report covers this round only.
    """
    trends = trends or {}
    if practice_id not in comparison.practices:
        raise KeyError(f"no practice {practice_id!r} in this comparison")
    practice = comparison.practices[practice_id]
    funnels = []
    for ic in comparison.indicators.values():
        chart = funnel_chart(ic, practice_id)
        if chart is not None:
            own = ic.practices[practice_id]
            funnels.append(
                {
                    "title": ic.spec.title,
                    "svg": chart,
                    "verdict": verdict(ic.spec, own, overdispersed=unadjusted(ic)),
                    "value": ic.spec.format(own.value),
                    "overall": ic.spec.format(ic.overall.value),
                    "counts": counts(ic.spec, own),
                    "spread": spread_words(ic),
                    "standardised": standardised_words(ic.standardised.get(practice_id)),
                }
            )
    mix = comparison.skill_mix
    return environment.get_template("practice.html").render(
        **common_context(comparison, round_label, as_of),
        practice=practice,
        summary=_summary_rows(comparison, practice_id),
        skill_mix_row=_skill_mix_summary(comparison, practice_id),
        funnels=funnels,
        funnel_legend=charts.funnel_legend(),
        peers=_peer_section(comparison, practice_id),
        peers_named=comparison.peers_named,
        locality=_locality_section(comparison, practice_id),
        skill_mix=skill_mix_chart(comparison, practice_id),
        skill_mix_suppressed=mix is not None
        and any(v is None for v in mix.practices.get(practice_id, {}).values()),
        profile=profile_rows(comparison, practice_id),
        pyramid=pyramid(comparison, practice_id),
        trends=trend_rows(comparison, practice_id, trends),
        trend_legend=trend_legend(practice=True, peers=comparison.peers(practice_id) is not None),
        policy_effects=policy_effects(comparison, practice_id),
        quality=quality_notes(comparison, practice_id, trends),
    )


def _skill_mix_summary(comparison: Comparison, practice_id: str) -> dict[str, Any] | None:
    mix = comparison.skill_mix
    if mix is None or "gp" not in mix.categories:
        return None
    own = mix.practices.get(practice_id, {}).get("gp")
    overall = mix.overall["gp"]
    return {
        "title": CATALOGUE[SKILL_MIX].title,
        "value": "—" if own is None else f"{100 * own:.1f}%",
        "overall": f"{100 * overall.value:.1f}%" if overall.published and overall.value else "—",
    }
