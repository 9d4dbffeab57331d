"""Appointment-based indicators: every appointment counts, whoever its patient."""

from fractions import Fraction

from fedpeer.measures import Breakdown, Mean

AS_OF = "2026-09-30"  # period 2025-10-01 .. 2026-09-30


def test_dna_rate(spec):
    spec(
        "dna_rate",
        AS_OF,
        patients="""
        patient_id | registered_to | date_of_death
        p1         |               |
        # deregistered and dead patients' appointments count too
        p2         | 2025-12-31    |
        p3         |               | 2026-01-01
        """,
        appointments="""
        patient_id | starts_at           | status                | den | num
        p1         | 2025-10-01 00:00    | attended              | y   |
        p1         | 2026-09-30 23:59:59 | did_not_attend        | y   | y
        p1         | 2025-09-30 23:59:59 | did_not_attend        |     |
        p1         | 2026-10-01 00:00    | did_not_attend        |     |
        p1         | 2026-05-01 10:00    | cancelled_by_patient  |     |
        p1         | 2026-05-01 10:00    | cancelled_by_practice |     |
        p1         | 2026-05-01 10:00    | booked                |     |
        p2         | 2025-11-01 10:00    | did_not_attend        | y   | y
        p3         | 2025-11-01 10:00    | attended              | y   |
        """,
    )


def test_seen_within_14_days(spec):
    spec(
        "seen_within_14d",
        AS_OF,
        appointments="""
        patient_id | booked_on  | starts_at        | status         | den | num
        # same day
        p1         | 2026-05-01 | 2026-05-01 08:00 | attended       | y   | y
        # 14 days
        p1         | 2026-04-17 | 2026-05-01 18:00 | attended       | y   | y
        # 15 days
        p1         | 2026-04-16 | 2026-05-01 08:00 | attended       | y   |
        # booked after it started: a data-quality finding, excluded
        p1         | 2026-05-02 | 2026-05-01 08:00 | attended       |     |
        # not attended
        p1         | 2026-05-01 | 2026-05-01 08:00 | did_not_attend |     |
        # lead time across the start of the period: 14 days, start in the period
        p2         | 2025-09-17 | 2025-10-01 09:00 | attended       | y   | y
        # across the end of February (28 days in 2026): 14 and 15 days
        p2         | 2026-02-15 | 2026-03-01 09:00 | attended       | y   | y
        p2         | 2026-02-14 | 2026-03-01 09:00 | attended       | y   |
        """,
    )


def test_continuity_upc(spec):
    m = spec(
        "continuity_upc_gp",
        AS_OF,
        patients="""
        patient_id | registered_to
        p1         |
        p2         |
        p3         |
        p4         |
        p5         | 2026-09-29
        """,
        appointments="""
        patient_id | starts_at        | status         | clinician_id | clinician_role
        # p1: exactly 3, all with c1 -> 1
        p1         | 2026-01-01 09:00 | attended       | c1           | gp
        p1         | 2026-02-01 09:00 | attended       | c1           | gp
        p1         | 2026-03-01 09:00 | attended       | c1           | gp
        # p2: 4, tie 2/2 -> 1/2
        p2         | 2026-01-01 09:00 | attended       | c1           | gp
        p2         | 2026-02-01 09:00 | attended       | c1           | gp
        p2         | 2026-03-01 09:00 | attended       | c2           | gp
        p2         | 2026-04-01 09:00 | attended       | c2           | gp
        # p3: 3 with three GPs -> 1/3; nurse, DNA and out-of-period ones do not count
        p3         | 2026-01-01 09:00 | attended       | c1           | gp
        p3         | 2026-02-01 09:00 | attended       | c2           | gp
        p3         | 2026-03-01 09:00 | attended       | c3           | gp
        p3         | 2026-03-02 09:00 | attended       | c1           | nurse
        p3         | 2026-03-03 09:00 | did_not_attend | c1           | gp
        p3         | 2025-09-30 09:00 | attended       | c1           | gp
        # p4: only 2 GP appointments: not in the population
        p4         | 2026-01-01 09:00 | attended       | c1           | gp
        p4         | 2026-02-01 09:00 | attended       | c1           | gp
        # p5: no longer registered
        p5         | 2026-01-01 09:00 | attended       | c1           | gp
        p5         | 2026-02-01 09:00 | attended       | c1           | gp
        p5         | 2026-03-01 09:00 | attended       | c1           | gp
        """,
    )
    # (1 + 1/2 + 1/3) / 3 = 11/18, rounded once
    assert m == Mean(3, float(Fraction(11, 18)))


def test_gp_face_to_face_minutes(spec):
    m = spec(
        "gp_f2f_minutes",
        AS_OF,
        appointments="""
        patient_id | starts_at        | status   | clinician_role | mode         | duration_minutes
        p1         | 2026-01-01 09:00 | attended | gp             | face_to_face | 10
        p1         | 2026-01-02 09:00 | attended | gp             | face_to_face | 12.5
        p1         | 2026-01-03 09:00 | attended | gp             | face_to_face | 0.1
        # zero, empty and negative durations are left out
        p1         | 2026-01-04 09:00 | attended | gp             | face_to_face | 0
        p1         | 2026-01-05 09:00 | attended | gp             | face_to_face |
        p1         | 2026-01-05 09:00 | attended | gp             | face_to_face | -3
        # telephone, nurse, not attended
        p1         | 2026-01-06 09:00 | attended | gp             | telephone    | 30
        p1         | 2026-01-07 09:00 | attended | nurse          | face_to_face | 30
        p1         | 2026-01-08 09:00 | booked   | gp             | face_to_face | 30
        """,
    )
    assert m == Mean(3, float((Fraction(10) + Fraction(12.5) + Fraction(0.1)) / 3))


def test_skill_mix(spec):
    b = spec(
        "skill_mix",
        AS_OF,
        appointments="""
        patient_id | starts_at        | status         | clinician_role
        p1         | 2026-01-01 09:00 | attended       | gp
        p1         | 2026-01-01 09:00 | attended       | gp
        p1         | 2026-01-01 09:00 | attended       | nurse
        p2         | 2026-01-01 09:00 | attended       | hca
        p2         | 2026-01-01 09:00 | attended       | other
        p2         | 2026-01-01 09:00 | did_not_attend | pharmacist
        p2         | 2025-09-30 09:00 | attended       | pharmacist
        """,
    )
    assert b == Breakdown((("gp", 2), ("nurse", 1), ("pharmacist", 0), ("hca", 1), ("other", 1)), 5)
