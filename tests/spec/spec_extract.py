"""Small extracts written as tables a clinician can read, loaded into a real database.

A table is pipe-separated text with a header line; an empty cell is empty (NULL).
Columns a test does not care about take the defaults below. Two extra columns, ``den``
and ``num``, mark (``y``) the patients or appointments a test expects in the
denominator and numerator; they are expected results, not extract data.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa

from agent.extract import schema

DEFAULTS: dict[str, dict[str, Any]] = {
    "patients": {
        "sex": "female",
        "date_of_birth": "1970-01-01",
        "date_of_death": None,
        "registered_from": "2000-01-01",
        "registered_to": None,
        "imd_decile": None,
    },
    "clinical_events": {"numeric_value": None},
    "medications": {"dmd_code": "100000001", "bnf_code": None},
    "appointments": {
        "patient_id": "p1",
        "status": "attended",
        "clinician_id": "c1",
        "clinician_role": "gp",
        "mode": "face_to_face",
        "duration_minutes": None,
    },
}
EXPECTATIONS = ("den", "num")


def parse(text: str) -> list[dict[str, str | None]]:
    """Rows of a pipe-separated table; empty cells become None."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    lines = [line for line in lines if not line.startswith("#")]
    if not lines:
        return []
    header = [h.strip() for h in lines[0].split("|")]
    rows = []
    for line in lines[1:]:
        cells = [c.strip() for c in line.split("|")]
        assert len(cells) <= len(header), f"row has {len(cells)} cells, header {len(header)}"
        cells += [""] * (len(header) - len(cells))  # trailing empty cells may be left out
        rows.append({h: (c or None) for h, c in zip(header, cells, strict=True)})
    return rows


def _typed(table: sa.Table, row: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for column in table.columns:
        value = row.get(column.name)
        if value is None or not isinstance(value, str):
            out[column.name] = value
        elif isinstance(column.type, sa.DateTime):
            out[column.name] = datetime.fromisoformat(
                value if len(value) > 10 else value + " 09:00"
            )
        elif isinstance(column.type, sa.Date):
            out[column.name] = date.fromisoformat(value)
        elif isinstance(column.type, sa.Float):
            out[column.name] = float(value)
        elif isinstance(column.type, sa.Integer):
            out[column.name] = int(value)
        else:
            out[column.name] = value
    return out


def complete(tables: dict[str, str | list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    """Fill defaults, number appointments, and add a default patient for any id not listed."""
    out: dict[str, list[dict[str, Any]]] = {}
    for name in schema.TABLES:
        raw = tables.get(name, "")
        rows = parse(raw) if isinstance(raw, str) else [dict(r) for r in raw]
        out[name] = [{**DEFAULTS.get(name, {}), **row} for row in rows]
    for k, row in enumerate(out["appointments"], start=1):
        row.setdefault("appointment_id", f"a{k}")
        if row.get("booked_on") is None:
            row["booked_on"] = str(row["starts_at"])[:10]
    known = {p["patient_id"] for p in out["patients"]}
    for name in ("clinical_events", "medications", "appointments"):
        for row in out[name]:
            if row["patient_id"] not in known:
                known.add(row["patient_id"])
                out["patients"].append({**DEFAULTS["patients"], "patient_id": row["patient_id"]})
    return out


def only(
    tables: dict[str, list[dict[str, Any]]], patient_id: str, appointment_id: str | None = None
) -> dict[str, list[dict[str, Any]]]:
    """The rows of one patient (and, if given, only that one of their appointments)."""
    out = {
        name: [r for r in rows if r["patient_id"] == patient_id] for name, rows in tables.items()
    }
    if appointment_id is not None:
        out["appointments"] = [
            a for a in out["appointments"] if a["appointment_id"] == appointment_id
        ]
    return out


def insert(connection: sa.Connection, tables: dict[str, list[dict[str, Any]]]) -> None:
    """Insert rows (expectation columns dropped) into the four tables."""
    for name, table in schema.TABLES.items():
        rows = [_typed(table, r) for r in tables.get(name, [])]
        if rows:
            connection.execute(table.insert(), rows)


BACKENDS = ("sqlite", "duckdb", "postgres")


@contextmanager
def database(backend: str, postgres_url: str | None = None) -> Iterator[sa.Connection]:
    """A connection on a fresh database holding the four (empty) extract tables."""
    url = {"sqlite": "sqlite://", "duckdb": "duckdb:///:memory:", "postgres": postgres_url}[backend]
    assert url is not None
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            transaction = connection.begin()
            try:
                schema.metadata.create_all(connection, checkfirst=False)
                yield connection
            finally:
                transaction.rollback()  # leaves nothing behind (PostgreSQL DDL is transactional)
    finally:
        engine.dispose()
