"""Generative: on random small extracts near every boundary, the SQL engine (SQLite,
DuckDB, PostgreSQL) agrees exactly with the reference engine, strata included."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from language import language_definitions

from agent.engine import reference, sql
from agent.extract import schema
from fedpeer.dates import minus_months, minus_years
from fedpeer.definitions import load_round_set
from fedpeer.definitions.model import Codelist

settings.register_profile(
    "fedpeer-engine-ci",
    max_examples=60,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    database=None,
)
CI = settings.get_profile("fedpeer-engine-ci")

# the standard set and profile, and definitions using the rest of the language
DEFINITIONS = load_round_set() + language_definitions()
AS_OFS = [date(2026, 9, 30), date(2028, 2, 29), date(2025, 2, 28), date(2026, 8, 31)]


def _codes() -> list[str]:
    codes: set[str] = set()

    def visit(obj: Any) -> None:
        if isinstance(obj, Codelist):
            codes.update(obj.codes)
        elif hasattr(obj, "__dataclass_fields__"):
            for name in obj.__dataclass_fields__:
                visit(getattr(obj, name))
        elif isinstance(obj, tuple):
            for x in obj:
                visit(x)

    for d in DEFINITIONS:
        visit(d)
    near_misses = [*sorted({c[:-1] for c in codes})[:4], "1715149006"]
    return sorted(codes) + near_misses


VALUES = [None, 58, 58.0001, 57.9, 140, 140.5, 90, 91, 40, 141, 0.1]
CODES = _codes()
# codes that go together, so that conditions, their values and reviews meet in one patient
FAMILIES = [
    (["73211009", "44054006", "315051004"], [None]),
    (["999791000000106"], [None, 57.9, 58, 58.0001, 70]),
    (["38341003", "59621000", "162659009"], [None]),
    (["72313002", "271649006"], [None, 139, 140, 140.5]),
    (["1091811000000102", "271650006"], [None, 89, 90, 90.5]),
    (["195967001", "162660004", "270442000", "394700004"], [None]),
    (["822851000000102", "77176002", "266919005", "171149006"], [None]),
    (CODES, VALUES),
]
BNF = [
    "0301011R0AAAPAP",
    "0302000C0",
    "0303010Q0",
    "030",
    "0501013B0AAABAB",
    "0501",
    "050",
    "0510",
    "0502010B0",
    "0501013b0",
    None,
]
DURATIONS = [None, 0, 10, 12.5, 0.1, -1, 7]


def _mostly(value: Any, other: st.SearchStrategy, odds: int = 3) -> st.SearchStrategy:
    """``value`` about ``odds`` times in ``odds + 1``, otherwise a draw from ``other``."""
    return st.integers(0, odds).flatmap(lambda k: st.just(value) if k else other)


@st.composite
def extracts(draw: st.DrawFn) -> tuple[date, dict[str, list[dict[str, Any]]]]:
    as_of = draw(st.sampled_from(AS_OFS))
    first = minus_years(as_of, 1) + timedelta(days=1)
    # few distinct days, so ties are common: the edges of the period and of 42 months,
    # two days inside the period, and days long before
    anchors = [
        as_of,
        first,
        minus_months(as_of, 42) + timedelta(days=1),
        as_of - timedelta(days=100),
        as_of - timedelta(days=100),
        as_of - timedelta(days=200),
        date(2010, 6, 15),
    ]
    day = st.builds(
        lambda a, d: a + timedelta(days=d),
        st.sampled_from(anchors),
        st.sampled_from([0, 0, 0, -1, 1, 2]),
    )
    ages = [0, 4, 5, 6, 15, 17, 25, 49, 50, 65, 70, 79, 80, 85]
    dob = st.builds(
        lambda a, d: minus_years(as_of, a) + timedelta(days=d),
        st.sampled_from(ages),
        st.integers(-1, 1),
    ) | st.sampled_from([date(2008, 2, 29), date(1960, 2, 29), date(1946, 3, 1)])
    n = draw(st.integers(1, 6))
    patients, events, meds = [], [], []
    for i in range(n):
        pid = f"p{i}"
        patients.append(
            {
                "patient_id": pid,
                "sex": draw(st.sampled_from(["female", "male", "unknown"])),
                "date_of_birth": draw(dob),
                "date_of_death": draw(_mostly(None, day, 4)),
                "registered_from": draw(_mostly(date(2000, 1, 1), day)),
                "registered_to": draw(_mostly(None, day)),
                "imd_decile": draw(st.none() | st.integers(0, 11)),
            }
        )
        for family, values in FAMILIES:
            if draw(st.booleans()):
                # often all on one day: ties on the latest date, resolved on the day of diagnosis
                same_day = draw(st.none() | day)
                for _ in range(draw(st.integers(1, 4))):
                    events.append(
                        {
                            "patient_id": pid,
                            "date": same_day or draw(day),
                            "snomed_code": draw(st.sampled_from(family)),
                            "numeric_value": draw(st.sampled_from(values)),
                        }
                    )
        for _ in range(draw(st.integers(0, 2))):
            meds.append(
                {
                    "patient_id": pid,
                    "date": draw(day),
                    "dmd_code": draw(st.sampled_from(["100000001", "100000002", "100000003"])),
                    "bnf_code": draw(st.sampled_from(BNF)),
                }
            )
    appts = []
    for k in range(draw(st.integers(0, 5 * n))):
        starts = draw(day)
        appts.append(
            {
                "appointment_id": f"a{k}",
                "patient_id": draw(st.sampled_from([p["patient_id"] for p in patients[:2]])),
                "booked_on": starts
                - timedelta(days=draw(st.sampled_from([-1, 0, 1, 13, 14, 15, 40]))),
                "starts_at": datetime(
                    starts.year, starts.month, starts.day, draw(st.sampled_from([0, 9, 23])), 59
                ),
                "status": draw(
                    st.sampled_from(
                        ["attended", "attended", "attended", *schema.APPOINTMENT_STATUSES]
                    )
                ),
                "clinician_id": draw(st.sampled_from(["c1", "c1", "c2", "c3"])),
                "clinician_role": draw(
                    st.sampled_from(["gp", "gp", "gp", "nurse", "pharmacist", "hca", "other"])
                ),
                "mode": draw(st.sampled_from(["face_to_face", "face_to_face", "telephone"])),
                "duration_minutes": draw(st.sampled_from(DURATIONS)),
            }
        )
    return as_of, {
        "patients": patients,
        "clinical_events": events,
        "medications": meds,
        "appointments": appts,
    }


def _evaluate(
    url: str, tables: dict[str, list[dict[str, Any]]], as_of: date, engines: list
) -> list:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            transaction = conn.begin()
            schema.metadata.create_all(conn, checkfirst=False)
            for name, rows in tables.items():
                if rows:
                    conn.execute(schema.TABLES[name].insert(), rows)
            out = [e(DEFINITIONS, conn, as_of, by_age_sex=True) for e in engines]
            transaction.rollback()
            return out
    finally:
        engine.dispose()


@CI
@given(extracts())
def test_sql_engine_agrees_with_reference_on_sqlite_and_duckdb(extract):
    as_of, tables = extract
    expected, on_sqlite = _evaluate("sqlite://", tables, as_of, [reference.evaluate, sql.evaluate])
    assert on_sqlite == expected
    (on_duckdb,) = _evaluate("duckdb:///:memory:", tables, as_of, [sql.evaluate])
    assert on_duckdb == expected


@pytest.mark.postgres
@settings(CI, max_examples=20)
@given(extract=extracts())
def test_sql_engine_agrees_with_reference_on_postgres(extract, postgres_url):
    as_of, tables = extract
    (expected,) = _evaluate("sqlite://", tables, as_of, [reference.evaluate])
    (on_postgres,) = _evaluate(postgres_url, tables, as_of, [sql.evaluate])
    assert on_postgres == expected
