"""Comparisons stored per round: written once when a round closes, then only read.

``record_comparison`` builds a closed round's comparison (``build_comparison`` under the
round's own disclosure policy) and stores it whole (``coordinator.comparison_document``:
what ``comparison_for`` gives the reports and the ``comparisons`` table), and, for
trends, per indicator the definition's content hash,
the pooled value and the decile cut points; per practice and indicator its counts,
value, percentile, funnel status and limits and its most alike peers' median; per
locality its pooled value; and, in a round with reference rates, per practice its
indirectly standardised ratio (S17) with the study the rates came from. ``trends``
reads those rows across rounds: a series joins only rounds whose definition has the
same content hash (STATS.md S19), so a changed definition starts a new series.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import sqlalchemy as sa

from coordinator import comparison_document
from coordinator.comparisons import Comparison, IndicatorComparison, build_comparison
from coordinator.round_states import RoundState, compared, takes_answers
from coordinator.store import Store
from coordinator.tables import (
    comparison_documents,
    comparison_groups,
    comparison_indicators,
    comparison_standardised,
    comparison_values,
    rounds,
)
from fedpeer.collection import Round
from fedpeer.errors import RoundError
from fedpeer.standardise import standardisation_of

DECILES = tuple(range(10, 100, 10))


@dataclass(frozen=True)
class RoundPoint:
    """One round of an indicator's series: when, the pooled value and the decile cuts."""

    round_id: str
    as_of: dt.date
    overall: float | None
    deciles: tuple[float, ...]  # 10th..90th percentiles of practice values; () if withheld


@dataclass(frozen=True)
class IndicatorTrend:
    """An indicator across the rounds that used the same definition, oldest first."""

    indicator: str
    content_hash: str
    rounds: tuple[RoundPoint, ...]
    values: Mapping[str, tuple[float | None, ...]]  # practice -> value per round
    peer_medians: Mapping[str, tuple[float | None, ...]]  # practice -> peers' median
    earlier_definition: dt.date | None = None  # as_of of the last round with another hash


def comparison_for(store: Store, round_id: str) -> tuple[Round, Comparison]:
    """A round and its comparison: a closed round's as stored, an open round's as it stands.

    A closed round's comparison is read, never recomputed; one closed before documents
    were stored (or stored by an older version) is built and stored the first time.
    """
    round_ = store.round(round_id)
    if not compared(store.round_state(round_id)):
        return round_, _built(store, round_)
    with store.engine.connect() as conn:
        document = conn.execute(
            sa.select(comparison_documents.c.document).where(
                comparison_documents.c.round_id == round_id
            )
        ).scalar()
    if document is not None:
        try:
            return round_, comparison_document.load(document)
        except comparison_document.DocumentError:
            pass  # from another version: built again below, as it would be at closing
    return round_, record_comparison(store, round_id)


def _built(store: Store, round_: Round) -> Comparison:
    """The round's comparison under its own policy, from its released rows as they are now."""
    return build_comparison(
        store.released_rows_frame(round_.round_id),
        policy=round_.policy,
        round_label=round_.round_id,
        as_of=round_.as_of,
        standardisation=standardisation_of(round_),
    )


def content_hashes(round_: Round) -> dict[str, str]:
    """Each definition's content hash, by indicator id."""
    return {d.id: d.content_hash for d in round_.definitions}


def _hash_for(indicator: str, hashes: Mapping[str, str]) -> str:
    # A definition may release several indicators, named ``<definition id>.<part>``.
    if indicator in hashes:
        return hashes[indicator]
    owner = max((d for d in hashes if indicator.startswith(d + ".")), key=len, default=None)
    return hashes[owner] if owner is not None else ""


def decile_cuts(ic: IndicatorComparison) -> tuple[float, ...]:
    """The 10th..90th percentiles of practice values; none when the group is withheld."""
    values = ic.values
    if not ic.overall.published or not values:
        return ()
    return tuple(float(q) for q in np.percentile(values, DECILES))


def peer_median(comparison: Comparison, ic: IndicatorComparison, practice_id: str) -> float | None:
    """The median of a practice's most alike peers' values, withheld below the group minimum."""
    group = comparison.peers(practice_id)
    if group is None:
        return None
    values = [v for pid in group.peer_ids if (v := ic.practices[pid].value) is not None]
    if len(values) < comparison.group_minimum:
        return None
    return float(np.median(values))


def _rows(round_id: str, comparison: Comparison, hashes: Mapping[str, str]):
    indicators, values, groups, standardised = [], [], [], []
    for indicator, ic in comparison.indicators.items():
        standardised.extend(
            {
                "round_id": round_id,
                "indicator": indicator,
                "practice_id": pid,
                "observed": r.observed,
                "expected": r.expected,
                "ratio": r.ratio,
                "low_95": r.low,
                "high_95": r.high,
                "study_id": ic.standardised_with,
            }
            for pid, r in ic.standardised.items()
        )
        indicators.append(
            {
                "round_id": round_id,
                "indicator": indicator,
                "content_hash": _hash_for(indicator, hashes),
                "overall": ic.overall.value if ic.overall.published else None,
                "contributing": ic.overall.contributing,
                "published": ic.overall.published,
                "phi": float(ic.phi),
                "deciles": json.dumps(decile_cuts(ic)),
            }
        )
        for pid, v in ic.practices.items():
            limits = (
                ic.funnel.limits(v.denominator) if ic.funnel is not None and v.denominator else None
            )
            values.append(
                {
                    "round_id": round_id,
                    "indicator": indicator,
                    "practice_id": pid,
                    "numerator": v.numerator,
                    "denominator": v.denominator,
                    "value": v.value,
                    "percentile": v.percentile,
                    "status": str(v.status),
                    "lower_95": limits.lower_95 if limits else None,
                    "upper_95": limits.upper_95 if limits else None,
                    "lower_998": limits.lower_998 if limits else None,
                    "upper_998": limits.upper_998 if limits else None,
                    "peer_median": peer_median(comparison, ic, pid),
                    "note": v.note,
                }
            )
        groups.extend(
            {
                "round_id": round_id,
                "indicator": indicator,
                "name": g.name,
                "value": g.value if g.published else None,
                "contributing": g.contributing,
                "published": g.published,
                "rank": g.rank,
            }
            for g in ic.localities
        )
    return indicators, values, groups, standardised


def closed_round(store: Store, round_id: str) -> None:
    """Nothing when the round is closed or published; UnknownRound or RoundError otherwise."""
    state = store.round_state(round_id)
    if not compared(state):
        hint = ": close it first" if takes_answers(state) or state is RoundState.CLOSING else ""
        raise RoundError(f"round {round_id} is {state}{hint}")


def record_comparison(store: Store, round_id: str) -> Comparison:
    """Store a closed round's comparison, replacing any stored before; returns it."""
    closed_round(store, round_id)
    round_ = store.round(round_id)
    comparison = _built(store, round_)
    indicators, values, groups, standardised = _rows(round_id, comparison, content_hashes(round_))
    document = {"round_id": round_id, "document": comparison_document.dump(comparison)}
    tables = (
        comparison_values,
        comparison_groups,
        comparison_standardised,
        comparison_indicators,
        comparison_documents,
    )
    with store.engine.begin() as conn:
        for table in tables:
            conn.execute(table.delete().where(table.c.round_id == round_id))
        for table, rows in (
            (comparison_indicators, indicators),
            (comparison_values, values),
            (comparison_groups, groups),
            (comparison_standardised, standardised),
            (comparison_documents, [document]),
        ):
            if rows:
                conn.execute(table.insert(), rows)
    return comparison


def has_stored_comparison(store: Store, round_id: str) -> bool:
    """True when the round's comparison is stored (at closing, or when first read since)."""
    with store.engine.connect() as conn:
        found = conn.execute(
            sa.select(comparison_documents.c.round_id).where(
                comparison_documents.c.round_id == round_id
            )
        ).first()
    return found is not None


def trends(store: Store, round_id: str) -> dict[str, IndicatorTrend]:
    """Each of a round's indicators across the rounds up to it with the same definition."""
    with store.engine.connect() as conn:
        as_of = conn.execute(
            sa.select(rounds.c.as_of).where(rounds.c.round_id == round_id)
        ).scalar()
        current = {
            r.indicator: r.content_hash
            for r in conn.execute(
                sa.select(comparison_indicators).where(comparison_indicators.c.round_id == round_id)
            )
        }
        history = conn.execute(
            sa.select(comparison_indicators, rounds.c.as_of)
            .join(rounds, rounds.c.round_id == comparison_indicators.c.round_id)
            .where(
                comparison_indicators.c.indicator.in_(list(current)),
                rounds.c.as_of <= as_of,
            )
            .order_by(rounds.c.as_of.desc(), rounds.c.created_at.desc())
        ).all()
        series: dict[str, list[sa.Row]] = {i: [] for i in current}
        breaks: dict[str, dt.date] = {}
        for row in history:
            if row.indicator in breaks:
                continue
            if row.content_hash != current[row.indicator]:
                breaks[row.indicator] = row.as_of  # a new definition: the series stops here
                continue
            series[row.indicator].append(row)
        wanted = {(r.round_id, i) for i, rows in series.items() for r in rows}
        cells = conn.execute(
            sa.select(comparison_values).where(
                comparison_values.c.round_id.in_({r for r, _ in wanted}),
                comparison_values.c.indicator.in_(list(current)),
            )
        ).all()
    by_cell = {
        (c.round_id, c.indicator, c.practice_id): c
        for c in cells
        if (c.round_id, c.indicator) in wanted
    }
    out = {}
    for indicator, rows in series.items():
        rows.reverse()
        practices = sorted({p for r, i, p in by_cell if i == indicator})
        points = tuple(
            RoundPoint(r.round_id, r.as_of, r.overall, tuple(json.loads(r.deciles))) for r in rows
        )

        out[indicator] = IndicatorTrend(
            indicator,
            current[indicator],
            points,
            {p: _column(by_cell, points, indicator, p, "value") for p in practices},
            {p: _column(by_cell, points, indicator, p, "peer_median") for p in practices},
            breaks.get(indicator),
        )
    return out


def _column(
    cells: Mapping[tuple[str, str, str], sa.Row],
    points: tuple[RoundPoint, ...],
    indicator: str,
    practice_id: str,
    attr: str,
) -> tuple[float | None, ...]:
    return tuple(
        getattr(c, attr) if (c := cells.get((p.round_id, indicator, practice_id))) else None
        for p in points
    )
