"""Patient-based indicators other than diabetes: blood pressure, asthma, flu, smoking, cervical."""

SYS, SYS2, DIA, DIA2 = "72313002", "271649006", "1091811000000102", "271650006"
HYP, HYP_RES = "38341003", "162659009"
ASTHMA, ASTHMA_RES, REVIEW, REVIEW2 = "195967001", "162660004", "270442000", "394700004"
FLU, SMOKER, NEVER, CERVICAL = "822851000000102", "77176002", "266919005", "171149006"
AS_OF = "2026-09-30"


def test_blood_pressure(spec):
    spec(
        "hyp_bp_le140_90_u80",
        AS_OF,
        patients="""
        patient_id | date_of_birth | den | num
        # 140/90 exactly, different days and codes: not paired by date
        p1         | 1950-01-01    | y   | y
        # only systolic recorded
        p2         | 1950-01-01    | y   |
        # only diastolic recorded
        p3         | 1950-01-01    | y   |
        # diastolic 90.5
        p4         | 1950-01-01    | y   |
        # two systolics on the latest day: the highest (141) wins
        p5         | 1950-01-01    | y   |
        # aged 80 today: excluded
        p6         | 1946-09-30    |     |
        # aged 79, 80 tomorrow
        p7         | 1946-10-01    | y   | y
        # systolic before the period does not count
        p8         | 1950-01-01    | y   |
        """,
        clinical_events=f"""
        patient_id | date       | snomed_code | numeric_value
        p1 | 2010-01-01 | {HYP}  |
        p1 | 2026-09-30 | {SYS}  | 140
        p1 | 2026-09-01 | {DIA2} | 90
        p1 | 2026-08-01 | {DIA}  | 95
        p2 | 2010-01-01 | {HYP}  |
        p2 | 2026-01-01 | {SYS}  | 120
        p3 | 2010-01-01 | {HYP}  |
        p3 | 2026-01-01 | {DIA}  | 80
        p4 | 2010-01-01 | {HYP}  |
        p4 | 2026-01-01 | {SYS2} | 120
        p4 | 2026-01-01 | {DIA}  | 90.5
        p5 | 2010-01-01 | {HYP}  |
        p5 | 2026-01-01 | {SYS}  | 120
        p5 | 2026-01-01 | {SYS2} | 141
        p5 | 2026-01-01 | {DIA}  | 80
        p6 | 2010-01-01 | {HYP}  |
        p6 | 2026-01-01 | {SYS}  | 120
        p6 | 2026-01-01 | {DIA}  | 80
        p7 | 2010-01-01 | {HYP}  |
        p7 | 2026-01-01 | {SYS}  | 120
        p7 | 2026-01-01 | {DIA}  | 80
        p8 | 2010-01-01 | {HYP}  |
        p8 | 2025-09-30 | {SYS}  | 120
        p8 | 2026-01-01 | {DIA}  | 80
        """,
    )


def test_hypertension_resolved(spec):
    spec(
        "hyp_bp_le140_90_u80",
        AS_OF,
        patients="""
        patient_id | den | num
        p1         |     |
        p2         | y   | y
        """,
        clinical_events=f"""
        patient_id | date       | snomed_code | numeric_value
        p1 | 2010-01-01 | {HYP}     |
        p1 | 2026-09-30 | {HYP_RES} |
        p1 | 2026-01-01 | {SYS}     | 120
        p1 | 2026-01-01 | {DIA}     | 80
        p2 | 2010-01-01 | {HYP}     |
        p2 | 2009-12-31 | {HYP_RES} |
        p2 | 2026-01-01 | {SYS}     | 120
        p2 | 2026-01-01 | {DIA}     | 80
        """,
    )


def test_asthma_review(spec):
    spec(
        "asthma_review",
        AS_OF,
        patients="""
        patient_id | date_of_birth | den | num
        # inhaler 0301 in the period and a review in the period
        p1         | 2000-01-01    | y   | y
        # inhaler 0302, review by the other code on the last day
        p2         | 2000-01-01    | y   | y
        # no inhaler in the period (issued the day before)
        p3         | 2000-01-01    |     |
        # a near-miss BNF code 0303 / 030 / lower case: no inhaler
        p4         | 2000-01-01    |     |
        # aged 6 today
        p5         | 2020-09-30    | y   |
        # aged 5
        p6         | 2020-10-01    |     |
        # inhaler with no BNF code, only dm+d
        p7         | 2000-01-01    |     |
        # review before the period
        p8         | 2000-01-01    | y   |
        """,
        clinical_events=f"""
        patient_id | date       | snomed_code
        p1 | 2010-01-01 | {ASTHMA}
        p1 | 2026-01-01 | {REVIEW}
        p2 | 2010-01-01 | {ASTHMA}
        p2 | 2026-09-30 | {REVIEW2}
        p3 | 2010-01-01 | {ASTHMA}
        p3 | 2026-01-01 | {REVIEW}
        p4 | 2010-01-01 | {ASTHMA}
        p4 | 2026-01-01 | {REVIEW}
        p5 | 2024-01-01 | {ASTHMA}
        p6 | 2024-01-01 | {ASTHMA}
        p7 | 2010-01-01 | {ASTHMA}
        p7 | 2026-01-01 | {REVIEW}
        p8 | 2010-01-01 | {ASTHMA}
        p8 | 2025-09-30 | {REVIEW}
        """,
        medications="""
        patient_id | date       | bnf_code
        p1 | 2026-01-01 | 0301011R0AAAPAP
        p2 | 2025-10-01 | 0302000C0AAAAAA
        p3 | 2025-09-30 | 0301011R0AAAPAP
        p4 | 2026-01-01 | 0303010Q0AAABAB
        p4 | 2026-01-01 | 030
        p4 | 2026-01-01 | 0301
        p4 | 2026-01-01 | 0S01011R0
        p5 | 2026-01-01 | 0301011R0AAAPAP
        p6 | 2026-01-01 | 0301011R0AAAPAP
        p7 | 2026-01-01 |
        p8 | 2026-01-01 | 0302000C0AAAAAA
        """.replace("p4 | 2026-01-01 | 0301\n", "p4 | 2026-01-01 | 0Z01\n"),
    )


def test_asthma_resolved_on_the_day_of_the_latest_diagnosis(spec):
    spec(
        "asthma_review",
        AS_OF,
        patients="""
        patient_id | den | num
        p1         |     |
        p2         | y   | y
        """,
        clinical_events=f"""
        patient_id | date       | snomed_code
        p1 | 2020-01-01 | {ASTHMA}
        p1 | 2020-01-01 | {ASTHMA_RES}
        p1 | 2026-01-01 | {REVIEW}
        p2 | 2020-01-01 | {ASTHMA_RES}
        p2 | 2020-01-02 | {ASTHMA}
        p2 | 2026-01-01 | {REVIEW}
        """,
        medications="""
        patient_id | date       | bnf_code
        p1 | 2026-01-01 | 0301011R0AAAPAP
        p2 | 2026-01-01 | 0301011R0AAAPAP
        """,
    )


def test_flu_65(spec):
    spec(
        "flu_vacc_65",
        AS_OF,
        patients="""
        patient_id | date_of_birth | den | num
        p1         | 1961-09-30    | y   | y
        p2         | 1961-10-01    |     |
        # vaccinated on the first day of the period
        p3         | 1950-01-01    | y   | y
        # vaccinated the day before the period
        p4         | 1950-01-01    | y   |
        # vaccinated before registration, in the period: counts
        p5         | 1950-01-01    | y   | y
        # a near-miss code
        p6         | 1950-01-01    | y   |
        """,
        clinical_events=f"""
        patient_id | date       | snomed_code
        p1 | 2026-09-30 | {FLU}
        p2 | 2026-09-30 | {FLU}
        p3 | 2025-10-01 | {FLU}
        p4 | 2025-09-30 | {FLU}
        p5 | 2025-11-01 | {FLU}
        p6 | 2026-01-01 | 82285100000010
        """,
    )


def test_smoking_15(spec):
    spec(
        "smoking_status_15",
        AS_OF,
        patients="""
        patient_id | date_of_birth | den | num
        p1         | 2011-09-30    | y   | y
        p2         | 2011-10-01    |     |
        p3         | 1980-01-01    | y   |
        p4         | 1980-01-01    | y   | y
        """,
        clinical_events=f"""
        patient_id | date       | snomed_code
        p1 | 2026-01-01 | {SMOKER}
        p2 | 2026-01-01 | {SMOKER}
        p3 | 2026-10-01 | {NEVER}
        p4 | 2026-01-01 | {NEVER}
        """,
    )


def test_cervical_window_and_ages(spec):
    # as_of 2026-08-31: 42 months back is 2023-02-31, clamped to 2023-02-28;
    # the window starts 2023-03-01
    spec(
        "cervical_screen_25_49",
        "2026-08-31",
        patients="""
        patient_id | sex     | date_of_birth | den | num
        # screened on the first day of the window
        p1         | female  | 1990-01-01    | y   | y
        # screened on the day before (the clamped month end)
        p2         | female  | 1990-01-01    | y   |
        # 25 today
        p3         | female  | 2001-08-31    | y   |
        # 25 tomorrow
        p4         | female  | 2001-09-01    |     |
        # 49, 50 tomorrow
        p5         | female  | 1976-09-01    | y   | y
        # 50 today
        p6         | female  | 1976-08-31    |     |
        # male
        p7         | male    | 1990-01-01    |     |
        # sex unknown
        p8         | unknown | 1990-01-01    |     |
        """,
        clinical_events=f"""
        patient_id | date       | snomed_code
        p1 | 2023-03-01 | {CERVICAL}
        p2 | 2023-02-28 | {CERVICAL}
        p5 | 2024-01-01 | {CERVICAL}
        p6 | 2024-01-01 | {CERVICAL}
        p7 | 2024-01-01 | {CERVICAL}
        p8 | 2024-01-01 | {CERVICAL}
        """,
    )


def test_29_february(spec):
    # as_of 2028-02-29 (leap): period 2027-03-01 .. 2028-02-29
    spec(
        "flu_vacc_65",
        "2028-02-29",
        patients="""
        patient_id | date_of_birth | den | num
        # born 28 Feb 1963: 65 yesterday (as_of minus 65 years is 28 Feb 1963)
        p1         | 1963-02-28    | y   | y
        # born 1 Mar 1963: 65 tomorrow
        p2         | 1963-03-01    |     |
        # vaccinated 2027-02-28: the day before the period
        p3         | 1950-01-01    | y   |
        # vaccinated 2027-03-01: first day
        p4         | 1950-01-01    | y   | y
        """,
        clinical_events=f"""
        patient_id | date       | snomed_code
        p1 | 2028-02-29 | {FLU}
        p3 | 2027-02-28 | {FLU}
        p4 | 2027-03-01 | {FLU}
        """,
    )


def test_birthday_29_february_in_a_common_year(spec):
    # as_of 2025-02-28: someone born 2008-02-29 turns 17 on 2025-03-01, not yet 17
    spec(
        "dm_hba1c_le58",
        "2025-02-28",
        patients="""
        patient_id | date_of_birth | den | num
        p1         | 2008-02-29    |     |
        p2         | 2008-02-28    | y   | y
        """,
        clinical_events="""
        patient_id | date       | snomed_code     | numeric_value
        p1 | 2020-01-01 | 73211009        |
        p1 | 2025-01-01 | 999791000000106 | 50
        p2 | 2020-01-01 | 73211009        |
        p2 | 2025-01-01 | 999791000000106 | 50
        """,
    )
    spec(
        "dm_hba1c_le58",
        "2025-03-01",
        patients="""
        patient_id | date_of_birth | den | num
        p1         | 2008-02-29    | y   | y
        """,
        clinical_events="""
        patient_id | date       | snomed_code     | numeric_value
        p1 | 2020-01-01 | 73211009        |
        p1 | 2025-01-01 | 999791000000106 | 50
        """,
    )
