"""The reference engine: fetch the rows, then follow INDICATORS.md literally in Python.

It is written to be obviously correct, patient by patient and appointment by
appointment, not fast. It defines the answer; the SQL engine must agree with it exactly.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from fractions import Fraction

import sqlalchemy as sa

from agent.engine._exact import exact_mean
from agent.extract import schema
from fedpeer.dates import age_on, window_start
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


@dataclass(frozen=True)
class Patient:
    patient_id: str
    sex: str
    date_of_birth: date
    date_of_death: date | None
    registered_from: date
    registered_to: date | None
    imd_decile: int | None


@dataclass(frozen=True)
class Event:
    date: date
    code: str
    value: float | None


@dataclass(frozen=True)
class Item:
    patient_id: str
    date: date
    dmd_code: str
    bnf_code: str | None


@dataclass(frozen=True)
class Appointment:
    patient_id: str
    booked_on: date
    start_date: date
    status: str
    clinician_id: str
    role: str
    mode: str
    duration: float | None


def _day(value: object) -> date | None:
    """A date from whatever the database gives for a date or date-time, read as ISO text."""
    if value is None:
        return None
    if isinstance(value, date):  # a datetime is a date too
        return date(value.year, value.month, value.day)
    return date.fromisoformat(str(value).strip()[:10])


def _text(column: sa.Column) -> sa.ColumnElement:
    return sa.cast(column, sa.String)


@dataclass
class Extract:
    """All rows of the four tables, held in memory."""

    patients: list[Patient]
    events: dict[str, list[Event]]
    items: list[Item]
    appointments: list[Appointment]

    @classmethod
    def fetch(cls, connection: sa.Connection) -> Extract:
        """Read every row of the extract through the connection."""
        p, e, m, a = (
            schema.patients,
            schema.clinical_events,
            schema.medications,
            schema.appointments,
        )
        patients = [
            Patient(r[0], r[1], _day(r[2]), _day(r[3]), _day(r[4]), _day(r[5]), r[6])  # type: ignore[arg-type]
            for r in connection.execute(
                sa.select(
                    p.c.patient_id,
                    p.c.sex,
                    _text(p.c.date_of_birth),
                    _text(p.c.date_of_death),
                    _text(p.c.registered_from),
                    _text(p.c.registered_to),
                    p.c.imd_decile,
                )
            )
        ]
        events: dict[str, list[Event]] = defaultdict(list)
        for r in connection.execute(
            sa.select(e.c.patient_id, _text(e.c.date), e.c.snomed_code, e.c.numeric_value)
        ):
            events[r[0]].append(Event(_day(r[1]), r[2], r[3]))  # type: ignore[arg-type]
        items = [
            Item(r[0], _day(r[1]), r[2], r[3])  # type: ignore[arg-type]
            for r in connection.execute(
                sa.select(m.c.patient_id, _text(m.c.date), m.c.dmd_code, m.c.bnf_code)
            )
        ]
        appointments = [
            Appointment(r[0], _day(r[1]), _day(r[2]), r[3], r[4], r[5], r[6], r[7])  # type: ignore[arg-type]
            for r in connection.execute(
                sa.select(
                    a.c.patient_id,
                    _text(a.c.booked_on),
                    _text(a.c.starts_at),
                    a.c.status,
                    a.c.clinician_id,
                    a.c.clinician_role,
                    a.c.mode,
                    a.c.duration_minutes,
                )
            )
        ]
        return cls(patients, dict(events), items, appointments)


def is_registered(p: Patient, as_of: date) -> bool:
    """Registered on as_of, alive on as_of (INDICATORS.md "registered")."""
    return (
        p.registered_from <= as_of
        and (p.registered_to is None or p.registered_to >= as_of)
        and (p.date_of_death is None or p.date_of_death > as_of)
    )


def age_band(age: int) -> str:
    """The 5-year age band of an age: 0-4 ... 80-84, 85+."""
    return AGE_BANDS[max(0, min(age // 5, len(AGE_BANDS) - 1))]


class _Evaluator:
    def __init__(self, extract: Extract, as_of: date) -> None:
        self.x, self.as_of = extract, as_of
        self.by_patient: dict[str, list[Item]] = defaultdict(list)
        for item in extract.items:
            self.by_patient[item.patient_id].append(item)
        self.appts_by_patient: dict[str, list[Appointment]] = defaultdict(list)
        for appt in extract.appointments:
            self.appts_by_patient[appt.patient_id].append(appt)

    def in_window(self, day: date, months: int | None) -> bool:
        if months is None:
            return True
        return window_start(self.as_of, months) <= day <= self.as_of

    def has_condition(self, events: list[Event], diagnosis: frozenset, resolved: frozenset) -> bool:
        diagnosed = [e.date for e in events if e.code in diagnosis and e.date <= self.as_of]
        if not diagnosed:
            return False
        latest = max(diagnosed)
        return not any(e.code in resolved and latest <= e.date <= self.as_of for e in events)

    def item_matches(self, item: Item, crit: MedicationCriteria) -> bool:
        if not self.in_window(item.date, crit.within_months):
            return False
        by_bnf = item.bnf_code is not None and any(
            item.bnf_code.startswith(p) for p in crit.bnf_prefixes
        )
        by_dmd = crit.dmd is not None and item.dmd_code in crit.dmd.codes
        return by_bnf or by_dmd

    def patient_matches(self, p: Patient, crit: PatientCriteria) -> bool:
        as_of = self.as_of
        if crit.registered and not is_registered(p, as_of):
            return False
        age = age_on(p.date_of_birth, as_of)
        if crit.age_min is not None and age < crit.age_min:
            return False
        if crit.age_max is not None and age > crit.age_max:
            return False
        if crit.sex is not None and p.sex not in crit.sex:
            return False
        events = self.x.events.get(p.patient_id, [])
        for c in crit.has_condition:
            resolved = frozenset(c.resolved.codes if c.resolved else ())
            if not self.has_condition(events, frozenset(c.diagnosis.codes), resolved):
                return False
        for ev in crit.has_event:
            codes = frozenset(ev.codelist.codes)
            if not any(
                e.code in codes and self.in_window(e.date, ev.within_months) for e in events
            ):
                return False
        for med in crit.has_medication:
            if not any(self.item_matches(i, med) for i in self.by_patient.get(p.patient_id, [])):
                return False
        for lv in crit.latest_value:
            codes = frozenset(lv.codelist.codes)
            readings = [
                (e.date, e.value)
                for e in events
                if e.code in codes
                and self.in_window(e.date, lv.within_months)
                and e.value is not None
            ]
            if not readings:
                return False
            _, value = max(readings)  # latest date, then highest value on that date
            if not _compare(value, lv.comparator, lv.threshold):
                return False
        return True

    def appointment_matches(self, a: Appointment, crit: AppointmentCriteria) -> bool:
        if not self.in_window(a.start_date, crit.within_months):
            return False
        if crit.statuses is not None and a.status not in crit.statuses:
            return False
        if crit.roles is not None and a.role not in crit.roles:
            return False
        if crit.modes is not None and a.mode not in crit.modes:
            return False
        if crit.booked_not_after_start and a.booked_on > a.start_date:
            return False
        lead = (a.start_date - a.booked_on).days
        if crit.lead_time_min_days is not None and lead < crit.lead_time_min_days:
            return False
        if crit.lead_time_max_days is not None and lead > crit.lead_time_max_days:
            return False
        return crit.duration_above is None or (
            a.duration is not None and a.duration > crit.duration_above
        )

    def upc(self, p: Patient, value: UsualProviderOfCare) -> Fraction | None:
        seen = [
            a
            for a in self.appts_by_patient.get(p.patient_id, [])
            if self.appointment_matches(a, value.appointments)
        ]
        if len(seen) < value.min_appointments:
            return None
        most = max(Counter(a.clinician_id for a in seen).values())
        return Fraction(most, len(seen))

    def measure(self, d: IndicatorDefinition, patients: list[Patient], whole: bool = True):
        """The measure of one definition over the given patients (all, or one stratum)."""
        if d.unit is Unit.APPOINTMENTS:
            return self.appointment_measure(d)
        if d.kind is Kind.RATE:
            assert isinstance(d.numerator, MedicationCriteria) and isinstance(
                d.denominator, PatientCriteria
            )
            # The whole practice counts every item; a stratum, its own patients' items.
            ids = None if whole else {p.patient_id for p in patients}
            items = sum(
                1
                for i in self.x.items
                if self.item_matches(i, d.numerator) and (ids is None or i.patient_id in ids)
            )
            people = sum(1 for p in patients if self.patient_matches(p, d.denominator))
            return Rate(items, people, d.per)
        if d.kind is Kind.PROPORTION:
            assert isinstance(d.denominator, PatientCriteria) and isinstance(
                d.numerator, PatientCriteria
            )
            den = [p for p in patients if self.patient_matches(p, d.denominator)]
            num = [p for p in den if self.patient_matches(p, d.numerator)]
            return Proportion(len(num), len(den))
        assert isinstance(d.population, PatientCriteria)
        pop = [p for p in patients if self.patient_matches(p, d.population)]
        if d.kind is Kind.COUNT:
            return Count(len(pop))
        if d.kind is Kind.MEAN:
            assert isinstance(d.value, UsualProviderOfCare)
            values = [v for p in pop if (v := self.upc(p, d.value)) is not None]
            count, mean = exact_mean((v, 1) for v in values)
            return Mean(count, mean)
        assert d.breakdown is not None
        if d.breakdown.by is BreakdownBy.SEX_AGE_BAND:
            keys = [f"{p.sex}.{age_band(age_on(p.date_of_birth, self.as_of))}" for p in pop]
            categories = SEX_AGE_BANDS
        else:
            keys = [str(p.imd_decile) if p.imd_decile in range(1, 11) else "unknown" for p in pop]
            categories = IMD_CATEGORIES
        counts = Counter(keys)
        return Breakdown(tuple((c, counts[c]) for c in categories), len(pop))

    def appointment_measure(self, d: IndicatorDefinition):
        appts = self.x.appointments
        if d.kind is Kind.PROPORTION:
            assert isinstance(d.denominator, AppointmentCriteria) and isinstance(
                d.numerator, AppointmentCriteria
            )
            den = [a for a in appts if self.appointment_matches(a, d.denominator)]
            num = [a for a in den if self.appointment_matches(a, d.numerator)]
            return Proportion(len(num), len(den))
        assert isinstance(d.population, AppointmentCriteria)
        pop = [a for a in appts if self.appointment_matches(a, d.population)]
        if d.kind is Kind.COUNT:
            return Count(len(pop))
        if d.kind is Kind.MEAN:
            count, mean = exact_mean((a.duration, 1) for a in pop)  # type: ignore[misc]
            return Mean(count, mean)
        assert d.breakdown is not None
        field = {
            BreakdownBy.CLINICIAN_ROLE: "role",
            BreakdownBy.MODE: "mode",
            BreakdownBy.STATUS: "status",
        }[d.breakdown.by]
        counts = Counter(getattr(a, field) for a in pop)
        return Breakdown(tuple((c, counts[c]) for c in d.breakdown.categories), len(pop))


def _compare(value: float, comparator: Comparator, threshold: float) -> bool:
    if comparator is Comparator.AT_MOST:
        return value <= threshold
    if comparator is Comparator.AT_LEAST:
        return value >= threshold
    if comparator is Comparator.BELOW:
        return value < threshold
    return value > threshold


def evaluate(
    definitions: Sequence[IndicatorDefinition],
    connection: sa.Connection,
    as_of: date,
    *,
    by_age_sex: bool = False,
) -> list[IndicatorResult]:
    """Evaluate each definition on as_of; with ``by_age_sex``, patient-based ones by stratum too."""
    ev = _Evaluator(Extract.fetch(connection), as_of)
    results = []
    for d in definitions:
        results.append(IndicatorResult(d.id, ev.measure(d, ev.x.patients)))
        if by_age_sex and d.stratifiable:
            groups: dict[str, list[Patient]] = {s: [] for s in SEX_AGE_BANDS}
            for p in ev.x.patients:
                key = f"{p.sex}.{age_band(age_on(p.date_of_birth, as_of))}"
                if key in groups:
                    groups[key].append(p)
            for stratum in SEX_AGE_BANDS:
                measure = ev.measure(d, groups[stratum], whole=False)
                results.append(IndicatorResult(d.id, measure, stratum))
    return results
