"""dm_hba1c_le58: registered, 17 or over, diabetes not resolved; latest HbA1c <= 58."""

from fedpeer.measures import Proportion

DIABETES, T2, RESOLVED, HBA1C = "73211009", "44054006", "315051004", "999791000000106"
AS_OF = "2026-09-30"  # period 2025-10-01 .. 2026-09-30


def test_latest_value_rules(spec):
    spec(
        "dm_hba1c_le58",
        AS_OF,
        patients="""
        patient_id | date_of_birth | den | num
        # exactly 58: in range
        p1         | 1960-05-01    | y   | y
        # 58.0001: out of range (no rounding)
        p2         | 1960-05-01    | y   |
        # latest is high although an earlier one was fine
        p3         | 1960-05-01    | y   |
        # two readings on the latest date: the highest wins
        p4         | 1960-05-01    | y   |
        # the reading on the first day of the period counts
        p5         | 1960-05-01    | y   | y
        # the day before the period does not count
        p6         | 1960-05-01    | y   |
        # a reading without a value is ignored: the earlier valued one is the latest
        p7         | 1960-05-01    | y   | y
        # a reading after as_of is ignored
        p8         | 1960-05-01    | y   | y
        """,
        clinical_events=f"""
        patient_id | date       | snomed_code | numeric_value
        p1 | 2010-01-01 | {DIABETES} |
        p1 | 2026-09-30 | {HBA1C}    | 58
        p2 | 2010-01-01 | {T2}       |
        p2 | 2026-03-01 | {HBA1C}    | 58.0001
        p3 | 2010-01-01 | {DIABETES} |
        p3 | 2026-01-01 | {HBA1C}    | 40
        p3 | 2026-06-01 | {HBA1C}    | 70
        p4 | 2010-01-01 | {DIABETES} |
        p4 | 2026-06-01 | {HBA1C}    | 40
        p4 | 2026-06-01 | {HBA1C}    | 59
        p5 | 2010-01-01 | {DIABETES} |
        p5 | 2025-10-01 | {HBA1C}    | 50
        p6 | 2010-01-01 | {DIABETES} |
        p6 | 2025-09-30 | {HBA1C}    | 50
        p7 | 2010-01-01 | {DIABETES} |
        p7 | 2026-01-01 | {HBA1C}    | 50
        p7 | 2026-02-01 | {HBA1C}    |
        p8 | 2010-01-01 | {DIABETES} |
        p8 | 2026-01-01 | {HBA1C}    | 50
        p8 | 2026-10-01 | {HBA1C}    | 99
        """,
    )


def test_condition_rules(spec):
    spec(
        "dm_hba1c_le58",
        AS_OF,
        patients="""
        patient_id | date_of_birth | registered_from | den | num
        # no diabetes code at all
        p1         | 1960-05-01    | 2000-01-01      |     |
        # resolved after the latest diagnosis
        p2         | 1960-05-01    | 2000-01-01      |     |
        # resolved, then diagnosed again
        p3         | 1960-05-01    | 2000-01-01      | y   | y
        # resolved on the same day as the latest diagnosis: resolved
        p4         | 1960-05-01    | 2000-01-01      |     |
        # resolution after as_of is ignored
        p5         | 1960-05-01    | 2000-01-01      | y   | y
        # diagnosis after as_of does not count
        p6         | 1960-05-01    | 2000-01-01      |     |
        # diagnosed before registration: counts
        p7         | 1960-05-01    | 2020-01-01      | y   | y
        # diagnosed on as_of: counts
        p8         | 1960-05-01    | 2000-01-01      | y   |
        """,
        clinical_events=f"""
        patient_id | date       | snomed_code | numeric_value
        p1 | 2026-01-01 | {HBA1C}    | 50
        p2 | 2010-01-01 | {DIABETES} |
        p2 | 2015-01-01 | {RESOLVED} |
        p2 | 2026-01-01 | {HBA1C}    | 50
        p3 | 2010-01-01 | {DIABETES} |
        p3 | 2015-01-01 | {RESOLVED} |
        p3 | 2018-01-01 | {T2}       |
        p3 | 2026-01-01 | {HBA1C}    | 50
        p4 | 2010-01-01 | {DIABETES} |
        p4 | 2018-01-01 | {T2}       |
        p4 | 2018-01-01 | {RESOLVED} |
        p4 | 2026-01-01 | {HBA1C}    | 50
        p5 | 2010-01-01 | {DIABETES} |
        p5 | 2026-10-01 | {RESOLVED} |
        p5 | 2026-01-01 | {HBA1C}    | 50
        p6 | 2026-10-01 | {DIABETES} |
        p6 | 2026-01-01 | {HBA1C}    | 50
        p7 | 2010-01-01 | {DIABETES} |
        p7 | 2026-01-01 | {HBA1C}    | 50
        p8 | 2026-09-30 | {DIABETES} |
        """,
    )


def test_age_and_registration(spec):
    spec(
        "dm_hba1c_le58",
        AS_OF,
        patients="""
        patient_id | date_of_birth | registered_from | registered_to | date_of_death | den | num
        # 17 today
        p1         | 2009-09-30    | 2000-01-01      |               |               | y   | y
        # 17 tomorrow
        p2         | 2009-10-01    | 2000-01-01      |               |               |     |
        # registered from as_of
        p3         | 1960-01-01    | 2026-09-30      |               |               | y   | y
        # registered from the day after
        p4         | 1960-01-01    | 2026-10-01      |               |               |     |
        # deregistered on as_of: still registered (last day inclusive)
        p5         | 1960-01-01    | 2000-01-01      | 2026-09-30    |               | y   | y
        # deregistered the day before
        p6         | 1960-01-01    | 2000-01-01      | 2026-09-29    |               |     |
        # died on as_of: not registered
        p7         | 1960-01-01    | 2000-01-01      |               | 2026-09-30    |     |
        # died the day after
        p8         | 1960-01-01    | 2000-01-01      |               | 2026-10-01    | y   | y
        """,
        clinical_events=f"""
        patient_id | date       | snomed_code | numeric_value
        p1 | 2020-01-01 | {DIABETES} |
        p1 | 2026-01-01 | {HBA1C}    | 50
        p2 | 2020-01-01 | {DIABETES} |
        p2 | 2026-01-01 | {HBA1C}    | 50
        p3 | 2020-01-01 | {DIABETES} |
        p3 | 2026-01-01 | {HBA1C}    | 50
        p4 | 2020-01-01 | {DIABETES} |
        p4 | 2026-01-01 | {HBA1C}    | 50
        p5 | 2020-01-01 | {DIABETES} |
        p5 | 2026-01-01 | {HBA1C}    | 50
        p6 | 2020-01-01 | {DIABETES} |
        p6 | 2026-01-01 | {HBA1C}    | 50
        p7 | 2020-01-01 | {DIABETES} |
        p7 | 2026-01-01 | {HBA1C}    | 50
        p8 | 2020-01-01 | {DIABETES} |
        p8 | 2026-01-01 | {HBA1C}    | 50
        """,
    )


def test_empty_extract(spec):
    assert spec("dm_hba1c_le58", AS_OF) == Proportion(0, 0)
