"""The antibiotic rate, the practice profile, date-time text on SQLite, and strata."""

import dataclasses
from datetime import date

import spec_extract as sx
import sqlalchemy as sa

from agent.engine import reference, sql
from fedpeer.definitions import MedicationCriteria, find_standard, load_profile
from fedpeer.measures import Breakdown, Count, IndicatorResult, Proportion, Rate

AS_OF = "2026-09-30"


def test_antibiotic_rate(spec):
    r = spec(
        "antibiotic_items_per_1000",
        AS_OF,
        patients="""
        patient_id | registered_to | date_of_death
        p1         |               |
        p2         |               |
        # not registered: not in the denominator, but their items count
        p3         | 2026-01-01    |
        p4         |               | 2026-09-30
        """,
        medications="""
        patient_id | date       | bnf_code
        p1         | 2025-10-01 | 0501013B0AAABAB
        p1         | 2026-09-30 | 0501
        p1         | 2025-09-30 | 0501013B0AAABAB
        p1         | 2026-10-01 | 0501013B0AAABAB
        p1         | 2026-01-01 | 050
        p1         | 2026-01-01 | 0510
        p1         | 2026-01-01 | 0502010B0
        p1         | 2026-01-01 |
        p3         | 2026-01-01 | 0501130R0
        p4         | 2026-01-01 | 0501130R0
        """,
    )
    assert r == Rate(4, 2, 1000)


def test_bnf_prefix_is_case_sensitive(spec):
    base = find_standard("antibiotic_items_per_1000")
    defn = dataclasses.replace(base, numerator=MedicationCriteria(12, ("0501013B0",)))
    tables = sx.complete(
        {
            "medications": """
            patient_id | date       | bnf_code
            p1         | 2026-01-01 | 0501013B0AAABAB
            p1         | 2026-01-01 | 0501013b0AAABAB
            p1         | 2026-01-01 | 0501013_0AAABAB
            p1         | 2026-01-01 | 0501013%0AAABAB
            """
        }
    )
    assert spec.measure(defn, AS_OF, tables) == Rate(1, 1, 1000)


def test_profile(spec):
    tables = sx.complete(
        {
            "patients": """
            patient_id | sex     | date_of_birth | imd_decile | registered_to
            p1         | female  | 2026-09-30    | 1          |
            p2         | female  | 2021-10-01    | 10         |
            p3         | female  | 2021-09-30    |            |
            p4         | male    | 1941-10-01    | 5          |
            p5         | male    | 1941-09-30    | 5          |
            p6         | unknown | 1980-01-01    | 3          |
            p7         | male    | 1980-01-01    | 3          | 2026-09-29
            """
        }
    )
    size, age_sex, imd = load_profile()
    assert spec.measure(size, AS_OF, tables) == Count(6)
    cells = dict.fromkeys(age_sex.breakdown.categories, 0)
    cells.update({"female.0-4": 2, "female.5-9": 1, "male.80-84": 1, "male.85+": 1})
    assert spec.measure(age_sex, AS_OF, tables) == Breakdown(tuple(cells.items()), 6)
    cells = dict.fromkeys(imd.breakdown.categories, 0)
    cells.update({"1": 1, "10": 1, "unknown": 1, "5": 2, "3": 1})
    assert spec.measure(imd, AS_OF, tables) == Breakdown(tuple(cells.items()), 6)


def test_by_age_sex(spec):
    tables = sx.complete(
        {
            "patients": """
            patient_id | sex     | date_of_birth
            p1         | female  | 1960-01-01
            p2         | female  | 1958-06-01
            p3         | male    | 1950-01-01
            p4         | unknown | 1950-01-01
            """,
            "clinical_events": """
            patient_id | date       | snomed_code
            p1         | 2026-01-01 | 822851000000102
            p3         | 2026-01-01 | 822851000000102
            p4         | 2026-01-01 | 822851000000102
            """,
        }
    )
    results = spec.measure("flu_vacc_65", AS_OF, tables, by_age_sex=True)
    assert len(results) == 37
    by = {r.stratum: r.measure for r in results}
    assert by[""] == Proportion(3, 4)
    assert by["female.65-69"] == Proportion(1, 2)
    assert by["female.60-64"] == Proportion(0, 0)
    assert by["male.75-79"] == Proportion(1, 1)
    assert by["male.0-4"] == Proportion(0, 0)


def test_antibiotic_rate_by_age_sex(spec):
    """A rate's strata: each item goes to its patient's sex and age band on as_of (registered
    or not, as the numerator counts it); the people are the stratum's registered patients.
    Items of a patient of unknown sex are in the whole practice only."""
    tables = sx.complete(
        {
            "patients": """
            patient_id | sex     | date_of_birth | registered_to
            p1         | female  | 1960-01-01    |
            p2         | female  | 1962-06-01    |
            p3         | male    | 2024-01-01    |
            # left the practice: their items count, they do not
            p4         | male    | 2023-05-01    | 2026-01-01
            p5         | unknown | 1950-01-01    |
            """,
            "medications": """
            patient_id | date       | bnf_code
            p1         | 2026-01-01 | 0501013B0AAABAB
            p1         | 2026-02-01 | 0501013B0AAABAB
            p2         | 2026-03-01 | 0501013B0AAABAB
            p3         | 2026-03-01 | 0501013B0AAABAB
            p4         | 2025-12-01 | 0501013B0AAABAB
            p4         | 2026-03-01 | 0502010B0
            p5         | 2026-03-01 | 0501013B0AAABAB
            """,
        }
    )
    results = spec.measure("antibiotic_items_per_1000", AS_OF, tables, by_age_sex=True)
    assert len(results) == 37
    by = {r.stratum: r.measure for r in results}
    assert by[""] == Rate(6, 4, 1000)
    assert by["female.65-69"] == Rate(2, 1, 1000)  # p1 is 66 on as_of
    assert by["female.60-64"] == Rate(1, 1, 1000)
    assert by["male.0-4"] == Rate(2, 1, 1000)
    assert sum(m.numerator for s, m in by.items() if s) == 5


def test_starts_at_with_t_separator_on_sqlite():
    engine = sa.create_engine("sqlite://")
    with engine.begin() as conn:
        sx.schema.metadata.create_all(conn)
        sx.insert(conn, sx.complete({"patients": "patient_id\np1"}))
        conn.execute(
            sa.text(
                "INSERT INTO appointments VALUES "
                "('a1','p1','2026-05-01','2026-05-15T09:00:00','attended','c1','gp','face_to_face',10),"
                "('a2','p1','2026-05-01','2026-05-16 09:00:00','attended','c1','gp',"
                "'face_to_face',10),"
                "('a3','p1','2026-05-01','2026-09-30T23:59','attended','c1','gp','face_to_face',10)"
            )
        )
        defn = find_standard("seen_within_14d")
        expected = [IndicatorResult("seen_within_14d", Proportion(1, 3))]
        assert reference.evaluate([defn], conn, date(2026, 9, 30)) == expected
        assert sql.evaluate([defn], conn, date(2026, 9, 30)) == expected


def test_sqlite_date_columns_holding_a_time_of_day():
    # a practice's own SQLite database may store dates as 'YYYY-MM-DD HH:MM:SS' text
    engine = sa.create_engine("sqlite://")
    with engine.begin() as conn:
        sx.schema.metadata.create_all(conn)
        conn.execute(
            sa.text(
                "INSERT INTO patients VALUES "
                "('p1','female','1960-01-01 00:00:00',NULL,'2000-01-01 00:00:00',"
                "'2026-09-30 00:00:00',NULL),"
                "('p2','female','1961-09-30T00:00:00',NULL,'2026-09-30 00:00:00',NULL,NULL)"
            )
        )
        conn.execute(
            sa.text(
                "INSERT INTO clinical_events VALUES "
                "('p1','2026-09-30 00:00:00','822851000000102',NULL),"
                "('p2','2025-10-01 00:00:00','822851000000102',NULL)"
            )
        )
        defn = find_standard("flu_vacc_65")
        expected = [IndicatorResult("flu_vacc_65", Proportion(2, 2))]
        assert reference.evaluate([defn], conn, date(2026, 9, 30)) == expected
        assert sql.evaluate([defn], conn, date(2026, 9, 30)) == expected
