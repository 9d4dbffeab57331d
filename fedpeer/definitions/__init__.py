"""Indicator definitions: declarative, versioned, content-addressed, explainable.

load_standard_set()  -> the twelve indicators of INDICATORS.md, in its order
load_profile()       -> profile.list_size, profile.age_sex, profile.imd
load_definition(path)-> one TOML file, validated (DefinitionError names file and field)
serialize / deserialize / content_hash -> the canonical wire bytes and their sha256
meaning_hash(defn)   -> the sha256 of what it asks, however it is worded
explain(defn, as_of) -> plain sentences a practice manager can check
"""

from fedpeer.definitions.explain import explain
from fedpeer.definitions.loader import load_definition, parse_codelist_csv
from fedpeer.definitions.model import (
    AGE_BANDS,
    IMD_CATEGORIES,
    SEX_AGE_BANDS,
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
from fedpeer.definitions.serialise import content_hash, deserialize, meaning_hash, serialize
from fedpeer.definitions.sets import (
    find_standard,
    load_profile,
    load_round_set,
    load_set,
    load_standard_set,
)

__all__ = [
    "AGE_BANDS",
    "IMD_CATEGORIES",
    "SEX_AGE_BANDS",
    "AppointmentCriteria",
    "BreakdownBy",
    "BreakdownSpec",
    "Codelist",
    "Comparator",
    "Condition",
    "EventInWindow",
    "IndicatorDefinition",
    "LatestValue",
    "MedicationCriteria",
    "PatientCriteria",
    "Standardise",
    "Unit",
    "UsualProviderOfCare",
    "content_hash",
    "deserialize",
    "explain",
    "find_standard",
    "load_definition",
    "load_profile",
    "load_round_set",
    "load_set",
    "load_standard_set",
    "meaning_hash",
    "parse_codelist_csv",
    "serialize",
]
