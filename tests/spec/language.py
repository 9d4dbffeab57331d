"""Definitions that use the parts of the language the standard set does not (for tests)."""

from __future__ import annotations

from fedpeer.definitions import (
    AppointmentCriteria,
    BreakdownBy,
    BreakdownSpec,
    Codelist,
    Comparator,
    Condition,
    EventInWindow,
    IndicatorDefinition,
    LatestValue,
    MedicationCriteria,
    PatientCriteria,
    Unit,
)
from fedpeer.measures import Kind

HBA1C = Codelist("hba1c.csv", (("999791000000106", "HbA1c"),))
DIABETES = Codelist("diabetes.csv", (("44054006", "T2"), ("73211009", "DM")))
INHALERS = Codelist("inhalers.csv", (("100000001", "a"), ("100000002", "b")))
FLU = Codelist("flu.csv", (("822851000000102", "flu"),))
REGISTERED = PatientCriteria(registered=True)


def _d(ident: str, kind: Kind, unit: Unit, **parts: object) -> IndicatorDefinition:
    return IndicatorDefinition(ident, 1, ident, "", kind, unit, **parts)  # type: ignore[arg-type]


def language_definitions() -> list[IndicatorDefinition]:
    """One definition per language feature the standard set leaves out."""
    value = lambda c, t: LatestValue(HBA1C, 6, c, t)  # noqa: E731
    return [
        _d(
            "x.hba1c_comparators",
            Kind.PROPORTION,
            Unit.PATIENTS,
            denominator=PatientCriteria(registered=True, has_condition=(Condition(DIABETES),)),
            numerator=PatientCriteria(
                latest_value=(value(Comparator.AT_LEAST, 48), value(Comparator.BELOW, 75))
            ),
        ),
        _d(
            "x.hba1c_above",
            Kind.PROPORTION,
            Unit.PATIENTS,
            denominator=PatientCriteria(registered=True, sex=("male",), age_max=64),
            numerator=PatientCriteria(latest_value=(value(Comparator.ABOVE, 58),)),
        ),
        _d(
            "x.dmd_and_flu_24m",
            Kind.PROPORTION,
            Unit.PATIENTS,
            denominator=PatientCriteria(
                registered=True,
                has_medication=(MedicationCriteria(3, (), INHALERS),),
            ),
            numerator=PatientCriteria(has_event=(EventInWindow(FLU, 24),)),
        ),
        _d(
            "x.items_dmd_or_bnf",
            Kind.RATE,
            Unit.MEDICATION_ITEMS,
            numerator=MedicationCriteria(1, ("0501", "0301011"), INHALERS),
            denominator=PatientCriteria(registered=True, age_min=18),
            per=100,
        ),
        _d(
            "x.booked_ahead",
            Kind.PROPORTION,
            Unit.APPOINTMENTS,
            denominator=AppointmentCriteria(within_months=3, modes=("telephone", "video")),
            numerator=AppointmentCriteria(lead_time_min_days=1, lead_time_max_days=13),
        ),
        _d(
            "x.by_mode",
            Kind.BREAKDOWN,
            Unit.APPOINTMENTS,
            population=AppointmentCriteria(within_months=1),
            breakdown=BreakdownSpec(BreakdownBy.MODE, ("face_to_face", "telephone")),
        ),
        _d(
            "x.by_status",
            Kind.BREAKDOWN,
            Unit.APPOINTMENTS,
            population=AppointmentCriteria(roles=("nurse", "gp")),
            breakdown=BreakdownSpec(BreakdownBy.STATUS, ("attended", "did_not_attend", "booked")),
        ),
        _d(
            "x.count_appointments",
            Kind.COUNT,
            Unit.APPOINTMENTS,
            population=AppointmentCriteria(duration_above=9.5),
        ),
        _d(
            "x.count_diabetes",
            Kind.COUNT,
            Unit.PATIENTS,
            population=PatientCriteria(registered=True, has_condition=(Condition(DIABETES),)),
        ),
        _d(
            "x.imd_over_65",
            Kind.BREAKDOWN,
            Unit.PATIENTS,
            population=PatientCriteria(registered=True, age_min=65),
            breakdown=BreakdownSpec(BreakdownBy.IMD_DECILE),
        ),
    ]
