"""Reading CSV extracts: the file format rules, every fatal problem, the quality counts."""

from __future__ import annotations

import csv
from datetime import date, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.extract import DataQualitySummary, open_extract, schema
from fedpeer.errors import ExtractError

AS_OF = date(2026, 9, 30)

HEADERS = {name: [c.name for c in table.columns] for name, table in schema.TABLES.items()}


def base_rows() -> dict[str, list[list[str]]]:
    """A tiny valid extract, by table, rows in header order."""
    return {
        "patients": [
            ["007", "female", "1980-01-01", "", "2000-01-01", "", "3"],
            ["7", "male", "1990-05-01", "", "2010-01-01", "", "10"],
            ["NA", "unknown", "2000-02-29", "", "2001-01-01", "", ""],
        ],
        "clinical_events": [
            ["007", "2026-01-01", "999791000000106", "48"],
            ["NA", "2026-03-01", "195967001", ""],
        ],
        "medications": [["7", "2026-02-01", "323509002", "0501013B0AAABAB"]],
        "appointments": [
            [
                "a1",
                "007",
                "2026-01-01",
                "2026-01-05 09:00:00",
                "attended",
                "gp01",
                "gp",
                "face_to_face",
                "10",
            ],
            [
                "a2",
                "NA",
                "2026-01-01",
                "2026-01-06T14:30",
                "did_not_attend",
                "nu01",
                "nurse",
                "telephone",
                "",
            ],
        ],
    }


def write_extract(
    directory: Path,
    rows: dict[str, list[list[str]]] | None = None,
    *,
    headers: dict[str, list[str]] | None = None,
    newline: str = "\n",
) -> Path:
    """Write CSV files (any header order or extra columns the caller gives)."""
    rows = base_rows() if rows is None else rows
    headers = headers or HEADERS
    directory.mkdir(parents=True, exist_ok=True)
    for table, table_rows in rows.items():
        with (directory / f"{table}.csv").open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f, lineterminator=newline)
            writer.writerow(headers[table])
            writer.writerows(table_rows)
    return directory


def error_of(directory: Path) -> ExtractError:
    with pytest.raises(ExtractError) as caught:
        open_extract(directory, AS_OF)
    return caught.value


def fetch(location: Path | str, table: sa.Table) -> list[tuple]:
    with open_extract(location, AS_OF) as extract, extract.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.select(table))]


# --- the file format -------------------------------------------------------------------


def test_identifiers_stay_text_and_empty_is_null(tmp_path: Path) -> None:
    got = fetch(write_extract(tmp_path), schema.patients)
    assert got == [
        ("007", "female", date(1980, 1, 1), None, date(2000, 1, 1), None, 3),
        ("7", "male", date(1990, 5, 1), None, date(2010, 1, 1), None, 10),
        ("NA", "unknown", date(2000, 2, 29), None, date(2001, 1, 1), None, None),
    ]


def test_typed_views_have_declared_types(tmp_path: Path) -> None:
    got = fetch(write_extract(tmp_path), schema.appointments)
    assert got[0] == (
        "a1",
        "007",
        date(2026, 1, 1),
        datetime(2026, 1, 5, 9),
        "attended",
        "gp01",
        "gp",
        "face_to_face",
        10.0,
    )
    assert got[1][3] == datetime(2026, 1, 6, 14, 30) and got[1][8] is None
    events = fetch(tmp_path, schema.clinical_events)
    assert events[0][3] == 48.0 and isinstance(events[0][3], float) and events[1][3] is None


def test_crlf_quoted_fields_extra_and_reordered_columns(tmp_path: Path) -> None:
    headers = dict(HEADERS)
    headers["patients"] = ["note", *reversed(HEADERS["patients"]), "sex2"]
    rows = base_rows()
    rows["patients"] = [['a, "quoted"\r\nnote', *reversed(r), "x"] for r in rows["patients"]]
    write_extract(tmp_path, rows, headers=headers, newline="\r\n")
    assert b"\r\n" in (tmp_path / "patients.csv").read_bytes()
    got = fetch(tmp_path, schema.patients)
    assert [r[0] for r in got] == ["007", "7", "NA"] and got[0][1] == "female"


def test_byte_order_mark_and_engine_query_on_connection(tmp_path: Path) -> None:
    write_extract(tmp_path)
    path = tmp_path / "patients.csv"
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    p = schema.patients
    with open_extract(tmp_path, AS_OF) as extract, extract.connect() as conn:
        q = sa.select(sa.func.count()).where(
            p.c.date_of_birth < date(1995, 1, 1), p.c.sex != "unknown"
        )
        assert conn.execute(q).scalar() == 2
        j = sa.select(sa.func.count()).select_from(
            schema.clinical_events.join(p, p.c.patient_id == schema.clinical_events.c.patient_id)
        )
        assert conn.execute(j).scalar() == 2
    assert extract.closed


def test_threads_and_memory_limit_are_applied(tmp_path: Path) -> None:
    write_extract(tmp_path)
    with (
        open_extract(tmp_path, AS_OF, memory_limit="300MB", threads=1) as extract,
        extract.connect() as conn,
    ):
        assert conn.exec_driver_sql("SELECT current_setting('threads')").scalar() == 1
        assert "MiB" in conn.exec_driver_sql("SELECT current_setting('memory_limit')").scalar()


# --- fatal problems: table, line and column named, the value never -----------------


def assert_names(
    err: ExtractError, table: str, line: int | None, column: str | None, *hidden: str
) -> None:
    assert (err.table, err.line, err.column) == (table, line, column), str(err)
    text = str(err)
    assert f"table {table}" in text
    if line is not None:
        assert f"line {line}" in text
    if column is not None:
        assert f"column {column}" in text
    for value in hidden:
        assert value not in text, f"{value!r} leaked into {text!r}"


def test_missing_file(tmp_path: Path) -> None:
    write_extract(tmp_path)
    (tmp_path / "medications.csv").unlink()
    err = error_of(tmp_path)
    assert err.table == "medications" and "missing" in str(err)


def test_missing_required_column(tmp_path: Path) -> None:
    headers = dict(HEADERS)
    headers["clinical_events"] = ["patient_id", "date", "snomed", "numeric_value"]
    write_extract(tmp_path, headers=headers)
    assert_names(error_of(tmp_path), "clinical_events", 1, "snomed_code")


@pytest.mark.parametrize(
    ("table", "index", "column", "value", "words"),
    [
        ("patients", 1, "date_of_birth", "1990-13-01", "not a date"),
        ("patients", 1, "date_of_birth", "01/05/1990", "not a date"),
        ("patients", 2, "date_of_death", "2026-02-30", "not a date"),
        ("patients", 1, "sex", "Mxle", "not one of"),
        ("patients", 2, "imd_decile", "3.5", "not a whole number"),
        ("patients", 0, "patient_id", "", "empty"),
        ("clinical_events", 1, "numeric_value", "4O.2", "not a number"),
        ("clinical_events", 1, "date", "2026-03-01T10:00", "not a date"),
        ("medications", 0, "date", "yesterday", "not a date"),
        ("appointments", 1, "starts_at", "2026-01-06 25:61", "not a date-time"),
        ("appointments", 1, "status", "ATTENDED", "not one of"),
        ("appointments", 0, "clinician_role", "doctor", "not one of"),
        ("appointments", 1, "mode", "carrier-pigeon", "not one of"),
        ("appointments", 0, "duration_minutes", "ten", "not a number"),
        ("appointments", 1, "booked_on", "NaN", "not a date"),
    ],
)
def test_bad_value_is_fatal_without_quoting_it(
    tmp_path: Path, table: str, index: int, column: str, value: str, words: str
) -> None:
    rows = base_rows()
    rows[table][index][HEADERS[table].index(column)] = value
    err = error_of(write_extract(tmp_path, rows))
    assert_names(err, table, index + 2, column, *([value] if value else []))
    assert words in err.problem and "1 row has this problem" in err.problem


def test_non_finite_number_is_fatal(tmp_path: Path) -> None:
    rows = base_rows()
    rows["clinical_events"][0][3] = "inf"
    assert_names(
        error_of(write_extract(tmp_path, rows)), "clinical_events", 2, "numeric_value", "inf"
    )


def test_date_of_birth_after_reference_date(tmp_path: Path) -> None:
    rows = base_rows()
    rows["patients"][2][2] = "2026-10-01"
    err = error_of(write_extract(tmp_path, rows))
    assert_names(err, "patients", 4, "date_of_birth", "2026-10-01")
    assert "after the reference date" in err.problem


def test_duplicate_patient_id_reports_the_repeat(tmp_path: Path) -> None:
    rows = base_rows()
    rows["patients"].append(["007", "female", "1981-01-01", "", "2000-01-01", "", "3"])
    err = error_of(write_extract(tmp_path, rows))
    assert_names(err, "patients", 5, "patient_id", "007")
    assert "repeats" in err.problem


def test_duplicate_appointment_id(tmp_path: Path) -> None:
    rows = base_rows()
    rows["appointments"][1][0] = "a1"
    assert_names(error_of(write_extract(tmp_path, rows)), "appointments", 3, "appointment_id", "a1")


@pytest.mark.parametrize("table", ["clinical_events", "medications", "appointments"])
def test_patient_id_not_in_patients(tmp_path: Path, table: str) -> None:
    rows = base_rows()
    column = HEADERS[table].index("patient_id")
    rows[table][-1][column] = "0007"  # 007 exists; 0007 does not
    err = error_of(write_extract(tmp_path, rows))
    assert_names(err, table, len(rows[table]) + 1, "patient_id", "0007")
    assert "not in patients" in err.problem


def test_line_counts_physical_lines_of_quoted_newlines(tmp_path: Path) -> None:
    headers = dict(HEADERS)
    headers["patients"] = [*HEADERS["patients"], "note"]
    rows = base_rows()
    rows["patients"] = [[*r, "line one\nline two\r\nline three"] for r in rows["patients"]]
    rows["patients"][2][1] = "F"
    write_extract(tmp_path, rows, headers=headers, newline="\r\n")
    # Header on line 1; each record takes three lines, so the third record starts on 8.
    assert_names(error_of(tmp_path), "patients", 8, "sex", "F,")


def test_first_problem_wins_deterministically(tmp_path: Path) -> None:
    rows = base_rows()
    rows["patients"][2][1] = "x"  # later row
    rows["patients"][1][6] = "ten"  # earlier row, later column
    rows["patients"][1][4] = "never"  # earlier row, earlier column
    rows["appointments"][0][4] = "x"  # later table
    err = error_of(write_extract(tmp_path, rows))
    assert_names(err, "patients", 3, "registered_from", "never")
    assert err.problem.endswith("1 row has this problem")


def test_count_of_rows_with_the_problem(tmp_path: Path) -> None:
    rows = base_rows()
    for r in rows["patients"]:
        r[1] = "?"
    assert "3 rows have this problem" in error_of(write_extract(tmp_path, rows)).problem


@pytest.mark.parametrize(
    ("body", "words", "line"),
    [
        (
            "patient_id,date,dmd_code,bnf_code\n7,2026-01-01,1,2\n7,2026-01-01,1,2,9\n",
            "number of fields",
            3,
        ),
        (
            'patient_id,date,dmd_code,bnf_code\n7,2026-01-01,1,2\n"7,2026-01-01,1,2\n',
            "not closed",
            3,
        ),
    ],
)
def test_malformed_csv_names_the_line(tmp_path: Path, body: str, words: str, line: int) -> None:
    write_extract(tmp_path)
    (tmp_path / "medications.csv").write_text(body, encoding="utf-8")
    err = error_of(tmp_path)
    assert_names(err, "medications", line, None, "2026-01-01")
    assert words in err.problem


def test_not_utf8(tmp_path: Path) -> None:
    write_extract(tmp_path)
    (tmp_path / "medications.csv").write_bytes(
        b"patient_id,date,dmd_code,bnf_code\n7,2026-01-01,\xff\xfe,x\n"
    )
    err = error_of(tmp_path)
    assert err.table == "medications" and "UTF-8" in err.problem


# --- non-fatal findings ------------------------------------------------------------------


def test_quality_counts_on_a_hand_made_extract(tmp_path: Path) -> None:
    rows = base_rows()
    rows["patients"] += [
        [
            "p4",
            "female",
            "1950-01-01",
            "1940-01-01",
            "2000-01-01",
            "",
            "0",
        ],  # death before birth, imd 0
        [
            "p5",
            "male",
            "1960-01-01",
            "",
            "2010-01-01",
            "2005-01-01",
            "11",
        ],  # ends before it starts, imd 11
    ]
    rows["clinical_events"] += [
        ["p4", "2026-10-01", "271649006", "-5"],  # future, negative
        ["p4", "2020-01-01", "27113001", "250000"],  # absurd
        ["p5", "2020-01-01", "X123", ""],  # not digits
    ]
    rows["medications"] += [["p5", "2027-01-01", "1", ""]]
    rows["appointments"] += [
        ["a3", "p4", "2026-02-10", "2026-02-01 09:00", "attended", "gp01", "gp", "video", "0"],
        [
            "a4",
            "p4",
            "2026-02-01",
            "2026-02-01 09:00",
            "attended",
            "gp01",
            "gp",
            "home_visit",
            "600",
        ],
        ["a5", "p5", "2026-09-01", "2026-10-02 09:00", "attended", "gp01", "gp", "online", ""],
        ["a6", "p5", "2026-09-01", "2026-09-02 09:00", "booked", "hc01", "hca", "face_to_face", ""],
        [
            "a7",
            "p5",
            "2026-09-01",
            "2026-10-09 09:00",
            "cancelled_by_practice",
            "ot1",
            "other",
            "online",
            "",
        ],
        [
            "a8",
            "p5",
            "2026-09-01",
            "2026-10-09 09:00",
            "cancelled_by_patient",
            "ph1",
            "pharmacist",
            "online",
            "",
        ],
    ]
    write_extract(tmp_path, rows)
    codes = {"999791000000106", "195967001", "271649006"}
    with open_extract(tmp_path, AS_OF, known_codes=codes) as extract:
        q = extract.quality
    assert q == DataQualitySummary(
        patients_rows=5,
        clinical_events_rows=5,
        medications_rows=2,
        appointments_rows=8,
        imd_decile_out_of_range=2,
        death_before_birth=1,
        registered_to_before_registered_from=1,
        clinical_events_after_as_of=1,
        numeric_value_negative=1,
        numeric_value_absurd=1,
        snomed_code_not_digits=1,
        snomed_code_in_no_codelist=2,
        medications_after_as_of=1,
        duration_not_positive=1,
        duration_absurd=1,
        booked_after_start=1,
        outcome_recorded_after_as_of=1,
        still_booked_before_as_of=1,
    )
    assert q.as_dict()["snomed_code_in_no_codelist"] == 2
    assert ("appointments_rows", 8) in q.rows()
    assert "patients_rows" not in q.findings() and q.findings()["booked_after_start"] == 1
    text = q.describe()
    assert "negative lead time" in text and "p4" not in text and "X123" not in text


def test_clean_extract_has_no_findings_and_codes_unchecked(tmp_path: Path) -> None:
    with open_extract(write_extract(tmp_path), AS_OF) as extract:
        q = extract.quality
    assert q.findings() == {} and "snomed_code_in_no_codelist" not in q.as_dict()
    assert "No data-quality findings" in q.describe() and "not checked" in q.describe()


# --- identifiers survive CSV exactly ------------------------------------------------


@settings(max_examples=15, derandomize=True, deadline=None)
@given(
    ids=st.lists(
        st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=12),
        min_size=1,
        max_size=5,
        unique=True,
    )
)
def test_any_identifier_round_trips(
    tmp_path_factory: pytest.TempPathFactory, ids: list[str]
) -> None:
    ids = [*ids, "NA", "null", "007", "7"]
    ids = list(dict.fromkeys(ids))
    rows = base_rows()
    rows["patients"] = [[i, "female", "1980-01-01", "", "2000-01-01", "", ""] for i in ids]
    rows["clinical_events"] = [[i, "2026-01-01", "1", ""] for i in ids]
    rows["medications"] = []
    rows["appointments"] = []
    directory = write_extract(tmp_path_factory.mktemp("ids"), rows, newline="\r\n")
    with open_extract(directory, AS_OF) as extract, extract.connect() as conn:
        got = [r[0] for r in conn.execute(sa.select(schema.patients.c.patient_id))]
        linked = conn.execute(
            sa.select(sa.func.count()).select_from(
                schema.clinical_events.join(
                    schema.patients,
                    schema.patients.c.patient_id == schema.clinical_events.c.patient_id,
                )
            )
        ).scalar()
    assert got == ids and linked == len(ids)


def test_engine_serves_several_threads(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    def count(extract: object) -> int:
        with extract.connect() as conn:  # type: ignore[attr-defined]
            return conn.execute(sa.select(sa.func.count()).select_from(schema.patients)).scalar()

    with open_extract(write_extract(tmp_path), AS_OF) as extract, ThreadPoolExecutor(3) as pool:
        assert list(pool.map(count, [extract] * 6)) == [3] * 6
