"""The rules of EXTRACT.md "Bad input", run as a few aggregate SQL passes per table.

Fatal problems raise ``ExtractError`` naming table, line (CSV) or row, and column, and
never the value. Order is deterministic: tables in the order patients,
clinical_events, medications, appointments; within a table, first the row-level checks
(the earliest offending row wins, ties going to the earlier column), then duplicate
identifiers (the first repeat), then patient_ids missing from patients (the first such
row). Non-fatal findings are counted into a ``DataQualitySummary``.

Each table costs one aggregate scan (counts of every check, plus the duplicate count),
and one anti-join for the patient_id reference; only when a count is non-zero does a
second query find the first offending row.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

import sqlalchemy as sa

from agent.extract._dialects import (
    DATE,
    INTEGER,
    NUMBER,
    TEXT,
    TIMESTAMP,
    SourceDialect,
    kind_of,
    sql_string,
)
from agent.extract.quality import (
    ABSURD_DURATION_MINUTES,
    ABSURD_NUMERIC_VALUE,
    DataQualitySummary,
)
from agent.extract.schema import (
    APPOINTMENT_MODES,
    APPOINTMENT_STATUSES,
    CLINICIAN_ROLES,
    SEXES,
    TABLES,
)
from fedpeer.errors import ExtractError

TABLE_ORDER = ("patients", "clinical_events", "medications", "appointments")
ENUMS = {
    ("patients", "sex"): SEXES,
    ("appointments", "status"): APPOINTMENT_STATUSES,
    ("appointments", "clinician_role"): CLINICIAN_ROLES,
    ("appointments", "mode"): APPOINTMENT_MODES,
}
UNIQUE_KEYS = {"patients": "patient_id", "appointments": "appointment_id"}
_NOT_OF_KIND = {
    DATE: "is not a date in the form YYYY-MM-DD",
    TIMESTAMP: "is not a date-time in the form YYYY-MM-DD HH:MM[:SS]",
    NUMBER: "is not a number",
    INTEGER: "is not a whole number (or is far too large)",
}


@dataclass(frozen=True)
class Check:
    """One rule over one column: ``condition`` is SQL, true on an offending row."""

    column: str
    problem: str
    condition: str


def row_checks(dialect: SourceDialect, table: str, as_of: date) -> list[Check]:
    """The fatal row-level checks of a table, in column order."""
    checks: list[Check] = []
    for column in TABLES[table].columns:
        name, kind = column.name, kind_of(column)
        if not column.nullable:
            checks.append(
                Check(name, "a required value is empty", dialect.missing(table, name, kind))
            )
        bad = dialect.bad(table, name, kind)
        if bad is not None:
            checks.append(Check(name, _NOT_OF_KIND[kind], bad))
        allowed = ENUMS.get((table, name))
        if allowed is not None:
            listed = ", ".join(sql_string(v) for v in allowed)
            checks.append(
                Check(
                    name,
                    f"is not one of {', '.join(allowed)}",
                    f"({dialect.value(table, name, kind)} NOT IN ({listed}))",
                )
            )
        if (table, name) == ("patients", "date_of_birth"):
            checks.append(
                Check(
                    name,
                    "the date of birth is after the reference date",
                    f"({dialect.value(table, name, kind)} > {dialect.date_literal(as_of)})",
                )
            )
    return checks


def quality_checks(
    dialect: SourceDialect, table: str, as_of: date, known_codes: frozenset[str] | None
) -> dict[str, str]:
    """The non-fatal counts of a table, by DataQualitySummary field name."""
    d = dialect

    def v(column: str) -> str:
        return d.value(table, column, kind_of(TABLES[table].c[column]))

    def day(column: str) -> str:
        return d.day(table, column, kind_of(TABLES[table].c[column]))

    as_of_sql = d.date_literal(as_of)
    if table == "patients":
        return {
            "imd_decile_out_of_range": f"({v('imd_decile')} NOT BETWEEN 1 AND 10)",
            "death_before_birth": f"({v('date_of_death')} < {v('date_of_birth')})",
            "registered_to_before_registered_from": (
                f"({v('registered_to')} < {v('registered_from')})"
            ),
        }
    if table == "clinical_events":
        found = {
            "clinical_events_after_as_of": f"({day('date')} > {as_of_sql})",
            "numeric_value_negative": f"({v('numeric_value')} < 0)",
            "numeric_value_absurd": f"({v('numeric_value')} > {ABSURD_NUMERIC_VALUE})",
            "snomed_code_not_digits": d.not_digits(v("snomed_code")),
        }
        if known_codes is not None:
            found["snomed_code_in_no_codelist"] = (
                f"({v('snomed_code')} NOT IN ({', '.join(map(sql_string, sorted(known_codes)))}))"
                if known_codes
                else f"({v('snomed_code')} IS NOT NULL)"
            )
        return found
    if table == "medications":
        return {"medications_after_as_of": f"({day('date')} > {as_of_sql})"}
    return {
        "duration_not_positive": f"({v('duration_minutes')} <= 0)",
        "duration_absurd": f"({v('duration_minutes')} > {ABSURD_DURATION_MINUTES})",
        "booked_after_start": f"({day('booked_on')} > {day('starts_at')})",
        "outcome_recorded_after_as_of": (
            f"({v('status')} IN ('attended', 'did_not_attend')"
            f" AND {day('starts_at')} > {as_of_sql})"
        ),
        "still_booked_before_as_of": (
            f"({v('status')} = 'booked' AND {day('starts_at')} < {as_of_sql})"
        ),
    }


def _count(condition: str) -> str:
    return f"SUM(CASE WHEN {condition} THEN 1 ELSE 0 END)"


def _plural(n: int) -> str:
    return f"{n:,} row has this problem" if n == 1 else f"{n:,} rows have this problem"


def validate(
    conn: sa.Connection,
    dialect: SourceDialect,
    as_of: date,
    known_codes: Iterable[str] | None = None,
) -> DataQualitySummary:
    """Check every table; raise ``ExtractError`` on the first fatal problem, else count."""
    codes = None if known_codes is None else frozenset(known_codes)
    counts: dict[str, int] = {}
    for table in TABLE_ORDER:
        counts.update(_validate_table(conn, dialect, table, as_of, codes))
    return DataQualitySummary(**counts)


def _validate_table(
    conn: sa.Connection,
    d: SourceDialect,
    table: str,
    as_of: date,
    codes: frozenset[str] | None,
) -> dict[str, int]:
    checks = row_checks(d, table, as_of)
    quality = quality_checks(d, table, as_of, codes)
    key = UNIQUE_KEYS.get(table)
    selects = ["COUNT(*)"]
    selects += [_count(c.condition) for c in checks]
    selects += [_count(cond) for cond in quality.values()]
    if key:
        k = d.value(table, key, TEXT)
        selects.append(f"COUNT({k}) - COUNT(DISTINCT {k})")
    sql = f"SELECT {', '.join(selects)} FROM {d.relation(table)}"
    result = [int(x or 0) for x in _run(conn, d, table, sql).one()]
    rows, fatal = result[0], result[1 : 1 + len(checks)]
    found = dict(
        zip(quality, result[1 + len(checks) : 1 + len(checks) + len(quality)], strict=True)
    )

    if any(fatal):
        _raise_first_row_problem(conn, d, table, checks, fatal)
    if key and result[-1]:
        _raise_duplicate(conn, d, table, key, result[-1])
    if table != "patients":
        _check_references(conn, d, table)
    return {f"{table}_rows": rows, **found}


def _raise_first_row_problem(
    conn: sa.Connection, d: SourceDialect, table: str, checks: list[Check], fatal: list[int]
) -> None:
    failing = [(c, n) for c, n in zip(checks, fatal, strict=True) if n]
    flags = ", ".join(f"CASE WHEN {c.condition} THEN 1 ELSE 0 END" for c, _ in failing)
    where = " OR ".join(c.condition for c, _ in failing)
    sql = (
        f"SELECT _r, {flags} FROM (SELECT {d.row_number(table)} AS _r, * "
        f"FROM {d.relation(table)}) t WHERE {where} ORDER BY _r LIMIT 1"
    )
    with d.locating(conn, table):
        row = _run(conn, d, table, sql).one()
    check, n = next((cn for cn, flag in zip(failing, row[1:], strict=True) if flag), failing[0])
    raise ExtractError(
        f"{check.column} {check.problem}; {_plural(n)}"
        if check.problem.startswith("is ")
        else f"{check.problem}; {_plural(n)}",
        table=table,
        line=d.physical_line(table, int(row[0])),
        column=check.column,
    )


def _raise_duplicate(conn: sa.Connection, d: SourceDialect, table: str, key: str, n: int) -> None:
    k = d.value(table, key, TEXT)
    sql = (
        f"SELECT MIN(_r) FROM (SELECT _r, row_number() OVER (PARTITION BY _k ORDER BY _r) AS _n "
        f"FROM (SELECT {d.row_number(table)} AS _r, {k} AS _k FROM {d.relation(table)}) a "
        f"WHERE _k IS NOT NULL) b WHERE _n > 1"
    )
    with d.locating(conn, table):
        first = _run(conn, d, table, sql).scalar()
    raise ExtractError(
        f"{key} repeats an earlier row's {key}; {_plural(n)}",
        table=table,
        line=d.physical_line(table, int(first)),
        column=key,
    )


def _check_references(conn: sa.Connection, d: SourceDialect, table: str) -> None:
    mine = d.value(table, "patient_id", TEXT)
    theirs = d.value("patients", "patient_id", TEXT)
    known = f"SELECT {theirs} FROM {d.relation('patients')} WHERE {theirs} IS NOT NULL"
    unknown = f"{mine} IS NOT NULL AND {mine} NOT IN ({known})"
    n = int(
        _run(conn, d, table, f"SELECT COUNT(*) FROM {d.relation(table)} WHERE {unknown}").scalar()
        or 0
    )
    if not n:
        return
    sql = (
        f"SELECT MIN(_r) FROM (SELECT {d.row_number(table)} AS _r, * "
        f"FROM {d.relation(table)}) t WHERE {unknown}"
    )
    with d.locating(conn, table):
        first = _run(conn, d, table, sql).scalar()
    raise ExtractError(
        f"patient_id is not in patients; {_plural(n)}",
        table=table,
        line=d.physical_line(table, int(first)),
        column="patient_id",
    )


def _run(conn: sa.Connection, d: SourceDialect, table: str, sql: str) -> sa.CursorResult:
    try:
        return conn.exec_driver_sql(sql)
    except sa.exc.DBAPIError as exc:
        translated = d.translate(exc, table)
        if translated is None:
            # A database's message may quote the value it choked on: keep only its kind.
            translated = ExtractError(
                f"the database could not check this table ({type(exc.orig).__name__})", table=table
            )
        raise translated from None
