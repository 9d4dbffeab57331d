"""The SQL engine: each definition compiled to SQLAlchemy Core, executed in the database.

Nothing row-level comes back: every query aggregates. As ``as_of`` is a constant, every
window and age bound is a constant date computed in Python (``fedpeer.dates``). Work is
batched: one pass over ``clinical_events`` for every condition and event criterion of
every definition, one over ``medications``, one windowed pass per latest-value codelist,
and one query over the patients that sums every patient-based measure at once, grouped
by sex and age band (which gives the strata and the age-sex profile for free). Means
come back as small histograms and are finished exactly in Python (``_exact``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from fractions import Fraction
from typing import Any

import sqlalchemy as sa

from agent.engine._dialect import date_of, day, days_between
from agent.engine._exact import exact_mean
from agent.extract import schema
from fedpeer.dates import minus_years, window_start
from fedpeer.definitions.model import (
    AGE_BANDS,
    IMD_CATEGORIES,
    SEX_AGE_BANDS,
    AppointmentCriteria,
    BreakdownBy,
    Comparator,
    IndicatorDefinition,
    MedicationCriteria,
    PatientCriteria,
    Unit,
    UsualProviderOfCare,
)
from fedpeer.measures import Breakdown, Count, IndicatorResult, Kind, Mean, Proportion, Rate

P, E, M, A = schema.patients, schema.clinical_events, schema.medications, schema.appointments


class D:
    """Date columns read as dates (on SQLite, ISO text that may carry a time of day)."""

    birth, death = day(P.c.date_of_birth), day(P.c.date_of_death)
    registered_from, registered_to = day(P.c.registered_from), day(P.c.registered_to)
    event, issued, booked_on = day(E.c.date), day(M.c.date), day(A.c.booked_on)
    # an appointment is in a window when the date of its start is
    start = date_of(A.c.starts_at)


TRUE = sa.true()


def _int(value: Any) -> int:
    return int(value or 0)


def _all(conditions: list[sa.ColumnElement[bool]]) -> sa.ColumnElement[bool]:
    if not conditions:
        return TRUE
    return conditions[0] if len(conditions) == 1 else sa.and_(*conditions)


def _count_if(condition: sa.ColumnElement[bool]) -> sa.ColumnElement[int]:
    return sa.func.sum(sa.case((condition, 1), else_=0))


class _Bounds:
    """Constant dates for one reference date."""

    def __init__(self, as_of: date) -> None:
        self.as_of = as_of

    def window(self, column: sa.ColumnElement, months: int | None) -> sa.ColumnElement[bool]:
        if months is None:
            return TRUE
        return column.between(window_start(self.as_of, months), self.as_of)

    def registered(self) -> sa.ColumnElement[bool]:
        a = self.as_of
        return sa.and_(
            D.registered_from <= a,
            sa.or_(D.registered_to.is_(None), D.registered_to >= a),
            sa.or_(D.death.is_(None), D.death > a),
        )

    def age_at_least(self, years: int) -> sa.ColumnElement[bool]:
        return D.birth <= minus_years(self.as_of, years)

    def age_band(self) -> sa.ColumnElement[str]:
        # age < 5k exactly when born after as_of minus 5k years
        whens = [
            (D.birth > minus_years(self.as_of, 5 * (i + 1)), band)
            for i, band in enumerate(AGE_BANDS[:-1])
        ]
        return sa.case(*whens, else_=AGE_BANDS[-1])

    def medication(self, crit: MedicationCriteria) -> sa.ColumnElement[bool]:
        matches: list[sa.ColumnElement[bool]] = [
            sa.func.substr(M.c.bnf_code, 1, len(prefix)) == prefix for prefix in crit.bnf_prefixes
        ]
        if crit.dmd is not None:
            matches.append(M.c.dmd_code.in_(crit.dmd.codes))
        return sa.and_(self.window(D.issued, crit.within_months), sa.or_(*matches))

    def appointment(self, crit: AppointmentCriteria) -> sa.ColumnElement[bool]:
        parts = [self.window(D.start, crit.within_months)] if crit.within_months else []
        if crit.statuses is not None:
            parts.append(A.c.status.in_(crit.statuses))
        if crit.roles is not None:
            parts.append(A.c.clinician_role.in_(crit.roles))
        if crit.modes is not None:
            parts.append(A.c.mode.in_(crit.modes))
        if crit.booked_not_after_start:
            parts.append(D.booked_on <= D.start)
        if crit.lead_time_min_days is not None:
            parts.append(days_between(D.start, D.booked_on) >= crit.lead_time_min_days)
        if crit.lead_time_max_days is not None:
            parts.append(days_between(D.start, D.booked_on) <= crit.lead_time_max_days)
        if crit.duration_above is not None:
            parts.append(
                sa.and_(
                    A.c.duration_minutes.is_not(None), A.c.duration_minutes > crit.duration_above
                )
            )
        return _all(parts)


def _compare(
    column: sa.ColumnElement, comparator: Comparator, threshold: float
) -> sa.ColumnElement[bool]:
    test = {
        Comparator.AT_MOST: column <= threshold,
        Comparator.AT_LEAST: column >= threshold,
        Comparator.BELOW: column < threshold,
        Comparator.ABOVE: column > threshold,
    }[comparator]
    return sa.and_(column.is_not(None), test)


class _PatientFrame:
    """Patients joined to one row of per-patient features each criterion needs."""

    def __init__(self, bounds: _Bounds) -> None:
        self.b = bounds
        self.conditions: dict[tuple, int] = {}
        self.events: dict[tuple, int] = {}
        self.latest: dict[tuple, int] = {}
        self.meds: dict[MedicationCriteria, int] = {}
        self.upcs: dict[UsualProviderOfCare, int] = {}

    def add(self, crit: PatientCriteria) -> None:
        """Note every feature ``crit`` needs."""
        for c in crit.has_condition:
            key = (c.diagnosis.codes, c.resolved.codes if c.resolved else ())
            self.conditions.setdefault(key, len(self.conditions))
        for e in crit.has_event:
            self.events.setdefault((e.codelist.codes, e.within_months), len(self.events))
        for v in crit.latest_value:
            self.latest.setdefault((v.codelist.codes, v.within_months), len(self.latest))
        for m in crit.has_medication:
            self.meds.setdefault(m, len(self.meds))

    def add_upc(self, value: UsualProviderOfCare) -> None:
        """Note a Usual Provider of Care value to compute per patient."""
        self.upcs.setdefault(value, len(self.upcs))

    def build(self) -> None:
        """Make the subqueries and the join; call after every ``add``."""
        b, as_of = self.b, self.b.as_of
        self.cols: dict[str, sa.ColumnElement] = {}
        self.subqueries: dict[str, sa.Subquery] = {}  # by name, in join order
        self.used: set[str] = set()
        if self.conditions or self.events:
            columns: list[sa.ColumnElement] = [E.c.patient_id]
            codes: set[str] = set()
            for (diag, res), i in self.conditions.items():
                codes.update(diag, res)
                columns.append(
                    sa.func.max(
                        sa.case((sa.and_(E.c.snomed_code.in_(diag), D.event <= as_of), D.event))
                    ).label(f"diag_{i}")
                )
                if res:
                    columns.append(
                        sa.func.max(
                            sa.case((sa.and_(E.c.snomed_code.in_(res), D.event <= as_of), D.event))
                        ).label(f"res_{i}")
                    )
            for (event_codes, months), i in self.events.items():
                codes.update(event_codes)
                hit = sa.and_(E.c.snomed_code.in_(event_codes), b.window(D.event, months))
                columns.append(sa.func.max(sa.case((hit, 1), else_=0)).label(f"event_{i}"))
            events = (
                sa.select(*columns)
                .where(E.c.snomed_code.in_(sorted(codes)))
                .group_by(E.c.patient_id)
                .subquery("event_features")
            )
            self._add(events)
        for (value_codes, months), i in self.latest.items():
            ranked = (
                sa.select(
                    E.c.patient_id,
                    E.c.numeric_value,
                    sa.func.row_number()
                    .over(
                        partition_by=E.c.patient_id,
                        order_by=(D.event.desc(), E.c.numeric_value.desc()),
                    )
                    .label("rank"),
                )
                .where(
                    E.c.snomed_code.in_(value_codes),
                    b.window(D.event, months),
                    E.c.numeric_value.is_not(None),
                )
                .subquery(f"ranked_{i}")
            )
            latest = (
                sa.select(ranked.c.patient_id, ranked.c.numeric_value.label("value"))
                .where(ranked.c.rank == 1)
                .subquery(f"latest_{i}")
            )
            self._add(latest)
        if self.meds:
            columns = [M.c.patient_id]
            for m, i in self.meds.items():
                columns.append(
                    sa.func.max(sa.case((b.medication(m), 1), else_=0)).label(f"med_{i}")
                )
            meds = sa.select(*columns).group_by(M.c.patient_id).subquery("medication_features")
            self._add(meds)
        for value, i in self.upcs.items():
            per_clinician = (
                sa.select(A.c.patient_id, sa.func.count().label("n"))
                .where(b.appointment(value.appointments))
                .group_by(A.c.patient_id, A.c.clinician_id)
                .subquery(f"upc_clinician_{i}")
            )
            total = sa.func.sum(per_clinician.c.n)
            per_patient = (
                sa.select(
                    per_clinician.c.patient_id,
                    total.label("seen"),
                    sa.func.max(per_clinician.c.n).label("most"),
                )
                .group_by(per_clinician.c.patient_id)
                .having(total >= value.min_appointments)
                .subquery(f"upc_{i}")
            )
            self._add(per_patient)

    def _add(self, subquery: sa.Subquery) -> None:
        self.subqueries[subquery.name] = subquery
        for name, column in subquery.c.items():
            if name != "patient_id":
                key = f"{subquery.name}.{name}"
                self.cols[key] = column

    def col(self, subquery: str, name: str) -> sa.ColumnElement:
        """A feature column; its subquery is joined into the next ``from_clause``."""
        self.used.add(subquery)
        return self.cols[f"{subquery}.{name}"]

    def from_clause(self) -> sa.FromClause:
        """Patients left-joined to the feature subqueries used since the last call."""
        joined: sa.FromClause = P
        for name, subquery in self.subqueries.items():
            if name in self.used:
                joined = joined.outerjoin(subquery, subquery.c.patient_id == P.c.patient_id)
        self.used = set()
        return joined

    def where(self, crit: PatientCriteria) -> sa.ColumnElement[bool]:
        """The criterion as a boolean over the frame (never NULL where it matters: CASE/WHERE)."""
        b, parts = self.b, []
        if crit.registered:
            parts.append(b.registered())
        if crit.age_min is not None:
            parts.append(b.age_at_least(crit.age_min))
        if crit.age_max is not None:
            parts.append(sa.not_(b.age_at_least(crit.age_max + 1)))
        if crit.sex is not None:
            parts.append(P.c.sex.in_(crit.sex))
        for c in crit.has_condition:
            i = self.conditions[(c.diagnosis.codes, c.resolved.codes if c.resolved else ())]
            diag = self.col("event_features", f"diag_{i}")
            parts.append(diag.is_not(None))
            if c.resolved:
                res = self.col("event_features", f"res_{i}")
                parts.append(sa.or_(res.is_(None), res < diag))
        for e in crit.has_event:
            parts.append(
                self.col(
                    "event_features", f"event_{self.events[(e.codelist.codes, e.within_months)]}"
                )
                == 1
            )
        for m in crit.has_medication:
            parts.append(self.col("medication_features", f"med_{self.meds[m]}") == 1)
        for v in crit.latest_value:
            column = self.col(f"latest_{self.latest[(v.codelist.codes, v.within_months)]}", "value")
            parts.append(_compare(column, v.comparator, v.threshold))
        return _all(parts)

    def upc_columns(self, value: UsualProviderOfCare) -> tuple[sa.ColumnElement, sa.ColumnElement]:
        """The (appointments seen, most with one clinician) columns of a UPC value."""
        i = self.upcs[value]
        return self.col(f"upc_{i}", "seen"), self.col(f"upc_{i}", "most")


def _stratum(sex: str, band: str) -> str | None:
    key = f"{sex}.{band}"
    return key if key in _STRATA else None


_STRATA = frozenset(SEX_AGE_BANDS)


class _Evaluation:
    def __init__(
        self, definitions: Sequence[IndicatorDefinition], conn: sa.Connection, as_of: date
    ) -> None:
        self.defs, self.conn, self.b = definitions, conn, _Bounds(as_of)
        self.frame = _PatientFrame(self.b)

    def prepare(self) -> None:
        """Note and build every per-patient feature the definitions need."""
        for d in self.defs:
            for part in ("denominator", "numerator", "population"):
                crit = getattr(d, part)
                if isinstance(crit, PatientCriteria):
                    self.frame.add(crit)
            if isinstance(d.value, UsualProviderOfCare):
                self.frame.add_upc(d.value)
        self.frame.build()

    def run(self) -> None:
        self.prepare()
        patient_sums: list[tuple[int, str, sa.ColumnElement[bool]]] = []
        f = self.frame
        for i, d in enumerate(self.defs):
            if d.unit is not Unit.PATIENTS and d.kind is not Kind.RATE:
                continue
            if d.kind is Kind.PROPORTION:
                den = f.where(d.denominator)  # type: ignore[arg-type]
                patient_sums.append((i, "den", den))
                patient_sums.append((i, "num", sa.and_(den, f.where(d.numerator))))  # type: ignore[arg-type]
            elif d.kind is Kind.RATE:
                patient_sums.append((i, "den", f.where(d.denominator)))  # type: ignore[arg-type]
            elif d.kind is Kind.COUNT or (
                d.breakdown and d.breakdown.by is BreakdownBy.SEX_AGE_BAND
            ):
                patient_sums.append((i, "pop", f.where(d.population)))  # type: ignore[arg-type]
        self.sums = self._patient_sums(patient_sums)
        self.rate_items = self._rate_items()
        self.appointment_sums = self._appointment_sums()

    def _patient_sums(
        self, sums: list[tuple[int, str, sa.ColumnElement[bool]]]
    ) -> dict[tuple[int, str], dict[str, int]]:
        """{(definition, what): {stratum or "": count}} from one grouped query."""
        out: dict[tuple[int, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
        if not sums:
            return out
        band = self.b.age_band().label("band")
        query = (
            sa.select(P.c.sex, band, *[_count_if(cond) for _, _, cond in sums])
            .select_from(self.frame.from_clause())
            .group_by(P.c.sex, band)
        )
        for row in self.conn.execute(query):
            stratum = _stratum(row[0], row[1])
            for (i, what, _), value in zip(sums, row[2:], strict=True):
                out[(i, what)][""] += _int(value)
                if stratum:
                    out[(i, what)][stratum] += _int(value)
        return out

    def _rate_items(self) -> dict[int, dict[str, int]]:
        """{definition: {stratum or "": items}}: by the sex and age band of each item's patient."""
        rates = [(i, d) for i, d in enumerate(self.defs) if d.kind is Kind.RATE]
        if not rates:
            return {}
        band = self.b.age_band().label("band")
        counts = [_count_if(self.b.medication(d.numerator)) for _, d in rates]  # type: ignore[arg-type]
        # An outer join: the whole practice counts every item, whoever's it is.
        query = (
            sa.select(P.c.sex, band, *counts)
            .select_from(M.outerjoin(P, P.c.patient_id == M.c.patient_id))
            .group_by(P.c.sex, band)
        )
        out: dict[int, dict[str, int]] = {i: defaultdict(int) for i, _ in rates}
        for row in self.conn.execute(query):
            stratum = None if row[0] is None else _stratum(row[0], row[1])
            for (i, _), value in zip(rates, row[2:], strict=True):
                out[i][""] += _int(value)
                if stratum:
                    out[i][stratum] += _int(value)
        return out

    def _appointment_sums(self) -> dict[int, tuple[int, int]]:
        props = [
            (i, d)
            for i, d in enumerate(self.defs)
            if d.unit is Unit.APPOINTMENTS and d.kind is Kind.PROPORTION
        ]
        if not props:
            return {}
        columns = []
        for _, d in props:
            den = self.b.appointment(d.denominator)  # type: ignore[arg-type]
            columns += [_count_if(sa.and_(den, self.b.appointment(d.numerator))), _count_if(den)]  # type: ignore[arg-type]
        row = self.conn.execute(sa.select(*columns).select_from(A)).one()
        return {i: (_int(row[2 * k]), _int(row[2 * k + 1])) for k, (i, _) in enumerate(props)}

    def _upc(self, d: IndicatorDefinition) -> dict[str, Mean]:
        assert isinstance(d.value, UsualProviderOfCare) and isinstance(
            d.population, PatientCriteria
        )
        seen, most = self.frame.upc_columns(d.value)
        band = self.b.age_band().label("band")
        where = self.frame.where(d.population)  # before from_clause(): it notes the joins
        query = (
            sa.select(P.c.sex, band, most, seen, sa.func.count())
            .select_from(self.frame.from_clause())
            .where(where, seen.is_not(None))
            .group_by(P.c.sex, band, most, seen)
        )
        histograms: dict[str, list[tuple[Fraction, int]]] = defaultdict(list)
        for sex, group, m, n, count in self.conn.execute(query):
            pair = (Fraction(int(m), int(n)), int(count))
            histograms[""].append(pair)
            if stratum := _stratum(sex, group):
                histograms[stratum].append(pair)
        return {key: Mean(*exact_mean(histograms.get(key, []))) for key in ("", *SEX_AGE_BANDS)}

    def _durations(self, d: IndicatorDefinition) -> Mean:
        where = self.b.appointment(d.population)  # type: ignore[arg-type]
        query = (
            sa.select(A.c.duration_minutes, sa.func.count())
            .where(where)
            .group_by(A.c.duration_minutes)
        )
        return Mean(*exact_mean((v, int(n)) for v, n in self.conn.execute(query)))

    def _breakdown(self, i: int, d: IndicatorDefinition) -> Breakdown:
        assert d.breakdown is not None
        by = d.breakdown.by
        if by is BreakdownBy.SEX_AGE_BAND:
            counts = self.sums[(i, "pop")]
            return Breakdown(tuple((c, counts.get(c, 0)) for c in SEX_AGE_BANDS), counts.get("", 0))
        if by is BreakdownBy.IMD_DECILE:
            key = sa.case(
                (P.c.imd_decile.between(1, 10), sa.cast(P.c.imd_decile, sa.String)), else_="unknown"
            ).label("category")
            where = self.frame.where(d.population)  # type: ignore[arg-type]
            query = (
                sa.select(key, sa.func.count()).select_from(self.frame.from_clause()).where(where)
            )
            rows = self.conn.execute(query.group_by(key)).all()
            categories: tuple[str, ...] = IMD_CATEGORIES
        else:
            column = {
                BreakdownBy.CLINICIAN_ROLE: A.c.clinician_role,
                BreakdownBy.MODE: A.c.mode,
                BreakdownBy.STATUS: A.c.status,
            }[by]
            where = self.b.appointment(d.population)  # type: ignore[arg-type]
            rows = self.conn.execute(
                sa.select(column, sa.func.count()).where(where).group_by(column)
            ).all()
            categories = d.breakdown.categories
        counts = {str(k): int(n) for k, n in rows}
        return Breakdown(tuple((c, counts.get(c, 0)) for c in categories), sum(counts.values()))

    def results_for(
        self, i: int, d: IndicatorDefinition, by_age_sex: bool
    ) -> list[IndicatorResult]:
        strata = ("", *SEX_AGE_BANDS) if by_age_sex and d.stratifiable else ("",)
        if d.unit is Unit.APPOINTMENTS:
            if d.kind is Kind.PROPORTION:
                return [IndicatorResult(d.id, Proportion(*self.appointment_sums[i]))]
            if d.kind is Kind.MEAN:
                return [IndicatorResult(d.id, self._durations(d))]
            if d.kind is Kind.COUNT:
                where = self.b.appointment(d.population)  # type: ignore[arg-type]
                return [
                    IndicatorResult(
                        d.id, Count(_int(self.conn.execute(sa.select(_count_if(where))).scalar()))
                    )
                ]
            return [IndicatorResult(d.id, self._breakdown(i, d))]
        if d.kind is Kind.RATE:
            items, people = self.rate_items[i], self.sums[(i, "den")]
            return [
                IndicatorResult(d.id, Rate(items.get(s, 0), people.get(s, 0), d.per), s)
                for s in strata
            ]
        if d.kind is Kind.BREAKDOWN:
            return [IndicatorResult(d.id, self._breakdown(i, d))]
        if d.kind is Kind.MEAN:
            means = self._upc(d)
            return [IndicatorResult(d.id, means[s], s) for s in strata]
        if d.kind is Kind.COUNT:
            pop = self.sums[(i, "pop")]
            return [IndicatorResult(d.id, Count(pop.get(s, 0)), s) for s in strata]
        num, den = self.sums[(i, "num")], self.sums[(i, "den")]
        return [IndicatorResult(d.id, Proportion(num.get(s, 0), den.get(s, 0)), s) for s in strata]


# -- membership: the same criteria, selecting the units instead of counting them --------


@dataclass(frozen=True)
class Membership:
    """The units one definition counts, by part, and a mean's clipped sum.

    ``sets`` maps ``population`` (the denominator or population), ``numerator``, and
    ``cell:<category>`` for a breakdown's cells, to unit ids: ``patient:<id>``,
    ``appointment:<id>``, or ``item:<patient>|<date>|<dmd>|<bnf>|<n>`` for the n-th
    identical medication item. Each set's size is the count ``evaluate`` gives for it.
    ``clipped_sum`` is, for a mean, the sum of each unit's value clipped to the
    definition's ``value_bound``. None of it ever leaves the practice.
    """

    sets: Mapping[str, frozenset[str]]
    clipped_sum: Fraction | None = None


def _ids(prefix: str, rows: Iterable[Sequence[Any]]) -> frozenset[str]:
    return frozenset(f"{prefix}:{row[0]}" for row in rows)


class _Members:
    """Membership from the evaluation's own criteria: one rule, counted or listed."""

    def __init__(self, ev: _Evaluation) -> None:
        self.ev, self.f, self.b, self.conn = ev, ev.frame, ev.b, ev.conn

    def patients(self, where: sa.ColumnElement[bool], *extra: sa.ColumnElement) -> list[Any]:
        query = sa.select(P.c.patient_id, *extra).where(where)  # where first: it notes joins
        return self.conn.execute(query.select_from(self.f.from_clause())).all()

    def appointments(self, where: sa.ColumnElement[bool], *extra: sa.ColumnElement) -> list[Any]:
        return self.conn.execute(sa.select(A.c.appointment_id, *extra).where(where)).all()

    def items(self, crit: MedicationCriteria) -> frozenset[str]:
        key = (M.c.patient_id, D.issued, M.c.dmd_code, M.c.bnf_code)
        rows = self.conn.execute(
            sa.select(*key, sa.func.count()).where(self.b.medication(crit)).group_by(*key)
        )
        return frozenset(
            f"item:{pid}|{day_!s}|{dmd}|{bnf or ''}|{n}"
            for pid, day_, dmd, bnf, count in rows
            for n in range(1, int(count) + 1)
        )

    def of(self, d: IndicatorDefinition) -> Membership:
        if d.kind is Kind.PROPORTION:
            if d.unit is Unit.APPOINTMENTS:
                den = self.b.appointment(d.denominator)  # type: ignore[arg-type]
                num = sa.and_(den, self.b.appointment(d.numerator))  # type: ignore[arg-type]
                rows = self.appointments(den, num)
                prefix = "appointment"
            else:
                den = self.f.where(d.denominator)  # type: ignore[arg-type]
                num = self.f.where(d.numerator)  # type: ignore[arg-type]
                rows = self.patients(den, sa.case((num, 1), else_=0))
                prefix = "patient"
            return Membership(
                {
                    "population": _ids(prefix, rows),
                    "numerator": _ids(prefix, (r for r in rows if r[1])),
                }
            )
        if d.kind is Kind.RATE:
            return Membership(
                {
                    "population": _ids("patient", self.patients(self.f.where(d.denominator))),  # type: ignore[arg-type]
                    "numerator": self.items(d.numerator),  # type: ignore[arg-type]
                }
            )
        if d.unit is Unit.APPOINTMENTS:
            where = self.b.appointment(d.population)  # type: ignore[arg-type]
            if d.kind is Kind.MEAN:
                rows = self.appointments(where, A.c.duration_minutes)
                bound = Fraction(d.value_bound or 0)
                total = sum((min(Fraction(r[1]), bound) for r in rows), Fraction(0))
                return Membership({"population": _ids("appointment", rows)}, total)
            if d.kind is Kind.BREAKDOWN:
                assert d.breakdown is not None
                column = {
                    BreakdownBy.CLINICIAN_ROLE: A.c.clinician_role,
                    BreakdownBy.MODE: A.c.mode,
                    BreakdownBy.STATUS: A.c.status,
                }[d.breakdown.by]
                return self._cells("appointment", self.appointments(where, column), d)
            return Membership({"population": _ids("appointment", self.appointments(where))})
        where = self.f.where(d.population)  # type: ignore[arg-type]
        if d.kind is Kind.MEAN:
            seen, most = self.f.upc_columns(d.value)  # type: ignore[arg-type]
            rows = self.patients(sa.and_(where, seen.is_not(None)), most, seen)
            total = sum((Fraction(int(m), int(n)) for _, m, n in rows), Fraction(0))
            return Membership({"population": _ids("patient", rows)}, total)
        if d.kind is Kind.BREAKDOWN:
            assert d.breakdown is not None
            if d.breakdown.by is BreakdownBy.SEX_AGE_BAND:
                band = self.b.age_band()
                rows = [
                    (pid, f"{sex}.{group}")
                    for pid, sex, group in self.patients(where, P.c.sex, band)
                ]
            else:
                key = sa.case(
                    (P.c.imd_decile.between(1, 10), sa.cast(P.c.imd_decile, sa.String)),
                    else_="unknown",
                )
                rows = self.patients(where, key)
            return self._cells("patient", rows, d)
        return Membership({"population": _ids("patient", self.patients(where))})

    def _cells(self, prefix: str, rows: Sequence[Any], d: IndicatorDefinition) -> Membership:
        assert d.breakdown is not None
        categories = (
            SEX_AGE_BANDS
            if d.breakdown.by is BreakdownBy.SEX_AGE_BAND
            else IMD_CATEGORIES
            if d.breakdown.by is BreakdownBy.IMD_DECILE
            else d.breakdown.categories
        )
        sets: dict[str, frozenset[str]] = {"population": _ids(prefix, rows)}
        for category in categories:
            sets[f"cell:{category}"] = _ids(prefix, (r for r in rows if str(r[1]) == category))
        return Membership(sets)


def membership(
    definitions: Sequence[IndicatorDefinition], connection: sa.Connection, as_of: date
) -> list[Membership]:
    """The units each definition counts on as_of, in order, from the engine's own criteria."""
    ev = _Evaluation(list(definitions), connection, as_of)
    ev.prepare()
    members = _Members(ev)
    return [members.of(d) for d in ev.defs]


def evaluate(
    definitions: Sequence[IndicatorDefinition],
    connection: sa.Connection,
    as_of: date,
    *,
    by_age_sex: bool = False,
) -> list[IndicatorResult]:
    """Evaluate each definition in the database on as_of; optionally by sex and age band too."""
    ev = _Evaluation(list(definitions), connection, as_of)
    ev.run()
    return [r for i, d in enumerate(ev.defs) for r in ev.results_for(i, d, by_age_sex)]
