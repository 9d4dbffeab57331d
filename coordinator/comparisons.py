"""A round's peer comparison, built from the store's frame of released results.

``build_comparison(frame)`` is the whole computation: pure, over a pandas DataFrame with
the columns of ``FRAME_COLUMNS`` (one row per released ``ResultRow`` of each practice),
returning frozen dataclasses that reports and the console only read.

Definitions used throughout:
- A practice's **value** is computed from its released (rounded) counts, never taken from
  elsewhere: numerator / denominator for a proportion, ``per`` times that for a rate, the
  released mean for a mean. A practice whose numerator, denominator or mean was
  suppressed has no value for that indicator, and the reports say so.
- The **all-practice value** is pooled (see ``coordinator.localities``).
- **Quartiles** and the **median** are of practice values (numpy's default, linear
  interpolation between order statistics, i.e. Hyndman-Fan type 7).
- A practice's **percentile** is its mid-rank percentile among practices with a value:
  ``100 * (below + equal / 2) / n``, counting itself among the equal, so the middle
  practice is at 50 whichever way ties fall; its **decile** follows from it (S14).
- Funnel limits, z, p, flags and each practice's 95% interval are
  ``coordinator.stats.funnel.funnel_table`` (STATS.md), with overdispersion allowed for
  unless the round turns it off; q-values are Benjamini-Hochberg over every practice x
  indicator p-value of the round (S15).

- In a round started with reference rates (``fedpeer.standardise``), each standardised
  indicator also gets each practice's **indirectly standardised ratio** (S17): observed
  O = its released numerator, expected E = its released expected count times the rates'
  unit, ratio O / E with its 95% interval (``coordinator.stats.intervals``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any

import numpy as np
import pandas as pd

from coordinator.catalogue import (
    CATALOGUE,
    SKILL_MIX,
    SKILL_MIX_CATEGORIES,
    Direction,
    IndicatorSpec,
    spec_for,
)
from coordinator.funnel import Distribution, FunnelModel, FunnelStatus, status_of
from coordinator.localities import Contribution, GroupValue, group_value, locality_values
from coordinator.peers import DEFAULT_PEER_COUNT, PeerGroup, PracticeProfile, most_alike
from coordinator.peers import practice_profiles as _practice_profiles
from coordinator.stats import Flag
from coordinator.stats.funnel import FunnelTable, funnel_table, valid_rows
from coordinator.stats.intervals import standardised_ratios as stats_standardised_ratios
from coordinator.stats.ranks import benjamini_hochberg, deciles, mid_rank_percentiles
from fedpeer.measures import Kind
from fedpeer.policy import DEFAULT_GROUP_MINIMUM, DisclosurePolicy
from fedpeer.release import PROFILE_PREFIX, TOTAL_CATEGORY
from fedpeer.standardise import (
    ReferenceRates,
    Standardisation,
    expected_indicator,
    standardised_indicator,
)

__all__ = [  # the catalogue is re-exported: comparisons are where callers look for it
    "CATALOGUE",
    "FRAME_COLUMNS",
    "SKILL_MIX",
    "Comparison",
    "Direction",
    "IndicatorComparison",
    "IndicatorSpec",
    "PracticeInfo",
    "PracticeValue",
    "SkillMix",
    "StandardisedRatio",
    "build_comparison",
    "compare_indicator",
    "compare_skill_mix",
    "percentile_ranks",
]

FRAME_COLUMNS = (
    "practice_id",
    "practice_name",
    "locality",
    "indicator",
    "category",
    "numerator",
    "denominator",
    "count",
    "mean",
    "value",
    "suppressed",
)
NO_LOCALITY = "No locality"
SUPPRESSED_COUNT = "Suppressed by disclosure control: a count was too small to release."
SUPPRESSED_MEAN = "Suppressed by disclosure control: too few to release a mean."
INCONSISTENT = "Not compared: the released counts are inconsistent (numerator above denominator)."


@dataclass(frozen=True)
class PracticeInfo:
    """Who a practice is; its name appears only in its own report."""

    practice_id: str
    name: str
    locality: str


@dataclass(frozen=True)
class PracticeValue:
    """One practice's released counts and value for one indicator, and where it stands.

    For a mean, ``numerator`` is count times mean and ``denominator`` the count, so that
    every kind pools the same way. Values and intervals are on the indicator's scale (a
    rate per ``spec.per``); ``percentile`` is unrounded (S14).
    """

    practice_id: str
    numerator: float | None
    denominator: float | None
    value: float | None
    percentile: float | None = None
    status: FunnelStatus = FunnelStatus.NO_VALUE
    note: str = ""  # why there is no value, in plain words
    ci_low: float | None = None  # the practice's own 95% interval (S16)
    ci_high: float | None = None
    z: float | None = None  # S12: adjusted for overdispersion when the round allows for it
    p: float | None = None  # two-sided, from z
    q: float | None = None  # Benjamini-Hochberg over the round's p-values (S15)
    flag95: Flag | None = None  # against the published limits (S13)
    flag998: Flag | None = None
    decile: int | None = None  # 1..10 (S14)
    tail: float | None = None  # exact one-sided tail probability under the target (S15)

    @property
    def chance(self) -> float | None:
        """The probability a sentence may claim for a result this far from the target.

        The larger of the exact one-sided tail under the target (``tail``) and the
        one-sided p of S12 (``p / 2``, which allows for the spread between practices when
        the limits do): a claim neither model contradicts.
        """
        if self.tail is None:
            return None
        return self.tail if self.p is None else max(self.tail, self.p / 2)

    def contribution(self) -> Contribution | None:
        """What this practice adds to a pooled group value, if anything."""
        if self.value is None or self.numerator is None or not self.denominator:
            return None
        return Contribution(self.practice_id, self.numerator, self.denominator)


@dataclass(frozen=True)
class StandardisedRatio:
    """A practice's indirectly standardised ratio (S17): observed over expected, 95% interval."""

    observed: float
    expected: float
    ratio: float
    low: float
    high: float


@dataclass(frozen=True)
class IndicatorComparison:
    """Every practice's value for one indicator against all practices and localities."""

    spec: IndicatorSpec
    overall: GroupValue
    median: float | None
    lower_quartile: float | None
    upper_quartile: float | None
    practices: Mapping[str, PracticeValue]
    localities: tuple[GroupValue, ...] = ()
    funnel: FunnelModel | None = None
    phi: float = 1.0  # estimated overdispersion ratio (S9)
    overdispersed: bool = False  # tau2 > 0: more spread than chance (allowed for if adjusted)
    tau2: float = 0.0  # between-practice variance on the transformed scale (S10)
    # S17, in a round with reference rates: by practice (those with O and E), and the study
    # the rates came from ("" when the indicator is not standardised in this round).
    standardised: Mapping[str, StandardisedRatio] = field(default_factory=dict)
    standardised_with: str = ""

    @property
    def values(self) -> list[float]:
        """The practice values that exist."""
        return [p.value for p in self.practices.values() if p.value is not None]

    def count_outside(self, *, alarm: bool = True) -> int:
        """Practices outside the 99.8% limits (or the 95% limits with ``alarm=False``)."""
        outer = {FunnelStatus.ABOVE_998, FunnelStatus.BELOW_998}
        inner = {FunnelStatus.ABOVE_95, FunnelStatus.BELOW_95}
        wanted = outer if alarm else outer | inner
        return sum(p.status in wanted for p in self.practices.values())


@dataclass(frozen=True)
class SkillMix:
    """Shares of appointments by clinician role: all practices pooled, and each practice."""

    categories: tuple[str, ...]
    overall: Mapping[str, GroupValue]
    practices: Mapping[str, Mapping[str, float | None]]  # share; None where suppressed
    totals: Mapping[str, float | None]


@dataclass(frozen=True)
class Comparison:
    """A round's comparison: what every report and table is drawn from."""

    practices: Mapping[str, PracticeInfo]
    indicators: Mapping[str, IndicatorComparison]
    skill_mix: SkillMix | None
    profiles: Mapping[str, PracticeProfile]
    peer_groups: Mapping[str, PeerGroup]
    group_minimum: int = DEFAULT_GROUP_MINIMUM
    peers_named: bool = False
    round_label: str = ""
    as_of: str | date = ""
    notes: tuple[str, ...] = field(default=())
    policy: DisclosurePolicy = field(default_factory=DisclosurePolicy)  # the round's
    overdispersion: bool = True  # the limits allow for overdispersion where there is any

    def peers(self, practice_id: str) -> PeerGroup | None:
        """The practice's most alike peers, if it has a complete profile."""
        return self.peer_groups.get(practice_id)

    def peer_label(self, practice_id: str, peer_id: str) -> str:
        """A peer as it may appear in ``practice_id``'s report."""
        group = self.peer_groups[practice_id]
        if self.peers_named:
            return self.practices[peer_id].name
        return group.label(peer_id)

    def peer_value(self, practice_id: str, indicator: str) -> GroupValue | None:
        """The pooled value of a practice's peers, withheld below the group minimum."""
        group = self.peer_groups.get(practice_id)
        comparison = self.indicators.get(indicator)
        if group is None or comparison is None:
            return None
        contributions = [
            c
            for pid in group.peer_ids
            if (c := comparison.practices[pid].contribution()) is not None
        ]
        return group_value(
            "Most alike practices",
            contributions,
            scale=comparison.spec.scale,
            group_minimum=self.group_minimum,
        )


def percentile_ranks(values: Mapping[str, float]) -> dict[str, float]:
    """Mid-rank percentiles: 100 * (number below + half the number equal) / n."""
    ranks = mid_rank_percentiles(np.array(list(values.values()), dtype=float))
    return {pid: float(r) for pid, r in zip(values, ranks, strict=True)}


def _number(x: object) -> float | None:
    return None if x is None or pd.isna(x) else float(x)  # type: ignore[arg-type]


def _practice_value(
    spec: IndicatorSpec, practice_id: str, row: Mapping[str, Any] | None
) -> PracticeValue:
    if row is None:
        return PracticeValue(practice_id, None, None, None, note="Not submitted.")
    if spec.kind is Kind.MEAN:
        count, mean = _number(row["count"]), _number(row["mean"])
        if count is None or mean is None or count == 0:
            return PracticeValue(practice_id, None, count, None, note=SUPPRESSED_MEAN)
        return PracticeValue(practice_id, count * mean, count, mean)
    numerator, denominator = _number(row["numerator"]), _number(row["denominator"])
    if numerator is None or denominator is None:
        return PracticeValue(practice_id, numerator, denominator, None, note=SUPPRESSED_COUNT)
    if denominator == 0:
        return PracticeValue(
            practice_id, numerator, denominator, None, note="No eligible patients."
        )
    if not valid_rows(_distribution(spec), np.array([numerator]), np.array([denominator]))[0]:
        return PracticeValue(practice_id, numerator, denominator, None, note=INCONSISTENT)
    return PracticeValue(practice_id, numerator, denominator, spec.scale * numerator / denominator)


def _distribution(spec: IndicatorSpec) -> Distribution:
    return Distribution.BINOMIAL if spec.kind is Kind.PROPORTION else Distribution.POISSON


def compare_indicator(
    spec: IndicatorSpec,
    rows: pd.DataFrame,
    practices: Mapping[str, PracticeInfo],
    *,
    group_minimum: int = DEFAULT_GROUP_MINIMUM,
    overdispersion: bool = True,
) -> IndicatorComparison:
    """One indicator's comparison across practices: pooled value, spread, ranks, funnel."""
    by_practice = {str(r["practice_id"]): r for r in rows.to_dict("records")}
    values = {pid: _practice_value(spec, pid, by_practice.get(pid)) for pid in practices}
    contributions = [c for v in values.values() if (c := v.contribution()) is not None]
    overall = group_value(
        "All practices", contributions, scale=spec.scale, group_minimum=group_minimum
    )
    localities = locality_values(
        contributions,
        {pid: info.locality for pid, info in practices.items()},
        scale=spec.scale,
        group_minimum=group_minimum,
        higher_is_better=spec.direction.higher_is_better,
    )
    if not overall.published or overall.value is None:
        # S3: ranks and spreads of fewer practices than a group needs would name them.
        return IndicatorComparison(spec, overall, None, None, None, values, localities)
    known = {pid: v.value for pid, v in values.items() if v.value is not None}
    q1, median, q3 = (float(q) for q in np.percentile(list(known.values()), [25, 50, 75]))
    if not spec.has_funnel:
        percentiles = percentile_ranks(known)
        placed = {
            pid: replace(
                v,
                percentile=percentiles.get(pid),
                decile=None if pid not in percentiles else int(deciles(percentiles[pid])),
            )
            for pid, v in values.items()
        }
        return IndicatorComparison(spec, overall, median, q1, q3, placed, localities)
    ids = list(values)
    table = funnel_table(
        _distribution(spec),
        np.array(
            [
                _or_nan(values[pid].numerator if values[pid].value is not None else None)
                for pid in ids
            ]
        ),
        np.array([_or_nan(values[pid].denominator) for pid in ids]),
        overdispersion=overdispersion,
        group_minimum=group_minimum,
    )
    placed = {pid: _placed(values[pid], table, i, spec.scale) for i, pid in enumerate(ids)}
    funnel = FunnelModel(
        table.distribution,
        overall.value,
        per=spec.scale,
        phi=table.phi,
        tau2=table.tau2 if table.adjusted else 0.0,
    )
    return IndicatorComparison(
        spec,
        overall,
        median,
        q1,
        q3,
        placed,
        localities,
        funnel,
        table.phi,
        table.tau2 > 0,
        table.tau2,
    )


def _or_nan(x: float | None) -> float:
    return np.nan if x is None else x


def _optional(x: float) -> float | None:
    return None if np.isnan(x) else float(x)


def _placed(v: PracticeValue, table: FunnelTable, i: int, scale: float) -> PracticeValue:
    """A practice's value with its row of the funnel table, on the indicator's scale."""
    if not table.valued[i]:
        return v
    flag95, flag998 = table.flag95[i], table.flag998[i]
    decile = _optional(table.decile[i])
    return replace(
        v,
        percentile=_optional(table.percentile[i]),
        status=status_of(flag95, flag998),
        ci_low=scale * table.ci_low[i],
        ci_high=scale * table.ci_high[i],
        z=_optional(table.z[i]),
        p=_optional(table.p[i]),
        flag95=flag95,
        flag998=flag998,
        decile=None if decile is None else int(decile),
        tail=_optional(table.tail[i]),
    )


def with_round_q_values(
    indicators: Mapping[str, IndicatorComparison],
) -> dict[str, IndicatorComparison]:
    """Every practice's q-value: Benjamini-Hochberg over all the round's p-values (S15)."""
    tested = [
        (name, pid, v.p)
        for name, ic in indicators.items()
        for pid, v in ic.practices.items()
        if v.p is not None
    ]
    q = benjamini_hochberg(np.array([p for _, _, p in tested], dtype=float))
    q_of = {(name, pid): float(qv) for (name, pid, _), qv in zip(tested, q, strict=True)}
    return {
        name: replace(
            ic,
            practices={pid: replace(v, q=q_of.get((name, pid))) for pid, v in ic.practices.items()},
        )
        for name, ic in indicators.items()
    }


def standardised_ratios(
    rows: pd.DataFrame, rates: ReferenceRates, practices: Mapping[str, PracticeInfo]
) -> dict[str, StandardisedRatio]:
    """S17 for one indicator: each practice's released numerator over its expected count.

    A practice whose numerator or expected count was withheld, or whose expected count
    is 0, has no ratio.
    """
    observed = {
        str(r["practice_id"]): _number(r["numerator"])
        for r in rows[(rows["indicator"] == rates.indicator) & (rows["category"] == "")].to_dict(
            "records"
        )
    }
    name = expected_indicator(rates.indicator)
    unit = float(rates.unit)
    expected = {
        str(r["practice_id"]): (None if (k := _number(r["count"])) is None else k * unit)
        for r in rows[rows["indicator"] == name].to_dict("records")
    }
    ids = [
        pid for pid in practices if observed.get(pid) is not None and (expected.get(pid) or 0) > 0
    ]
    o = np.array([observed[pid] for pid in ids], dtype=float)
    e = np.array([expected[pid] for pid in ids], dtype=float)
    ratio, low, high = stats_standardised_ratios(o, e)
    return {
        pid: StandardisedRatio(
            float(o[i]), float(e[i]), float(ratio[i]), float(low[i]), float(high[i])
        )
        for i, pid in enumerate(ids)
    }


def standardisation_note(
    standardisation: Standardisation | None, indicators: Mapping[str, IndicatorComparison]
) -> str:
    """The one sentence a report says about age and sex, true of this round."""
    if standardisation is None:
        return "Values are not standardised for age and sex: this round carried no reference rates."
    titles = [
        indicators[r.indicator].spec.title
        for r in standardisation.rates
        if r.indicator in indicators
    ]
    return (
        f"{'; '.join(titles)}: also shown indirectly standardised for age and sex, as observed "
        "over expected, the expected count being what the practice's own registered "
        "patients by sex and 5-year age band would have at the rates pooled over "
        f"{standardisation.practices} practices (study {standardisation.study_id}, as of "
        f"{standardisation.as_of.isoformat()}); patients whose sex is not recorded count in "
        "the observed, not the expected; other values are not standardised."
    )


def compare_skill_mix(
    rows: pd.DataFrame, practices: Mapping[str, PracticeInfo], *, group_minimum: int
) -> SkillMix:
    """Pooled and per-practice shares of appointments by clinician role.

    A practice's denominator is the sum of its released cells (which is what a released
    breakdown's total is), so shares add up to 1 and a suppressed cell counts as absent.
    """
    cells = rows[rows["category"] != TOTAL_CATEGORY]
    categories = tuple(c for c in SKILL_MIX_CATEGORIES if c in set(cells["category"])) + tuple(
        sorted(set(cells["category"]) - set(SKILL_MIX_CATEGORIES))
    )
    counts: dict[str, dict[str, float | None]] = {pid: {} for pid in practices}
    for pid, cat, count in zip(
        cells["practice_id"], cells["category"], cells["count"], strict=True
    ):
        counts[str(pid)][str(cat)] = _number(count)
    totals: dict[str, float | None] = {}
    shares: dict[str, dict[str, float | None]] = {}
    for pid, own in counts.items():
        total = sum(c for c in own.values() if c is not None)
        totals[pid] = total if own else None
        shares[pid] = {
            cat: (own[cat] / total if own.get(cat) is not None and total > 0 else None)
            for cat in categories
        }
    overall = {
        cat: group_value(
            "All practices",
            [
                Contribution(pid, own[cat], totals[pid] or 0.0)
                for pid, own in counts.items()
                if own.get(cat) is not None and totals[pid]
            ],
            scale=1.0,
            group_minimum=group_minimum,
        )
        for cat in categories
    }
    return SkillMix(categories, overall, shares, totals)


def _normalise(frame: pd.DataFrame) -> pd.DataFrame:
    missing = set(FRAME_COLUMNS) - set(frame.columns)
    if missing:
        raise ValueError(f"the results frame lacks columns: {', '.join(sorted(missing))}")
    out = frame.copy()
    for column in ("numerator", "denominator", "count", "mean", "value"):
        out[column] = pd.to_numeric(out[column], errors="coerce").astype(float)
    out["practice_name"] = out["practice_name"].fillna(out["practice_id"])
    out["locality"] = out["locality"].fillna(NO_LOCALITY).replace("", NO_LOCALITY)
    for column in ("practice_id", "practice_name", "locality", "indicator"):
        out[column] = out[column].astype(str)
    out["category"] = out["category"].fillna("").astype(str)
    return out


def build_comparison(
    frame: pd.DataFrame,
    *,
    policy: DisclosurePolicy | None = None,
    group_minimum: int | None = None,
    peers_named: bool = False,
    peer_count: int = DEFAULT_PEER_COUNT,
    overdispersion: bool = True,
    round_label: str = "",
    as_of: str | date = "",
    standardisation: Standardisation | None = None,
) -> Comparison:
    """Compare every practice in a round's released results with all the others.

    ``policy`` is the round's disclosure policy (its group minimum applies to every
    comparison group); ``group_minimum`` may only raise it. ``overdispersion=False``
    publishes the exact limits with unadjusted z and p (STATS.md, offline interface).
    ``standardisation`` is the round's reference rates, when it carried any (S17).
    """
    policy = policy or DisclosurePolicy()
    group_minimum = max(policy.group_minimum, group_minimum or 0)
    frame = _normalise(frame)
    firsts = frame.drop_duplicates("practice_id")
    practices = {
        pid: PracticeInfo(pid, name, locality)
        for pid, name, locality in zip(
            firsts["practice_id"], firsts["practice_name"], firsts["locality"], strict=True
        )
    }
    is_profile = frame["indicator"].str.startswith(PROFILE_PREFIX)
    indicators: dict[str, IndicatorComparison] = {}
    skill_mix = None
    notes = []
    # An ``<id>.expected`` row is a standardised indicator's expected count, not one more.
    is_expected = (
        frame["indicator"].map(lambda i: standardised_indicator(i) is not None).astype(bool)
    )
    present = list(dict.fromkeys(frame.loc[~is_profile & ~is_expected, "indicator"]))
    ordered = [i for i in CATALOGUE if i in present] + [i for i in present if i not in CATALOGUE]
    for indicator in ordered:
        rows = frame[frame["indicator"] == indicator]
        if indicator == SKILL_MIX:
            skill_mix = compare_skill_mix(rows, practices, group_minimum=group_minimum)
            continue
        whole = rows[rows["category"] == ""]
        if whole.empty:
            notes.append(f"{indicator}: only broken-down rows; not compared.")
            continue
        indicators[indicator] = compare_indicator(
            spec_for(indicator, whole),
            whole,
            practices,
            group_minimum=group_minimum,
            overdispersion=overdispersion,
        )
    indicators = with_round_q_values(indicators)
    for rates in standardisation.rates if standardisation else ():
        if rates.indicator in indicators:
            indicators[rates.indicator] = replace(
                indicators[rates.indicator],
                standardised=standardised_ratios(frame, rates, practices),
                standardised_with=standardisation.study_id,  # type: ignore[union-attr]
            )
    profiles = _practice_profiles(frame)
    # Fewer practices than a peer set needs would let anyone work out who is in it.
    usable = sum(p.complete for p in profiles.values())
    peer_groups = (
        most_alike(profiles, k=min(peer_count, usable - 1)) if usable - 1 >= group_minimum else {}
    )
    if not peer_groups:
        notes.append("Too few practices with a complete profile to form peer groups.")
    notes.append(standardisation_note(standardisation, indicators))
    return Comparison(
        practices,
        indicators,
        skill_mix,
        profiles,
        peer_groups,
        group_minimum,
        peers_named,
        round_label,
        as_of,
        tuple(notes),
        policy,
        overdispersion,
    )
