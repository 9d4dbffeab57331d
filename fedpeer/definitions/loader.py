"""Build definitions from plain data (TOML files, or the wire form), validating every field.

The same builder serves both: a TOML file names its codelists by file name (read from
``codelists/`` beside it); the wire form carries them inline. Every problem is a
``DefinitionError`` naming the source, the field and what is wrong.
"""

from __future__ import annotations

import csv
import io
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from fedpeer.definitions.model import (
    CODE_PATTERN,
    CODELIST_NAME_PATTERN,
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
    Standardise,
    Unit,
    UsualProviderOfCare,
)
from fedpeer.errors import DefinitionError
from fedpeer.measures import Kind

CodelistResolver = Callable[[str], Codelist]
_MISSING = object()


class _Fields:
    """Takes typed fields out of one table, then complains about anything left over."""

    def __init__(self, data: object, where: str, source: str) -> None:
        self.where, self.source = where, source
        if not isinstance(data, Mapping):
            self.fail("", "must be a table")
        self.data = dict(data)  # type: ignore[arg-type]

    def fail(self, key: str, problem: str) -> None:
        name = ".".join(p for p in (self.where, key) if p) or "(top level)"
        raise DefinitionError(f"{self.source}: field {name}: {problem}")

    def path(self, key: str) -> str:
        return ".".join(p for p in (self.where, key) if p)

    def take(self, key: str, kind: type | tuple[type, ...], default: Any = _MISSING) -> Any:
        if key not in self.data:
            if default is _MISSING:
                self.fail(key, "missing field")
            return default
        value = self.data.pop(key)
        kinds = kind if isinstance(kind, tuple) else (kind,)
        ok = isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)
        if not ok:
            names = " or ".join(_TYPE_NAMES.get(k, k.__name__) for k in kinds)
            self.fail(
                key, f"must be {names}, not {_TYPE_NAMES.get(type(value), type(value).__name__)}"
            )
        return value

    def take_strings(self, key: str) -> tuple[str, ...] | None:
        value = self.take(key, list, None)
        if value is None:
            return None
        if not all(isinstance(v, str) for v in value):
            self.fail(key, "must be a list of strings")
        return tuple(value)

    def take_choice(self, key: str, enum: type, default: Any = _MISSING) -> Any:
        value = self.take(key, str, default)
        if value is None or value is default:
            return value
        try:
            return enum(value)
        except ValueError:
            allowed = ", ".join(m.value for m in enum)  # type: ignore[attr-defined]
            self.fail(key, f"unknown value {value!r} (allowed: {allowed})")

    def done(self) -> None:
        for key in self.data:
            self.fail(key, "unknown key")


_TYPE_NAMES = {
    str: "a string",
    int: "a whole number",
    float: "a number",
    bool: "true or false",
    list: "a list",
    dict: "a table",
}


def _build(make: Callable[[], Any], fields: _Fields, key: str = "") -> Any:
    """Run a model constructor, naming the field when it rejects its values."""
    try:
        return make()
    except DefinitionError as exc:
        fields.fail(key, str(exc))


class Builder:
    """Turns one definition's plain data into an ``IndicatorDefinition``."""

    def __init__(self, source: str, resolve: CodelistResolver) -> None:
        self.source, self.resolve = source, resolve

    def codelist(self, f: _Fields, key: str, required: bool = True) -> Codelist | None:
        name = f.take(key, str, _MISSING if required else None)
        if name is None:
            return None
        if not CODELIST_NAME_PATTERN.match(name):
            f.fail(key, f"codelist must be named like name.csv, not {name!r}")
        try:
            return self.resolve(name)
        except DefinitionError as exc:
            f.fail(key, str(exc))
        raise AssertionError  # pragma: no cover - fail() always raises

    def items(self, f: _Fields, key: str) -> list[_Fields]:
        raw = f.take(key, list, [])
        return [_Fields(item, f"{f.path(key)}[{i}]", self.source) for i, item in enumerate(raw)]

    def patients(self, data: object, where: str) -> PatientCriteria:
        f = _Fields(data, where, self.source)
        registered = f.take("registered", bool, False)
        age_min = f.take("age_min", int, None)
        age_max = f.take("age_max", int, None)
        sex = f.take_strings("sex")
        conditions = []
        for c in self.items(f, "has_condition"):
            diagnosis = self.codelist(c, "diagnosis")
            resolved = self.codelist(c, "resolved", required=False)
            c.done()
            conditions.append(Condition(diagnosis, resolved))  # type: ignore[arg-type]
        events = []
        for e in self.items(f, "has_event"):
            codelist = self.codelist(e, "codelist")
            months = e.take("within_months", int)
            e.done()
            events.append(_build(lambda: EventInWindow(codelist, months), e))  # noqa: B023
        meds = [self.medications(m) for m in self.items(f, "has_medication")]
        values = [self.latest_value(v) for v in self.items(f, "latest_value")]
        f.done()
        return _build(
            lambda: PatientCriteria(
                registered=registered,
                age_min=age_min,
                age_max=age_max,
                sex=sex,
                has_condition=tuple(conditions),
                has_event=tuple(events),
                has_medication=tuple(meds),
                latest_value=tuple(values),
            ),
            f,
        )

    def latest_value(self, f: _Fields) -> LatestValue:
        codelist = self.codelist(f, "codelist")
        months = f.take("within_months", int)
        label = f.take("label", str, "")
        unit = f.take("unit", str, "")
        present = [c for c in Comparator if c.value in f.data]
        if len(present) != 1:
            f.fail("", "needs exactly one of " + ", ".join(c.value for c in Comparator))
        comparator = present[0]
        threshold = f.take(comparator.value, (int, float))
        f.done()
        return _build(
            lambda: LatestValue(codelist, months, comparator, threshold, label, unit),  # type: ignore[arg-type]
            f,
        )

    def medications(self, f: _Fields) -> MedicationCriteria:
        months = f.take("within_months", int)
        prefixes = f.take_strings("bnf_prefixes") or ()
        dmd = self.codelist(f, "dmd", required=False)
        f.done()
        return _build(lambda: MedicationCriteria(months, prefixes, dmd), f)

    def appointments(self, data: object, where: str) -> AppointmentCriteria:
        f = _Fields(data, where, self.source)
        kwargs = {
            "within_months": f.take("within_months", int, None),
            "statuses": f.take_strings("statuses"),
            "roles": f.take_strings("roles"),
            "modes": f.take_strings("modes"),
            "booked_not_after_start": f.take("booked_not_after_start", bool, False),
            "lead_time_min_days": f.take("lead_time_min_days", int, None),
            "lead_time_max_days": f.take("lead_time_max_days", int, None),
            "duration_above": f.take("duration_above", (int, float), None),
        }
        f.done()
        return _build(lambda: AppointmentCriteria(**kwargs), f)

    def criteria(self, unit: Unit, data: object, where: str) -> Any:
        if unit is Unit.PATIENTS:
            return self.patients(data, where)
        if unit is Unit.APPOINTMENTS:
            return self.appointments(data, where)
        return self.medications(_Fields(data, where, self.source))

    def definition(self, data: object) -> IndicatorDefinition:
        f = _Fields(data, "", self.source)
        ident = f.take("id", str)
        version = f.take("version", int)
        title = f.take("title", str)
        description = f.take("description", str, "")
        kind = f.take_choice("kind", Kind)
        unit = f.take_choice("unit", Unit)
        per = f.take("per", int, 1000)
        standardise = f.take_choice("standardise", Standardise, None)
        parts: dict[str, Any] = {}
        if "denominator" in f.data:
            # a rate's denominator is people, whatever its numerator counts
            den_unit = Unit.PATIENTS if kind is Kind.RATE else unit
            parts["denominator"] = self.criteria(den_unit, f.data.pop("denominator"), "denominator")
        if "numerator" in f.data:
            parts["numerator"] = self.criteria(unit, f.data.pop("numerator"), "numerator")
        if "population" in f.data:
            parts["population"] = self.criteria(unit, f.data.pop("population"), "population")
        if "value" in f.data:
            parts["value"] = self.value(f)
        if "breakdown" in f.data:
            b = _Fields(f.data.pop("breakdown"), "breakdown", self.source)
            by = b.take_choice("by", BreakdownBy)
            categories = b.take_strings("categories") or ()
            b.done()
            parts["breakdown"] = _build(lambda: BreakdownSpec(by, categories), b)
        f.done()
        return _build(
            lambda: IndicatorDefinition(
                id=ident,
                version=version,
                title=title,
                description=description,
                kind=kind,
                unit=unit,
                per=per,
                standardise=standardise,
                **parts,
            ),
            f,
        )

    def value(self, f: _Fields) -> UsualProviderOfCare | str:
        raw = f.data.pop("value")
        if isinstance(raw, str):
            return raw
        v = _Fields(raw, "value", self.source)
        derived = v.take("derived", str)
        if derived != "usual_provider_of_care":
            v.fail(
                "derived", f"unknown derived value {derived!r} (allowed: usual_provider_of_care)"
            )
        appointments = self.appointments(v.take("appointments", dict), "value.appointments")
        minimum = v.take("min_appointments", int, 3)
        v.done()
        return _build(lambda: UsualProviderOfCare(appointments, minimum), v)


def parse_codelist_csv(name: str, text: str) -> Codelist:
    """Read an OpenCodelists CSV (``code,term``; extra columns ignored)."""
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    if reader.fieldnames is None or "code" not in reader.fieldnames:
        raise DefinitionError(f"codelist {name}: the header must have a code column")
    entries: dict[str, str] = {}
    for line, row in enumerate(reader, start=2):
        code = (row.get("code") or "").strip()
        if not CODE_PATTERN.match(code):
            raise DefinitionError(f"codelist {name}: line {line}: bad code {code!r}")
        if code in entries:
            raise DefinitionError(f"codelist {name}: line {line}: repeated code {code}")
        entries[code] = (row.get("term") or "").strip()
    if not entries:
        raise DefinitionError(f"codelist {name}: no codes")
    return Codelist(name, tuple(sorted(entries.items())))


def directory_resolver(directory: Path) -> CodelistResolver:
    """Resolve codelist file names against a directory, reading each file once."""
    cache: dict[str, Codelist] = {}

    def resolve(name: str) -> Codelist:
        if name not in cache:
            path = directory / name
            if not path.is_file():
                raise DefinitionError(
                    f"unknown codelist {name!r} (no file {path.name} in codelists/)"
                )
            cache[name] = parse_codelist_csv(name, path.read_text(encoding="utf-8"))
        return cache[name]

    return resolve


def load_definition(path: Path, codelists: Path | None = None) -> IndicatorDefinition:
    """Load and validate one TOML definition file; codelists default to ``codelists/`` beside it."""
    source = path.name
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise DefinitionError(f"{source}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise DefinitionError(f"{source}: cannot read: {exc.strerror}") from None
    resolver = directory_resolver(codelists or path.parent / "codelists")
    return Builder(source, resolver).definition(data)
