"""Plain sentences describing a definition on a reference date, for a practice manager.

For example: "Of patients registered on 30 September 2026, aged 17 or over, with diabetes
not since resolved: those whose latest HbA1c in the 12 months to 30 September 2026 was 58
mmol/mol or less."
"""

from __future__ import annotations

from datetime import date

from fedpeer.dates import long_date, window_start
from fedpeer.definitions.model import (
    AppointmentCriteria,
    BreakdownBy,
    Codelist,
    Comparator,
    IndicatorDefinition,
    LatestValue,
    MedicationCriteria,
    PatientCriteria,
    Unit,
    UsualProviderOfCare,
)
from fedpeer.measures import Kind

_COMPARATORS = {
    Comparator.AT_MOST: "or less",
    Comparator.AT_LEAST: "or more",
    Comparator.BELOW: "",
    Comparator.ABOVE: "",
}


_ROLES = {"gp": "GP", "hca": "healthcare assistant"}


def _name(codelist: Codelist) -> str:
    """A codelist's name as words: ``diabetes-resolved.csv`` -> ``diabetes resolved``."""
    return codelist.name.removesuffix(".csv").replace("-", " ").replace("_", " ")


def _number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def _join(parts: list[str]) -> str:
    if len(parts) <= 1:
        return "".join(parts)
    return ", ".join(parts[:-1]) + " and " + parts[-1]


class _Words:
    def __init__(self, as_of: date) -> None:
        self.as_of = as_of
        self.day = long_date(as_of)

    def window(self, months: int | None) -> str:
        if months is None:
            return ""
        start = long_date(window_start(self.as_of, months))
        return f"in the {months} months to {self.day} ({start} to {self.day})"

    def value(self, v: LatestValue) -> str:
        label = v.label or _name(v.codelist)
        unit = f" {v.unit}" if v.unit else ""
        threshold = _number(v.threshold)
        if v.comparator is Comparator.BELOW:
            test = f"below {threshold}{unit}"
        elif v.comparator is Comparator.ABOVE:
            test = f"above {threshold}{unit}"
        else:
            test = f"{threshold}{unit} {_COMPARATORS[v.comparator]}"
        return f"latest {label} {self.window(v.within_months)} was {test}"

    def tie_rule(self) -> str:
        return (
            "The latest value is the most recent reading with a value; where several share "
            "that date, the highest. Each value is taken on its own and compared as recorded."
        )

    def medication(self, m: MedicationCriteria) -> str:
        what = []
        if m.bnf_prefixes:
            what.append("a BNF code starting " + " or ".join(m.bnf_prefixes))
        if m.dmd is not None:
            what.append(f"a dm+d code in the {_name(m.dmd)} codelist")
        return f"issued {self.window(m.within_months)} with {' or '.join(what)}"

    def patients(self, c: PatientCriteria) -> list[str]:
        parts = []
        if c.sex is not None:
            parts.append(" or ".join(c.sex))
        if c.age_min is not None and c.age_max is not None:
            parts.append(f"aged {c.age_min} to {c.age_max}")
        elif c.age_min is not None:
            parts.append(f"aged {c.age_min} or over")
        elif c.age_max is not None:
            parts.append(f"aged under {c.age_max + 1}")
        for cond in c.has_condition:
            text = f"with {_name(cond.diagnosis)} (a diagnosis code dated on or before {self.day}"
            if cond.resolved:
                text += f", with no {_name(cond.resolved)} code on or after the latest one"
            parts.append(text + ")")
        for m in c.has_medication:
            parts.append(f"with a medication item {self.medication(m)}")
        for e in c.has_event:
            name = _name(e.codelist)
            article = "an" if name[:1] in "aeiou" else "a"
            parts.append(f"with {article} {name} event {self.window(e.within_months)}")
        return parts

    def whose(self, c: PatientCriteria) -> str:
        parts = [f"whose {self.value(v)}" for v in c.latest_value]
        parts += self.patients(c)
        return _join(parts)

    def appointments(self, c: AppointmentCriteria) -> str:
        parts = []
        if c.statuses is not None:
            parts.append("with status " + " or ".join(s.replace("_", " ") for s in c.statuses))
        if c.roles is not None:
            parts.append("with a " + " or ".join(_ROLES.get(r, r) for r in c.roles))
        if c.modes is not None:
            parts.append("held " + " or ".join(m.replace("_", " ") for m in c.modes))
        if c.within_months is not None:
            parts.append("starting " + self.window(c.within_months))
        if c.booked_not_after_start:
            parts.append("booked on or before the day they took place")
        if c.lead_time_min_days is not None:
            parts.append(f"booked at least {c.lead_time_min_days} days ahead")
        if c.lead_time_max_days is not None:
            parts.append(f"taking place within {c.lead_time_max_days} days of booking")
        if c.duration_above is not None:
            parts.append(f"with a recorded length above {_number(c.duration_above)} minutes")
        return _join(parts)

    def population(self, c: PatientCriteria) -> str:
        return ", ".join([f"patients registered on {self.day}", *self.patients(c)])


def explain(defn: IndicatorDefinition, as_of: date) -> str:
    """Plain sentences saying exactly what ``defn`` counts on ``as_of``."""
    w = _Words(as_of)
    head = f"{defn.title} ({defn.id}, version {defn.version})."
    if defn.unit is Unit.APPOINTMENTS:
        head += " Every appointment counts, whether or not its patient is still registered."
    body = _body(defn, w)
    return f"{head}\n{body}"


def _body(d: IndicatorDefinition, w: _Words) -> str:
    if d.kind is Kind.PROPORTION and isinstance(d.denominator, PatientCriteria):
        assert isinstance(d.numerator, PatientCriteria)
        text = f"Of {w.population(d.denominator)}: those {w.whose(d.numerator)}."
        return text + (" " + w.tie_rule() if d.numerator.latest_value else "")
    if d.kind is Kind.PROPORTION:
        assert isinstance(d.denominator, AppointmentCriteria)
        assert isinstance(d.numerator, AppointmentCriteria)
        return (
            f"Of appointments {w.appointments(d.denominator)}: those {w.appointments(d.numerator)}."
        )
    if d.kind is Kind.RATE:
        assert isinstance(d.numerator, MedicationCriteria)
        assert isinstance(d.denominator, PatientCriteria)
        return (
            f"Medication items {w.medication(d.numerator)}, for any patient, "
            f"per {d.per:,} {w.population(d.denominator)}."
        )
    if d.kind is Kind.MEAN and isinstance(d.value, UsualProviderOfCare):
        assert isinstance(d.population, PatientCriteria)
        v = d.value
        return (
            f"Of {w.population(d.population)} with {v.min_appointments} or more appointments "
            f"{w.appointments(v.appointments)}: the mean, over those patients, of the share of "
            "those appointments with the clinician they saw most "
            "(the Usual Provider of Care index)."
        )
    if d.kind is Kind.MEAN:
        assert isinstance(d.population, AppointmentCriteria)
        return (
            f"The mean recorded length in minutes of appointments {w.appointments(d.population)}."
        )
    if d.kind is Kind.COUNT and isinstance(d.population, PatientCriteria):
        return f"The number of {w.population(d.population)}."
    if d.kind is Kind.COUNT:
        assert isinstance(d.population, AppointmentCriteria)
        return f"The number of appointments {w.appointments(d.population)}."
    assert d.breakdown is not None
    by = {
        BreakdownBy.CLINICIAN_ROLE: "the role of the clinician",
        BreakdownBy.MODE: "mode",
        BreakdownBy.STATUS: "status",
        BreakdownBy.SEX_AGE_BAND: "sex and 5-year age band on that date",
        BreakdownBy.IMD_DECILE: "the deprivation (IMD) decile of their home area, or unknown",
    }[d.breakdown.by]
    if isinstance(d.population, PatientCriteria):
        return f"The number of {w.population(d.population)}, by {by}."
    assert isinstance(d.population, AppointmentCriteria)
    categories = ", ".join(d.breakdown.categories)
    return (
        f"The number of appointments {w.appointments(d.population)}, by {by} ({categories}), "
        "and their total."
    )
