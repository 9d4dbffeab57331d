"""Language features beyond the standard set, on every engine and database."""

import spec_extract as sx
from language import language_definitions

from fedpeer.definitions import deserialize, serialize
from fedpeer.measures import Breakdown, Count, Proportion, Rate

AS_OF = "2026-09-30"
DEFS = {d.id: d for d in language_definitions()}


def test_language_definitions_round_trip():
    for d in DEFS.values():
        assert deserialize(serialize(d)) == d


def test_comparators_and_patient_filters(spec):
    tables = sx.complete(
        {
            "patients": """
            patient_id | sex    | date_of_birth
            p1         | male   | 1970-01-01
            p2         | male   | 1970-01-01
            p3         | female | 1970-01-01
            p4         | male   | 1961-09-30
            p5         | male   | 1961-10-01
            """,
            "clinical_events": """
            patient_id | date       | snomed_code     | numeric_value
            p1         | 2020-01-01 | 73211009        |
            p1         | 2026-04-01 | 999791000000106 | 48
            p2         | 2020-01-01 | 44054006        |
            p2         | 2026-04-01 | 999791000000106 | 75
            p3         | 2020-01-01 | 44054006        |
            p3         | 2026-03-30 | 999791000000106 | 50
            p4         | 2026-09-01 | 999791000000106 | 58.5
            p5         | 2026-09-01 | 999791000000106 | 58.5
            """,
        }
    )
    # within 6 months: from 2026-03-31, so p3's reading is out; p2's 75 is not below 75
    assert spec.measure(DEFS["x.hba1c_comparators"], AS_OF, tables) == Proportion(1, 3)
    # p1, p2, p5 are men under 65; p5 is above 58; p2's 75 is too
    assert spec.measure(DEFS["x.hba1c_above"], AS_OF, tables) == Proportion(2, 3)
    assert spec.measure(DEFS["x.count_diabetes"], AS_OF, tables) == Count(3)


def test_dmd_codelist_and_longer_event_window(spec):
    tables = sx.complete(
        {
            "patients": "patient_id\np1\np2\np3",
            "medications": """
            patient_id | date       | dmd_code  | bnf_code
            p1         | 2026-07-01 | 100000002 |
            p2         | 2026-06-30 | 100000001 |
            p3         | 2026-08-01 | 100000003 | 0501013B0
            """,
            "clinical_events": """
            patient_id | date       | snomed_code
            p1         | 2024-10-01 | 822851000000102
            """,
        }
    )
    assert spec.measure(DEFS["x.dmd_and_flu_24m"], AS_OF, tables) == Proportion(1, 1)
    # within 1 month: from 2026-09-01; none of these items
    assert spec.measure(DEFS["x.items_dmd_or_bnf"], AS_OF, tables) == Rate(0, 3, 100)


def test_appointment_parts(spec):
    tables = sx.complete(
        {
            "appointments": """
            booked_on  | starts_at        | status         | mode         | clinician_role | duration_minutes
            2026-09-30 | 2026-09-30 10:00 | attended       | telephone    | gp             | 9.5
            2026-09-29 | 2026-09-30 10:00 | booked         | video        | nurse          | 10
            2026-09-17 | 2026-09-30 10:00 | did_not_attend | telephone    | hca            |
            2026-09-16 | 2026-09-30 10:00 | attended       | face_to_face | gp             | 20
            2026-06-01 | 2026-07-01 10:00 | attended       | telephone    | gp             | 20
            2026-06-01 | 2026-06-30 10:00 | attended       | telephone    | gp             | 20
            """  # noqa: E501 - a table reads better on one line per appointment
        }
    )
    assert spec.measure(DEFS["x.booked_ahead"], AS_OF, tables) == Proportion(2, 4)
    assert spec.measure(DEFS["x.by_mode"], AS_OF, tables) == Breakdown(
        (("face_to_face", 1), ("telephone", 2)), 4
    )
    assert spec.measure(DEFS["x.by_status"], AS_OF, tables) == Breakdown(
        (("attended", 4), ("did_not_attend", 0), ("booked", 1)), 5
    )
    assert spec.measure(DEFS["x.count_appointments"], AS_OF, tables) == Count(4)


def test_imd_breakdown_of_a_subpopulation(spec):
    tables = sx.complete(
        {
            "patients": """
            patient_id | date_of_birth | imd_decile
            p1         | 1950-01-01    | 2
            p2         | 1950-01-01    | 11
            p3         | 1990-01-01    | 2
            """
        }
    )
    cells = dict.fromkeys(DEFS["x.imd_over_65"].breakdown.categories, 0)
    cells.update({"2": 1, "unknown": 1})
    assert spec.measure(DEFS["x.imd_over_65"], AS_OF, tables) == Breakdown(tuple(cells.items()), 2)
