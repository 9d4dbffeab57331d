"""Canonical, self-contained bytes for a definition, and the content hash over them.

The wire form is the TOML form as JSON (sorted keys, no spaces, UTF-8) plus every
codelist it names, inline, with codes and terms. ``content_hash`` is the sha256 of
exactly these bytes, so two definitions with the same hash ask the same question of
the same codes. ``deserialize`` runs the same validation as loading a file.

``meaning_hash`` names what a question means, not how it is worded: the population,
the measure, the codes, the dates and the filters, without the id, version, title,
description, codelist names and terms, or a value's label and unit. The agent's ledger
keys releases by it, so a reworded or renamed question gets the answer already given.
"""

from __future__ import annotations

import json
from typing import Any

from fedpeer.canonical import canonical_json, sha256_hex
from fedpeer.definitions.loader import Builder
from fedpeer.definitions.model import (
    AppointmentCriteria,
    Codelist,
    IndicatorDefinition,
    MedicationCriteria,
    PatientCriteria,
    UsualProviderOfCare,
)
from fedpeer.errors import DefinitionError

WIRE_FORMAT = "fedpeer-definition/1"
_WIRE_SOURCE = "definition from the wire"


def _number(x: float) -> int | float:
    return int(x) if isinstance(x, float) and x.is_integer() else x


def _medications(m: MedicationCriteria, codelists: dict[str, Codelist]) -> dict[str, Any]:
    out: dict[str, Any] = {"within_months": m.within_months}
    if m.bnf_prefixes:
        out["bnf_prefixes"] = list(m.bnf_prefixes)
    if m.dmd is not None:
        codelists[m.dmd.name] = m.dmd
        out["dmd"] = m.dmd.name
    return out


def _patients(p: PatientCriteria, codelists: dict[str, Codelist]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if p.registered:
        out["registered"] = True
    if p.age_min is not None:
        out["age_min"] = p.age_min
    if p.age_max is not None:
        out["age_max"] = p.age_max
    if p.sex is not None:
        out["sex"] = list(p.sex)
    if p.has_condition:
        out["has_condition"] = []
        for c in p.has_condition:
            codelists[c.diagnosis.name] = c.diagnosis
            item = {"diagnosis": c.diagnosis.name}
            if c.resolved is not None:
                codelists[c.resolved.name] = c.resolved
                item["resolved"] = c.resolved.name
            out["has_condition"].append(item)
    if p.has_event:
        out["has_event"] = []
        for e in p.has_event:
            codelists[e.codelist.name] = e.codelist
            out["has_event"].append({"codelist": e.codelist.name, "within_months": e.within_months})
    if p.has_medication:
        out["has_medication"] = [_medications(m, codelists) for m in p.has_medication]
    if p.latest_value:
        out["latest_value"] = []
        for v in p.latest_value:
            codelists[v.codelist.name] = v.codelist
            item = {
                "codelist": v.codelist.name,
                "within_months": v.within_months,
                v.comparator.value: _number(v.threshold),
            }
            if v.label:
                item["label"] = v.label
            if v.unit:
                item["unit"] = v.unit
            out["latest_value"].append(item)
    return out


def _appointments(a: AppointmentCriteria) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in ("within_months", "lead_time_min_days", "lead_time_max_days"):
        if getattr(a, name) is not None:
            out[name] = getattr(a, name)
    for name in ("statuses", "roles", "modes"):
        if getattr(a, name) is not None:
            out[name] = list(getattr(a, name))
    if a.booked_not_after_start:
        out["booked_not_after_start"] = True
    if a.duration_above is not None:
        out["duration_above"] = _number(a.duration_above)
    return out


def _criteria(c: object, codelists: dict[str, Codelist]) -> dict[str, Any]:
    if isinstance(c, PatientCriteria):
        return _patients(c, codelists)
    if isinstance(c, AppointmentCriteria):
        return _appointments(c)
    assert isinstance(c, MedicationCriteria)
    return _medications(c, codelists)


def to_data(defn: IndicatorDefinition) -> tuple[dict[str, Any], dict[str, Codelist]]:
    """The definition as TOML-shaped plain data, and the codelists it names."""
    codelists: dict[str, Codelist] = {}
    out: dict[str, Any] = {
        "id": defn.id,
        "version": defn.version,
        "title": defn.title,
        "description": defn.description,
        "kind": defn.kind.value,
        "unit": defn.unit.value,
    }
    if defn.per != 1000:
        out["per"] = defn.per
    if defn.standardise is not None:
        out["standardise"] = defn.standardise.value
    for part in ("denominator", "numerator", "population"):
        crit = getattr(defn, part)
        if crit is not None:
            out[part] = _criteria(crit, codelists)
    if isinstance(defn.value, UsualProviderOfCare):
        out["value"] = {
            "derived": "usual_provider_of_care",
            "appointments": _appointments(defn.value.appointments),
            "min_appointments": defn.value.min_appointments,
        }
    elif defn.value is not None:
        out["value"] = defn.value
    if defn.breakdown is not None:
        out["breakdown"] = {"by": defn.breakdown.by.value}
        if defn.breakdown.unit.value == "appointments":
            out["breakdown"]["categories"] = list(defn.breakdown.categories)
    return out, codelists


def serialize(defn: IndicatorDefinition) -> bytes:
    """Canonical, self-contained bytes: the definition and its codelists' codes and terms."""
    data, codelists = to_data(defn)
    data["format"] = WIRE_FORMAT
    data["codelists"] = {
        name: [list(entry) for entry in cl.entries] for name, cl in sorted(codelists.items())
    }
    return canonical_json(data)


def deserialize(data: bytes) -> IndicatorDefinition:
    """Rebuild and validate a definition from ``serialize`` bytes."""
    try:
        raw = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise DefinitionError(f"{_WIRE_SOURCE}: not canonical JSON") from None
    if not isinstance(raw, dict):
        raise DefinitionError(f"{_WIRE_SOURCE}: field (top level): must be a table")
    if raw.pop("format", None) != WIRE_FORMAT:
        raise DefinitionError(f"{_WIRE_SOURCE}: field format: must be {WIRE_FORMAT!r}")
    inline = raw.pop("codelists", None)
    if not isinstance(inline, dict):
        raise DefinitionError(f"{_WIRE_SOURCE}: field codelists: must be a table")
    used: set[str] = set()

    def resolve(name: str) -> Codelist:
        entries = inline.get(name)
        if not isinstance(entries, list) or not all(
            isinstance(e, list) and len(e) == 2 and all(isinstance(x, str) for x in e)
            for e in entries
        ):
            raise DefinitionError(f"unknown codelist {name!r} (not carried with the definition)")
        used.add(name)
        return Codelist(name, tuple((code, term) for code, term in entries))

    defn = Builder(_WIRE_SOURCE, resolve).definition(raw)
    extra = set(inline) - used
    if extra:
        raise DefinitionError(
            f"{_WIRE_SOURCE}: field codelists: unused codelist {sorted(extra)[0]!r}"
        )
    if serialize(defn) != data:
        raise DefinitionError(f"{_WIRE_SOURCE}: not in canonical form")
    return defn


def content_hash(defn: IndicatorDefinition) -> str:
    """The sha256 (hex) of the canonical serialisation: identifies a definition exactly."""
    return sha256_hex(serialize(defn))


# Wording: what a person reads, which changes nothing about who is counted or how.
_WORDING = ("id", "version", "title", "description")
# How the coordinator compares the answer, which changes nothing about what is counted:
# a definition that gains ``standardise`` asks the question it asked before.
_COMPARISON = ("standardise",)
_VALUE_WORDING = ("label", "unit")
_CODELIST_KEYS = ("diagnosis", "resolved", "codelist", "dmd")


def _meaning(node: Any, codelists: dict[str, Codelist]) -> Any:
    if isinstance(node, list):
        return [_meaning(item, codelists) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _CODELIST_KEYS and isinstance(value, str):
            out[key] = list(codelists[value].codes)  # the codes, never the file's name
        elif key in _VALUE_WORDING and "within_months" in node:
            continue  # a latest value's label and unit are wording
        else:
            out[key] = _meaning(value, codelists)
    return out


def meaning(defn: IndicatorDefinition) -> dict[str, Any]:
    """What a definition asks, as plain data: its wording, ids and codelist names left out."""
    data, codelists = to_data(defn)
    for key in (*_WORDING, *_COMPARISON):
        data.pop(key, None)
    return {"format": "fedpeer-meaning/1", **_meaning(data, codelists)}


def meaning_hash(defn: IndicatorDefinition) -> str:
    """The sha256 (hex) of a definition's meaning: the same question, however worded."""
    return sha256_hex(canonical_json(meaning(defn)))
