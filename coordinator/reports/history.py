"""What a practice report adds beyond the round itself: trends, the round's policy, data quality.

Every sentence is built from the numbers it sits beside: a trend's rounds and values come
from the stored comparisons (``coordinator.comparison_store``), the policy sentences from
the round's own ``DisclosurePolicy``, and the data-quality notes from the practice's
values and notes in this round.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any

from coordinator.comparison_store import IndicatorTrend
from coordinator.comparisons import SUPPRESSED_COUNT, SUPPRESSED_MEAN, Comparison
from coordinator.localities import Withheld
from coordinator.reports.trend_chart import TrendSeries, month_label, trend_chart
from coordinator.reports.wording import ordinal
from fedpeer.policy import DisclosurePolicy, Noise, Rounding


def _day(day: date) -> str:
    return f"{day.day} {day:%B %Y}"


def policy_sentences(policy: DisclosurePolicy) -> list[str]:
    """The round's disclosure policy in plain words, as it was applied in each practice."""
    if policy.rounding is Rounding.MIDPOINT6:
        rounding = (
            "every other count was replaced by the midpoint of its band of six "
            "(1 to 6 became 3, 7 to 12 became 9)"
        )
    else:
        rounding = f"every other count was rounded to the nearest {policy.rounding_base}"
    sentences = [
        "In each practice, before anything was sent, every count from 1 to "
        f"{policy.threshold} was suppressed, {rounding}, a mean was "
        f"released only when it covered at least {policy.min_mean_count}, and values and "
        "rates were computed from the released counts."
    ]
    if policy.noise is not Noise.NONE:
        kind = (
            "discrete Gaussian" if policy.noise is Noise.DISCRETE_GAUSSIAN else "discrete Laplace"
        )
        sentences.append(
            f"Before rounding, {kind} noise of scale {policy.noise_scale:g} was added to every "
            "count (differential privacy)."
        )
    sentences.append(
        "A comparison group (all practices, a locality, a set of most alike practices) is "
        f"shown only when at least {policy.group_minimum} practices contributed to it."
    )
    if policy.manual_approval:
        sentences.append("Each practice approved its results before they were sent.")
    return sentences


def policy_effects(comparison: Comparison, practice_id: str) -> list[str]:
    """What the round's policy did to this practice's results and comparison groups."""
    titles = {SUPPRESSED_COUNT: [], SUPPRESSED_MEAN: []}
    for ic in comparison.indicators.values():
        note = ic.practices[practice_id].note
        if note in titles:
            titles[note].append(ic.spec.title)
    total = len(comparison.indicators)
    effects = []
    counts, means = titles[SUPPRESSED_COUNT], titles[SUPPRESSED_MEAN]
    if counts:
        effects.append(
            f"A count was suppressed in {len(counts)} of your {total} indicators: "
            f"{', '.join(counts)}."
        )
    if means:
        effects.append(
            f"A mean was withheld (too few patients) in {len(means)} of your {total} "
            f"indicators: {', '.join(means)}."
        )
    if not counts and not means:
        effects.append(f"None of your {total} indicators lost its value to suppression.")
    locality = comparison.practices[practice_id].locality
    why = {
        Withheld.TOO_FEW: f"fewer than {comparison.group_minimum} practices with a value",
        Withheld.COMPLEMENTARY: "with a smaller withheld locality, which it would give away",
    }
    for reason, words in why.items():
        titles = [
            ic.spec.title
            for ic in comparison.indicators.values()
            if any(g.name == locality and g.withheld is reason for g in ic.localities)
        ]
        if titles:
            effects.append(
                f"Your locality's value was withheld ({words}) for {len(titles)} "
                f"{'indicator' if len(titles) == 1 else 'indicators'}: {', '.join(titles)}."
            )
    return effects


def quality_notes(
    comparison: Comparison, practice_id: str, trends: Mapping[str, IndicatorTrend]
) -> list[str]:
    """Data-quality notes: missing values, gaps in trends, missing profile or peers."""
    notes = []
    for indicator, ic in comparison.indicators.items():
        own = ic.practices[practice_id]
        if own.value is None:
            notes.append(f"{ic.spec.title}: no value this round. {own.note}".strip())
        trend = trends.get(indicator)
        if trend is not None and len(trend.rounds) > 1:
            values = trend.values.get(practice_id, ())
            gaps = [
                month_label(p.as_of)
                for p, v in zip(trend.rounds[:-1], values[:-1], strict=True)
                if v is None
            ]
            if gaps:
                notes.append(f"{ic.spec.title}: no value in {', '.join(gaps)}.")
        if trend is not None and trend.earlier_definition is not None:
            notes.append(
                f"{ic.spec.title}: the definition changed after the round of "
                f"{_day(trend.earlier_definition)}; earlier rounds are not joined to this trend."
            )
    profile = comparison.profiles.get(practice_id)
    if profile is None or not profile.complete:
        notes.append(
            "Your practice profile (age, sex, deprivation, list size) was incomplete this "
            "round, so it has no most alike practices."
        )
    mix = comparison.skill_mix
    if mix is not None and any(v is None for v in mix.practices.get(practice_id, {}).values()):
        notes.append("Appointments by clinician role: some roles were suppressed (small counts).")
    return notes


def trend_rows(
    comparison: Comparison, practice_id: str, trends: Mapping[str, IndicatorTrend]
) -> list[dict[str, Any]]:
    """Each indicator's trend for the practice: a chart and what it shows, in words."""
    rows = []
    for indicator, ic in comparison.indicators.items():
        trend = trends.get(indicator)
        if trend is None or not trend.rounds:
            continue
        values = trend.values.get(practice_id, (None,) * len(trend.rounds))
        peers = trend.peer_medians.get(practice_id, (None,) * len(trend.rounds))
        series = TrendSeries(
            [p.as_of for p in trend.rounds],
            [p.deciles for p in trend.rounds],
            practice=values,
            peers=peers,
        )
        shown = [
            f"{month_label(p.as_of)} {ic.spec.format(v)}"
            for p, v in zip(trend.rounds, values, strict=True)
        ]
        rounds = len(trend.rounds)
        span = (
            f"{rounds} rounds with this definition, {_day(trend.rounds[0].as_of)} to "
            f"{_day(trend.rounds[-1].as_of)}."
            if rounds > 1
            else "The first round with this definition: the trend starts here."
        )
        rows.append(
            {
                "title": ic.spec.title,
                "svg": trend_chart(
                    series, title=f"Trend: {ic.spec.title}", percent=ic.spec.unit == "%"
                ),
                "span": span,
                "shown": "; ".join(shown),
                "band": band_words(trend.rounds[-1].deciles, values[-1]),
            }
        )
    return rows


def band_words(cuts: tuple[float, ...], value: float | None) -> str:
    """Where a value sits among the round's decile cut points, in words."""
    if value is None or len(cuts) != 9:
        return ""
    below = sum(c < value for c in cuts)
    if below == 0:
        return "In the latest round your value was at or below the 10th percentile of practices."
    if below == 9:
        return "In the latest round your value was above the 90th percentile of practices."
    return (
        f"In the latest round your value was between the {ordinal(10 * below)} and "
        f"{ordinal(10 * (below + 1))} percentiles of practices."
    )
