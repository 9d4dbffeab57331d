"""The same extract read from CSV, Parquet, SQLite and PostgreSQL gives the same tables."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from agent.extract import open_extract, schema
from agent.synth import generate_practice
from fedpeer.errors import ExtractError

AS_OF = date(2026, 9, 30)


@pytest.fixture(scope="module")
def practice(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One small synthetic practice written as CSV and as Parquet."""
    root = tmp_path_factory.mktemp("practice")
    for fmt in ("csv", "parquet"):
        generate_practice(root / fmt, practice_seed=42, list_size=120, as_of=AS_OF, fmt=fmt)
    return {"csv": root / "csv", "parquet": root / "parquet"}


def content(location: Path | str) -> dict[str, list[tuple]]:
    """Every typed row of every table, sorted, plus the quality counts."""
    out: dict[str, list[tuple]] = {}
    with open_extract(location, AS_OF) as extract, extract.connect() as conn:
        for name, table in schema.TABLES.items():
            rows = [tuple(r) for r in conn.execute(sa.select(table))]
            out[name] = sorted(rows, key=repr)
        out["quality"] = extract.quality.rows()
    return out


@pytest.fixture(scope="module")
def expected(practice: dict[str, Path]) -> dict[str, list[tuple]]:
    return content(practice["parquet"])


def load_into(url: str, rows: dict[str, list[tuple]]) -> None:
    """Create the schema's tables in a database and insert rows into them."""
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            schema.metadata.create_all(conn)
            for name, table in schema.TABLES.items():
                conn.execute(
                    table.insert(), [dict(zip(table.c.keys(), r, strict=True)) for r in rows[name]]
                )
    finally:
        engine.dispose()


def test_csv_and_parquet_agree(practice: dict[str, Path], expected: dict[str, list[tuple]]) -> None:
    assert len(expected["clinical_events"]) > 1000
    assert content(practice["csv"]) == expected


def test_materialized_csv_agrees(practice: dict[str, Path], expected: dict) -> None:
    with (
        open_extract(practice["csv"], AS_OF, materialize=True) as extract,
        extract.connect() as conn,
    ):
        sql = "SELECT table_name, table_type FROM information_schema.tables"
        kinds = {name: kind for name, kind in conn.exec_driver_sql(sql)}
        rows = sorted((tuple(r) for r in conn.execute(sa.select(schema.appointments))), key=repr)
    assert kinds["appointments"] == "BASE TABLE" and rows == expected["appointments"]


def test_sqlite_agrees(tmp_path: Path, expected: dict[str, list[tuple]]) -> None:
    url = f"sqlite:///{tmp_path / 'extract.db'}"
    load_into(url, expected)
    assert content(url) == expected


@pytest.mark.postgres
def test_postgres_agrees(postgres_url: str, expected: dict[str, list[tuple]]) -> None:
    load_into(postgres_url, expected)
    assert content(postgres_url) == expected


def test_parquet_integer_ids_and_string_dates(tmp_path: Path) -> None:
    pq.write_table(
        pa.table(
            {
                "imd_decile": pa.array([3.0, None]),
                "patient_id": pa.array([7, 8], pa.int64()),
                "sex": ["female", "male"],
                "date_of_birth": ["1980-01-01", "1990-02-03"],
                "date_of_death": pa.array([None, None], pa.date32()),
                "registered_from": pa.array([date(2000, 1, 1), date(2001, 1, 1)]),
                "registered_to": pa.array(["", None], pa.string()),
                "extra": [1, 2],
            }
        ),
        tmp_path / "patients.parquet",
    )
    text, day = pa.string(), pa.date32()
    empty = {
        "clinical_events": {"patient_id": text, "date": day, "snomed_code": text},
        "medications": {"patient_id": text, "date": day, "dmd_code": text, "bnf_code": text},
    }
    empty["clinical_events"]["numeric_value"] = pa.float64()
    for name, cols in empty.items():
        pq.write_table(
            pa.table({k: pa.array([], t) for k, t in cols.items()}), tmp_path / f"{name}.parquet"
        )
    pq.write_table(
        pa.table(
            {
                "appointment_id": pa.array([1], pa.int32()),
                "patient_id": ["7"],
                "booked_on": pa.array([date(2026, 1, 1)]),
                "starts_at": ["2026-01-02 09:00:00"],
                "status": ["attended"],
                "clinician_id": ["gp1"],
                "clinician_role": ["gp"],
                "mode": ["video"],
                "duration_minutes": pa.array([12], pa.int64()),
            }
        ),
        tmp_path / "appointments.parquet",
    )
    got = content(tmp_path)
    assert got["patients"] == [
        ("7", "female", date(1980, 1, 1), None, date(2000, 1, 1), None, 3),
        ("8", "male", date(1990, 2, 3), None, date(2001, 1, 1), None, None),
    ]
    assert got["appointments"][0][0] == "1" and got["appointments"][0][8] == 12.0
    first = dict(zip(schema.patients.c.keys(), got["patients"][0], strict=True))
    pq.write_table(
        pa.table({**{c: [v] for c, v in first.items()}, "imd_decile": [3.5]}),
        tmp_path / "patients.parquet",
    )
    with pytest.raises(ExtractError) as caught:
        open_extract(tmp_path, AS_OF)
    assert (caught.value.table, caught.value.line, caught.value.column) == (
        "patients",
        1,
        "imd_decile",
    )
    assert "3.5" not in str(caught.value)


def test_parquet_row_number_and_unusable_type(tmp_path: Path, practice: dict[str, Path]) -> None:
    for name in schema.TABLES:
        (tmp_path / f"{name}.parquet").write_bytes(
            (practice["parquet"] / f"{name}.parquet").read_bytes()
        )
    events = pq.read_table(tmp_path / "clinical_events.parquet")
    dates = events.column("date").cast(pa.string()).to_pylist()
    dates[500] = "2026-02-31"
    pq.write_table(
        events.set_column(1, "date", pa.array(dates)), tmp_path / "clinical_events.parquet"
    )
    with pytest.raises(ExtractError) as caught:
        open_extract(tmp_path, AS_OF)
    assert (caught.value.table, caught.value.line, caught.value.column) == (
        "clinical_events",
        501,
        "date",
    )
    assert "2026-02-31" not in str(caught.value)

    pq.write_table(
        events.set_column(1, "date", pa.array([True] * len(events))),
        tmp_path / "clinical_events.parquet",
    )
    with pytest.raises(ExtractError, match="Parquet type BOOLEAN") as caught:
        open_extract(tmp_path, AS_OF)
    assert caught.value.column == "date"


def sqlite_extract(path: Path) -> str:
    """A tiny SQLite extract, columns declared the way a practice would."""
    url = f"sqlite:///{path}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        for sql in (
            "CREATE TABLE patients (patient_id TEXT, sex TEXT, date_of_birth TEXT,"
            " date_of_death TEXT, registered_from TEXT, registered_to TEXT, imd_decile INTEGER,"
            " extra TEXT)",
            "INSERT INTO patients VALUES"
            " ('007','female','1980-01-01',NULL,'2000-01-01',NULL,3,'x'),"
            " ('7','male','1990-01-01',NULL,'2000-01-01',NULL,NULL,'y')",
            "CREATE TABLE clinical_events (patient_id TEXT, date TEXT, snomed_code TEXT,"
            " numeric_value REAL)",
            "INSERT INTO clinical_events VALUES ('007','2026-01-01','999791000000106','48'),"
            " ('7','2026-02-01','999791000000106',NULL)",
            "CREATE TABLE medications (patient_id TEXT, date TEXT, dmd_code TEXT, bnf_code TEXT)",
            "CREATE TABLE appointments (appointment_id TEXT, patient_id TEXT, booked_on TEXT,"
            " starts_at TEXT, status TEXT, clinician_id TEXT, clinician_role TEXT, mode TEXT,"
            " duration_minutes REAL)",
            "INSERT INTO appointments VALUES ('a1','7','2026-01-01','2026-01-02T09:00:00',"
            "'attended','g','gp','video',10)",
        ):
            conn.exec_driver_sql(sql)
    engine.dispose()
    return url


def test_sqlite_typed_reads(tmp_path: Path) -> None:
    url = sqlite_extract(tmp_path / "x.db")
    got = content(url)
    assert got["patients"][0] == (
        "007",
        "female",
        date(1980, 1, 1),
        None,
        date(2000, 1, 1),
        None,
        3,
    )
    assert got["clinical_events"][0][3] == 48.0
    assert got["appointments"][0][3].hour == 9


@pytest.mark.parametrize(
    ("table", "change", "row", "column", "secret"),
    [
        ("clinical_events", "numeric_value = 'high'", 2, "numeric_value", "high"),
        ("patients", "date_of_birth = '1990-02-30'", 2, "date_of_birth", "1990-02-30"),
        ("patients", "patient_id = '007'", 2, "patient_id", "007"),
        ("appointments", "status = 'gone'", 1, "status", "gone"),
        ("appointments", "patient_id = '0007'", 1, "patient_id", "0007"),
        ("patients", "imd_decile = 'four'", 2, "imd_decile", "four"),
    ],
)
def test_sqlite_fatal_names_row(
    tmp_path: Path, table: str, change: str, row: int, column: str, secret: str
) -> None:
    url = sqlite_extract(tmp_path / "x.db")
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"UPDATE {table} SET {change} WHERE rowid = {row}")
    engine.dispose()
    with pytest.raises(ExtractError) as caught:
        open_extract(url, AS_OF)
    err = caught.value
    assert (err.table, err.line, err.column) == (table, row, column)
    assert secret not in str(err)


def test_sqlite_missing_table_and_column(tmp_path: Path) -> None:
    url = sqlite_extract(tmp_path / "x.db")
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE medications DROP COLUMN bnf_code")
    with pytest.raises(ExtractError) as caught:
        open_extract(url, AS_OF)
    assert (caught.value.table, caught.value.column) == ("medications", "bnf_code")
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE medications")
    engine.dispose()
    with pytest.raises(ExtractError, match="table medications: the table is missing"):
        open_extract(url, AS_OF)


@pytest.mark.postgres
def test_postgres_fatal_row_and_column_types(postgres_url: str) -> None:
    engine = sa.create_engine(postgres_url)
    with engine.begin() as conn:
        schema.metadata.create_all(conn)
        conn.execute(
            schema.patients.insert(),
            [
                {
                    "patient_id": "a",
                    "sex": "female",
                    "date_of_birth": date(1980, 1, 1),
                    "registered_from": date(2000, 1, 1),
                },
                {
                    "patient_id": "b",
                    "sex": "f",
                    "date_of_birth": date(1980, 1, 1),
                    "registered_from": date(2000, 1, 1),
                },
            ],
        )
    with pytest.raises(ExtractError) as caught:
        open_extract(postgres_url, AS_OF)
    assert (caught.value.table, caught.value.line, caught.value.column) == ("patients", 2, "sex")
    assert "'f'" not in str(caught.value)
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE patients SET sex = 'female'")
        conn.exec_driver_sql("ALTER TABLE clinical_events ALTER COLUMN date TYPE text")
    engine.dispose()
    with pytest.raises(ExtractError, match="must be DATE") as caught:
        open_extract(postgres_url, AS_OF)
    assert (caught.value.table, caught.value.column) == ("clinical_events", "date")


def test_location_that_is_neither(tmp_path: Path) -> None:
    with pytest.raises(ExtractError, match="neither"):
        open_extract(tmp_path / "nowhere", AS_OF)
    with pytest.raises(ExtractError, match=r"patients\.csv"):
        open_extract(tmp_path, AS_OF)


def test_unreachable_database() -> None:
    with pytest.raises(ExtractError, match="cannot connect"):
        open_extract("postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=2", AS_OF)


def test_sqlite_views_are_accepted(tmp_path: Path) -> None:
    url = sqlite_extract(tmp_path / "x.db")
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE appointments RENAME TO appointments_export")
        conn.exec_driver_sql("CREATE VIEW appointments AS SELECT * FROM appointments_export")
    assert content(url)["appointments"][0][0] == "a1"
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE appointments_export SET mode = 'pigeon'")
    engine.dispose()
    with pytest.raises(ExtractError) as caught:
        open_extract(url, AS_OF)
    assert (caught.value.table, caught.value.line, caught.value.column) == (
        "appointments",
        1,
        "mode",
    )
