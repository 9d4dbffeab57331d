"""Definitions: loading, validation, canonical serialisation and the content hash."""

from __future__ import annotations

import dataclasses
import json
import re
from datetime import date
from pathlib import Path

import pytest

from fedpeer.canonical import canonical_json
from fedpeer.dates import (
    age_on,
    latest_birth_date_for_age,
    minus_months,
    period_start,
    window_start,
)
from fedpeer.definitions import (
    Codelist,
    IndicatorDefinition,
    Standardise,
    content_hash,
    deserialize,
    find_standard,
    load_definition,
    load_profile,
    load_standard_set,
    meaning_hash,
    parse_codelist_csv,
    serialize,
)
from fedpeer.definitions.sets import STANDARD_DIR
from fedpeer.errors import DefinitionError
from fedpeer.measures import Kind

INDICATORS_MD_ORDER = [
    "dm_hba1c_le58",
    "hyp_bp_le140_90_u80",
    "asthma_review",
    "flu_vacc_65",
    "smoking_status_15",
    "cervical_screen_25_49",
    "dna_rate",
    "seen_within_14d",
    "continuity_upc_gp",
    "gp_f2f_minutes",
    "skill_mix",
    "antibiotic_items_per_1000",
]


def test_standard_set_in_the_order_of_indicators_md():
    defs = load_standard_set()
    assert [d.id for d in defs] == INDICATORS_MD_ORDER
    # antibiotic_items_per_1000 is at version 2: it gained standardise = "age_sex"
    assert [d.version for d in defs] == [1] * 11 + [2]
    assert [d.id for d in defs if d.standardise] == ["antibiotic_items_per_1000"]
    kinds = [d.kind for d in defs]
    assert kinds == [Kind.PROPORTION] * 8 + [Kind.MEAN, Kind.MEAN, Kind.BREAKDOWN, Kind.RATE]


def test_profile_definitions():
    size, age_sex, imd = load_profile()
    assert (size.id, age_sex.id, imd.id) == ("profile.list_size", "profile.age_sex", "profile.imd")
    assert age_sex.breakdown.categories[0] == "female.0-4"
    assert age_sex.breakdown.categories[-1] == "male.85+"
    assert len(age_sex.breakdown.categories) == 36
    assert imd.breakdown.categories == (*map(str, range(1, 11)), "unknown")


# The codelist table of INDICATORS.md ("Codelists (SNOMED CT)"), codelist by codelist.
INDICATORS_MD_CODELISTS = {
    "diabetes": {"73211009", "44054006", "46635009"},
    "diabetes-resolved": {"315051004"},
    "hba1c": {"999791000000106"},
    "hypertension": {"38341003", "59621000"},
    "hypertension-resolved": {"162659009"},
    "systolic": {"72313002", "271649006"},
    "diastolic": {"1091811000000102", "271650006"},
    "asthma": {"195967001"},
    "asthma-resolved": {"162660004"},
    "asthma-review": {"270442000", "394700004"},
    "flu-vaccination": {"822851000000102"},
    "smoking-status": {"77176002", "8517006", "266919005"},
    "cervical-screening": {"171149006"},
}


def test_codelists_match_indicators_md():
    ours = {
        path.stem: set(parse_codelist_csv(path.name, path.read_text()).codes)
        for path in (STANDARD_DIR / "codelists").glob("*.csv")
    }
    assert ours == INDICATORS_MD_CODELISTS


def test_serialise_round_trip_and_hash():
    for defn in load_standard_set() + load_profile():
        data = serialize(defn)
        assert deserialize(data) == defn
        assert content_hash(defn) == content_hash(deserialize(data))
        assert re.fullmatch(r"[0-9a-f]{64}", content_hash(defn))
    hashes = {content_hash(d) for d in load_standard_set() + load_profile()}
    assert len(hashes) == 15


def test_hash_covers_codelist_codes():
    defn = load_standard_set()[0]
    condition = defn.denominator.has_condition[0]
    more = Codelist(
        condition.diagnosis.name, tuple(sorted((*condition.diagnosis.entries, ("11111111", "x"))))
    )
    changed = dataclasses.replace(
        defn,
        denominator=dataclasses.replace(
            defn.denominator, has_condition=(dataclasses.replace(condition, diagnosis=more),)
        ),
    )
    assert content_hash(changed) != content_hash(defn)
    assert b"11111111" in serialize(changed)
    assert content_hash(dataclasses.replace(defn, version=2)) != content_hash(defn)


def test_deserialize_rejects_tampering():
    data = json.loads(serialize(load_standard_set()[0]))
    data["numerator"]["latest_value"][0]["at_most"] = "__import__('os').system('x')"
    with pytest.raises(DefinitionError, match=r"numerator\.latest_value\[0\]\.at_most: must be"):
        deserialize(json.dumps(data, sort_keys=True, separators=(",", ":")).encode())
    data = json.loads(serialize(load_standard_set()[0]))
    data["codelists"]["hba1c.csv"] = [["999791000000106", "x"], ["12ab", "y"]]
    with pytest.raises(DefinitionError, match="bad code"):
        deserialize(json.dumps(data, sort_keys=True, separators=(",", ":")).encode())
    data = json.loads(serialize(load_standard_set()[0]))
    del data["codelists"]["hba1c.csv"]
    with pytest.raises(DefinitionError, match=r"unknown codelist 'hba1c\.csv'"):
        deserialize(json.dumps(data, sort_keys=True, separators=(",", ":")).encode())
    with pytest.raises(DefinitionError, match="canonical"):
        deserialize(json.dumps(json.loads(serialize(load_standard_set()[0])), indent=1).encode())
    with pytest.raises(DefinitionError):
        deserialize(b"\xff")


GOOD = """
id = "test_ind"
version = 1
title = "Test"
kind = "proportion"
unit = "patients"

[denominator]
registered = true
age_min = 17
has_condition = [{ diagnosis = "dx.csv" }]

[numerator]
latest_value = [{ codelist = "dx.csv", within_months = 12, at_most = 58 }]
"""


def _write(tmp_path: Path, toml: str, codes: str = "code,term\n73211009,Diabetes\n") -> Path:
    (tmp_path / "codelists").mkdir(exist_ok=True)
    (tmp_path / "codelists" / "dx.csv").write_text(codes)
    path = tmp_path / "test_ind.toml"
    path.write_text(toml)
    return path


def test_a_good_file_loads(tmp_path):
    defn = load_definition(_write(tmp_path, GOOD))
    assert isinstance(defn, IndicatorDefinition)
    assert defn.denominator.has_condition[0].diagnosis.codes == ("73211009",)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            ("age_min = 17", 'age_min = 17\nexpression = "1 + 1"'),
            "field denominator.expression: unknown key",
        ),
        (
            ("age_min = 17", 'age_min = "17"'),
            "field denominator.age_min: must be a whole number, not a string",
        ),
        (("age_min = 17", "age_min = true"), "field denominator.age_min: must be a whole number"),
        (
            ("age_min = 17", "age_min = -1"),
            "field denominator: age_min must be a whole number from 0",
        ),
        (
            ('"dx.csv" }', '"nope.csv" }'),
            "field denominator.has_condition\\[0\\].diagnosis: unknown codelist 'nope.csv'",
        ),
        (('"dx.csv" }', '"../dx.csv" }'), "must be named like name.csv"),
        (('title = "Test"\n', ""), "test_ind.toml: field title: missing field"),
        (('kind = "proportion"', 'kind = "ratio"'), "field kind: unknown value 'ratio'"),
        (
            ('unit = "patients"', 'unit = "appointments"'),
            "field denominator.registered: unknown key",
        ),
        (("at_most = 58", "at_most = 58, below = 3"), "needs exactly one of"),
        (
            ("at_most = 58", 'at_most = "58 or os.system()"'),
            "at_most: must be a whole number or a number",
        ),
        (
            ("within_months = 12", "within_months = 0"),
            "within_months must be a whole number from 1",
        ),
        (("registered = true\n", ""), "denominator: patients must be registered = true"),
        (("[numerator]", "[population]"), "missing field numerator"),
        (('id = "test_ind"', 'id = "Test Ind"'), "field \\(top level\\): id 'Test Ind'"),
        (("version = 1", "version = 1.5"), "field version: must be a whole number, not a number"),
        (("version = 1", "version = 1\nper = 100"), "per is only for a rate"),
    ],
)
def test_invalid_files_are_rejected_naming_file_and_field(tmp_path, change, message):
    old, new = change
    assert old in GOOD
    with pytest.raises(DefinitionError, match=message) as caught:
        load_definition(_write(tmp_path, GOOD.replace(old, new, 1)))
    assert str(caught.value).startswith("test_ind.toml: ")


@pytest.mark.parametrize(
    ("codes", "message"),
    [
        ("code,term\n7321A009,x\n", "dx.csv: line 2: bad code '7321A009'"),
        ("code,term\n73211009,x\n73211009,y\n", "repeated code"),
        ("term\nx\n", "header must have a code column"),
        ("code,term\n", "no codes"),
    ],
)
def test_bad_codelists(tmp_path, codes, message):
    with pytest.raises(DefinitionError, match=message):
        load_definition(_write(tmp_path, GOOD, codes))


def test_codelist_with_crlf_and_bom(tmp_path):
    defn = load_definition(
        _write(tmp_path, GOOD, "\ufeffcode,term\r\n44054006,T2\r\n73211009,Dm\r\n")
    )
    assert defn.denominator.has_condition[0].diagnosis.codes == ("44054006", "73211009")


def test_not_toml(tmp_path):
    with pytest.raises(DefinitionError, match=r"test_ind\.toml: not valid TOML"):
        load_definition(_write(tmp_path, "id = ["))


@pytest.mark.parametrize(
    ("as_of", "start"),
    [
        ("2026-09-30", "2025-10-01"),
        ("2024-02-29", "2023-03-01"),
        ("2025-02-28", "2024-02-29"),
        ("2026-03-31", "2025-04-01"),
    ],
)
def test_period(as_of, start):
    assert period_start(date.fromisoformat(as_of)) == date.fromisoformat(start)


def test_months_clamp_to_month_end():
    assert minus_months(date(2026, 8, 31), 42) == date(2023, 2, 28)
    assert window_start(date(2026, 8, 31), 42) == date(2023, 3, 1)
    assert minus_months(date(2026, 5, 31), 3) == date(2026, 2, 28)
    assert minus_months(date(2028, 5, 31), 3) == date(2028, 2, 29)


def test_age_and_29_february():
    assert age_on(date(2008, 2, 29), date(2025, 2, 28)) == 16
    assert age_on(date(2008, 2, 29), date(2025, 3, 1)) == 17
    assert age_on(date(2008, 2, 29), date(2028, 2, 29)) == 20
    assert age_on(date(2009, 9, 30), date(2026, 9, 30)) == 17
    assert age_on(date(2009, 10, 1), date(2026, 9, 30)) == 16
    # the constant cut-off the SQL engine uses agrees with age_on on every day near it
    for as_of in (date(2025, 2, 28), date(2025, 3, 1), date(2028, 2, 29), date(2026, 9, 30)):
        for years in (0, 1, 3, 4, 17, 65):
            cut = latest_birth_date_for_age(as_of, years)
            for delta in range(-3, 4):
                dob = date.fromordinal(cut.toordinal() + delta)
                assert (age_on(dob, as_of) >= years) == (dob <= cut)


def test_standardise_is_in_the_content_hash_but_not_the_meaning():
    """Adding ``standardise`` makes another definition (hash) asking the same question."""
    abx = find_standard("antibiotic_items_per_1000")
    plain = dataclasses.replace(abx, standardise=None, version=1)
    assert b'"standardise":"age_sex"' in serialize(abx)
    assert content_hash(abx) != content_hash(plain)
    assert meaning_hash(abx) == meaning_hash(plain)
    assert deserialize(serialize(abx)) == abx


def test_standardise_only_where_an_observed_count_has_an_expected_one():
    mean = find_standard("gp_f2f_minutes")
    with pytest.raises(DefinitionError, match="standardise is only for a rate"):
        dataclasses.replace(mean, standardise=Standardise.AGE_SEX)
    data = json.loads(serialize(find_standard("antibiotic_items_per_1000")))
    data["standardise"] = "deprivation"
    with pytest.raises(DefinitionError, match="field standardise: unknown value 'deprivation'"):
        deserialize(canonical_json(data))
