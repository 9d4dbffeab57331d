"""The indicator definition language: frozen dataclasses that validate themselves.

A definition is data, never code: every part is one of the closed set of criteria below,
each with fixed, typed fields. Nothing in a definition is evaluated as an expression.
Codelists are carried inside the model (codes and terms), so a definition is complete
without the files it was loaded from.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from fedpeer.errors import DefinitionError
from fedpeer.measures import Kind

ID_PATTERN = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$")
CODE_PATTERN = re.compile(r"^[0-9]{6,18}$")
BNF_PREFIX_PATTERN = re.compile(r"^[0-9A-Za-z]{1,15}$")
CODELIST_NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]*\.csv$")

SEXES = ("female", "male")
STATUSES = ("attended", "did_not_attend", "cancelled_by_patient", "cancelled_by_practice", "booked")
ROLES = ("gp", "nurse", "pharmacist", "hca", "other")
MODES = ("face_to_face", "telephone", "video", "home_visit", "online")
MAX_AGE = 130
MAX_MONTHS = 1200

AGE_BANDS: tuple[str, ...] = (*tuple(f"{lo}-{lo + 4}" for lo in range(0, 85, 5)), "85+")
SEX_AGE_BANDS: tuple[str, ...] = tuple(f"{s}.{b}" for s in SEXES for b in AGE_BANDS)
IMD_CATEGORIES: tuple[str, ...] = (*(str(d) for d in range(1, 11)), "unknown")


class Unit(StrEnum):
    """What an indicator counts."""

    PATIENTS = "patients"
    APPOINTMENTS = "appointments"
    MEDICATION_ITEMS = "medication_items"


class BreakdownBy(StrEnum):
    """The categories a breakdown counts by."""

    CLINICIAN_ROLE = "clinician_role"
    MODE = "mode"
    STATUS = "status"
    SEX_AGE_BAND = "sex_age_band"
    IMD_DECILE = "imd_decile"


class Standardise(StrEnum):
    """How the coordinator may standardise an indicator's comparison (STATS.md S17)."""

    AGE_SEX = "age_sex"  # indirectly, by sex and 5-year age band


class Comparator(StrEnum):
    """How a latest value is compared with its threshold."""

    AT_MOST = "at_most"
    AT_LEAST = "at_least"
    BELOW = "below"
    ABOVE = "above"


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise DefinitionError(message)


def _check_months(months: int) -> None:
    _check(
        isinstance(months, int) and not isinstance(months, bool) and 1 <= months <= MAX_MONTHS,
        f"within_months must be a whole number from 1 to {MAX_MONTHS}",
    )


def _check_subset(name: str, values: tuple[str, ...] | None, allowed: tuple[str, ...]) -> None:
    if values is None:
        return
    _check(len(values) > 0, f"{name} must not be empty")
    _check(len(set(values)) == len(values), f"{name} has a repeated value")
    for v in values:
        _check(v in allowed, f"{name}: unknown value {v!r} (allowed: {', '.join(allowed)})")


@dataclass(frozen=True)
class Codelist:
    """A codelist in the OpenCodelists layout: codes with their terms, sorted by code."""

    name: str
    entries: tuple[tuple[str, str], ...]

    def __post_init__(self) -> None:
        _check(bool(CODELIST_NAME_PATTERN.match(self.name)), f"bad codelist name {self.name!r}")
        _check(len(self.entries) > 0, f"codelist {self.name} has no codes")
        codes = [c for c, _ in self.entries]
        for code in codes:
            _check(bool(CODE_PATTERN.match(code)), f"codelist {self.name}: bad code {code!r}")
        _check(len(set(codes)) == len(codes), f"codelist {self.name}: repeated code")
        _check(codes == sorted(codes), f"codelist {self.name}: codes must be sorted")

    @property
    def codes(self) -> tuple[str, ...]:
        """The codes, sorted."""
        return tuple(c for c, _ in self.entries)


@dataclass(frozen=True)
class Condition:
    """Has condition C: a diagnosis on or before as_of not resolved since (INDICATORS.md)."""

    diagnosis: Codelist
    resolved: Codelist | None = None


@dataclass(frozen=True)
class EventInWindow:
    """An event with a code in the codelist dated within the last N months."""

    codelist: Codelist
    within_months: int

    def __post_init__(self) -> None:
        _check_months(self.within_months)


@dataclass(frozen=True)
class LatestValue:
    """The latest numeric value in the window (ties: highest) compared with a threshold."""

    codelist: Codelist
    within_months: int
    comparator: Comparator
    threshold: float
    label: str = ""
    unit: str = ""

    def __post_init__(self) -> None:
        _check_months(self.within_months)
        _check(
            isinstance(self.threshold, int | float) and not isinstance(self.threshold, bool),
            "threshold must be a number",
        )
        _check(self.threshold == self.threshold, "threshold must be a number")


@dataclass(frozen=True)
class MedicationCriteria:
    """Medication items issued in the window whose BNF code starts with a prefix or dm+d code."""

    within_months: int
    bnf_prefixes: tuple[str, ...] = ()
    dmd: Codelist | None = None

    def __post_init__(self) -> None:
        _check_months(self.within_months)
        _check(bool(self.bnf_prefixes) or self.dmd is not None, "needs bnf_prefixes or dmd")
        for p in self.bnf_prefixes:
            _check(bool(BNF_PREFIX_PATTERN.match(p)), f"bad BNF prefix {p!r}")
        _check(len(set(self.bnf_prefixes)) == len(self.bnf_prefixes), "repeated BNF prefix")


@dataclass(frozen=True)
class PatientCriteria:
    """Conditions on a patient, all of which must hold."""

    registered: bool = False
    age_min: int | None = None
    age_max: int | None = None
    sex: tuple[str, ...] | None = None
    has_condition: tuple[Condition, ...] = ()
    has_event: tuple[EventInWindow, ...] = ()
    has_medication: tuple[MedicationCriteria, ...] = ()
    latest_value: tuple[LatestValue, ...] = ()

    def __post_init__(self) -> None:
        for name in ("age_min", "age_max"):
            v = getattr(self, name)
            if v is not None:
                _check(
                    isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= MAX_AGE,
                    f"{name} must be a whole number from 0 to {MAX_AGE}",
                )
        if self.age_min is not None and self.age_max is not None:
            _check(self.age_min <= self.age_max, "age_min is above age_max")
        _check_subset("sex", self.sex, SEXES)


@dataclass(frozen=True)
class AppointmentCriteria:
    """Conditions on an appointment, all of which must hold."""

    within_months: int | None = None
    statuses: tuple[str, ...] | None = None
    roles: tuple[str, ...] | None = None
    modes: tuple[str, ...] | None = None
    booked_not_after_start: bool = False
    lead_time_min_days: int | None = None
    lead_time_max_days: int | None = None
    duration_above: float | None = None

    def __post_init__(self) -> None:
        if self.within_months is not None:
            _check_months(self.within_months)
        _check_subset("statuses", self.statuses, STATUSES)
        _check_subset("roles", self.roles, ROLES)
        _check_subset("modes", self.modes, MODES)
        for name in ("lead_time_min_days", "lead_time_max_days"):
            v = getattr(self, name)
            if v is not None:
                _check(isinstance(v, int) and not isinstance(v, bool), f"{name} must be whole")


@dataclass(frozen=True)
class UsualProviderOfCare:
    """Per patient: the largest share of the qualifying appointments with one clinician."""

    appointments: AppointmentCriteria
    min_appointments: int = 3

    def __post_init__(self) -> None:
        _check(
            isinstance(self.min_appointments, int) and self.min_appointments >= 1,
            "min_appointments must be a whole number of at least 1",
        )


DURATION_MINUTES = "duration_minutes"
# With noise, a mean's sum is noised with each unit's value clipped to a bound, so that
# one unit moves the sum by at most the bound: a UPC index is at most 1 by definition; a
# consultation's length counts up to an hour (INDICATORS.md's means are of short visits).
DURATION_BOUND_MINUTES = 60


@dataclass(frozen=True)
class BreakdownSpec:
    """Which categories a breakdown counts, in order."""

    by: BreakdownBy
    categories: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        allowed = {
            BreakdownBy.CLINICIAN_ROLE: ROLES,
            BreakdownBy.MODE: MODES,
            BreakdownBy.STATUS: STATUSES,
        }.get(self.by)
        if allowed is None:
            _check(not self.categories, f"categories are fixed for a breakdown by {self.by}")
            fixed = SEX_AGE_BANDS if self.by is BreakdownBy.SEX_AGE_BAND else IMD_CATEGORIES
            object.__setattr__(self, "categories", fixed)
        else:
            _check(bool(self.categories), "categories must be listed")
            _check_subset("categories", self.categories, allowed)

    @property
    def unit(self) -> Unit:
        """The unit of analysis the breakdown applies to."""
        if self.by in (BreakdownBy.SEX_AGE_BAND, BreakdownBy.IMD_DECILE):
            return Unit.PATIENTS
        return Unit.APPOINTMENTS


Criteria = PatientCriteria | AppointmentCriteria | MedicationCriteria

_SHAPES: dict[tuple[Kind, Unit], dict[str, type | tuple[type, ...]]] = {
    (Kind.PROPORTION, Unit.PATIENTS): {
        "denominator": PatientCriteria,
        "numerator": PatientCriteria,
    },
    (Kind.PROPORTION, Unit.APPOINTMENTS): {
        "denominator": AppointmentCriteria,
        "numerator": AppointmentCriteria,
    },
    (Kind.MEAN, Unit.PATIENTS): {"population": PatientCriteria, "value": UsualProviderOfCare},
    (Kind.MEAN, Unit.APPOINTMENTS): {"population": AppointmentCriteria, "value": str},
    (Kind.BREAKDOWN, Unit.PATIENTS): {"population": PatientCriteria, "breakdown": BreakdownSpec},
    (Kind.BREAKDOWN, Unit.APPOINTMENTS): {
        "population": AppointmentCriteria,
        "breakdown": BreakdownSpec,
    },
    (Kind.COUNT, Unit.PATIENTS): {"population": PatientCriteria},
    (Kind.COUNT, Unit.APPOINTMENTS): {"population": AppointmentCriteria},
    (Kind.RATE, Unit.MEDICATION_ITEMS): {
        "numerator": MedicationCriteria,
        "denominator": PatientCriteria,
    },
}
PARTS = ("denominator", "numerator", "population", "value", "breakdown")


@dataclass(frozen=True)
class IndicatorDefinition:
    """One versioned indicator: what is counted, of whom, and how it is reported."""

    id: str
    version: int
    title: str
    description: str
    kind: Kind
    unit: Unit
    denominator: PatientCriteria | AppointmentCriteria | None = None
    numerator: Criteria | None = None
    population: PatientCriteria | AppointmentCriteria | None = None
    value: UsualProviderOfCare | str | None = None
    breakdown: BreakdownSpec | None = None
    per: int = 1000
    standardise: Standardise | None = None

    def __post_init__(self) -> None:
        _check(bool(ID_PATTERN.match(self.id)), f"id {self.id!r} must be lower case a-z0-9_.")
        _check(
            isinstance(self.version, int)
            and not isinstance(self.version, bool)
            and self.version >= 1,
            "version must be a whole number of at least 1",
        )
        _check(bool(self.title.strip()), "title must not be empty")
        shape = _SHAPES.get((self.kind, self.unit))
        _check(shape is not None, f"kind {self.kind} cannot have unit {self.unit}")
        assert shape is not None
        for part in PARTS:
            present = getattr(self, part)
            if part in shape:
                _check(present is not None, f"missing field {part}")
                _check(isinstance(present, shape[part]), f"{part} is not valid for this kind/unit")
            else:
                _check(present is None, f"{part} is not used by a {self.kind} of {self.unit}")
        if self.kind is Kind.MEAN and self.unit is Unit.APPOINTMENTS:
            _check(self.value == DURATION_MINUTES, f"value must be {DURATION_MINUTES!r}")
        if self.breakdown is not None:
            _check(
                self.breakdown.unit is self.unit,
                f"cannot break {self.unit} down by {self.breakdown.by}",
            )
        for part in ("denominator", "population"):
            crit = getattr(self, part)
            if isinstance(crit, PatientCriteria):
                _check(crit.registered, f"{part}: patients must be registered = true")
        _check(
            isinstance(self.per, int) and not isinstance(self.per, bool) and self.per >= 1,
            "per must be a positive whole number",
        )
        _check(self.kind is Kind.RATE or self.per == 1000, "per is only for a rate")
        _check(
            self.standardise is None or self.standardisable,
            "standardise is only for a rate, or a proportion of patients",
        )

    @property
    def stratifiable(self) -> bool:
        """Whether it is also evaluated by sex and 5-year age band when strata are asked for.

        A rate's strata count the items of the stratum's patients (by their sex and age on
        ``as_of``, registered or not) over the stratum's registered patients.
        """
        return (self.unit is Unit.PATIENTS and self.kind is not Kind.BREAKDOWN) or (
            self.kind is Kind.RATE
        )

    @property
    def standardisable(self) -> bool:
        """Whether indirect standardisation (S17: an observed count over an expected one) fits.

        O must be a count of events among the denominator's people, as a rate's items or a
        proportion's patients are; a mean or a breakdown has none.
        """
        return self.kind is Kind.RATE or (
            self.kind is Kind.PROPORTION and self.unit is Unit.PATIENTS
        )

    @property
    def value_bound(self) -> float | None:
        """For a mean, the most one unit may add to its sum when the sum is noised."""
        if self.kind is not Kind.MEAN:
            return None
        return 1.0 if isinstance(self.value, UsualProviderOfCare) else DURATION_BOUND_MINUTES
