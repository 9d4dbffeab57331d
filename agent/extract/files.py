"""CSV and Parquet directories, presented through DuckDB views.

Nothing is loaded into Python: each table is a raw view over ``read_csv`` or
``read_parquet`` (only the extract's columns, the empty string as NULL), and a typed
view of the same name as the table in schema.py on top of it. DuckDB streams the
files for every query and spills to a private temporary directory beyond its memory
limit.

CSV files are read with every column as text, so ``007`` stays ``007`` and ``NA`` is an
identifier; only the empty field is NULL. Columns are matched by the header line's
names, in any order; extra columns are ignored.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import duckdb
import sqlalchemy as sa
from duckdb_engine import ConnectionWrapper

from agent.extract._csvlines import read_header
from agent.extract._dialects import (
    DATE,
    INTEGER,
    NUMBER,
    TEXT,
    TIMESTAMP,
    DuckDBFileDialect,
    kind_of,
    q,
    sql_string,
)
from agent.extract.schema import TABLES
from fedpeer.errors import ExtractError

FORMATS = ("csv", "parquet")
# What a Parquet column's type may be, for each kind of extract column.
# ("NULL" is the type of a column that is empty throughout.)
_ACCEPTED = {
    TEXT: {"VARCHAR", "INTEGER", "NULL"},
    DATE: {"VARCHAR", "DATE", "TIMESTAMP", "NULL"},
    TIMESTAMP: {"VARCHAR", "DATE", "TIMESTAMP", "NULL"},
    NUMBER: {"VARCHAR", "INTEGER", "DOUBLE", "NULL"},
    INTEGER: {"VARCHAR", "INTEGER", "DOUBLE", "NULL"},
}
_INTEGER_TYPES = {
    "TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT",
    "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT", "UHUGEINT",
}  # fmt: skip


def detect_format(directory: Path) -> str:
    """``csv`` or ``parquet``, from which patients file the directory holds."""
    for fmt in ("parquet", "csv"):
        if (directory / f"patients.{fmt}").is_file():
            return fmt
    raise ExtractError(
        "the directory has neither patients.csv nor patients.parquet", table="patients"
    )


def open_files(
    directory: Path,
    fmt: str,
    *,
    memory_limit: str = "1GB",
    threads: int | None = None,
) -> tuple[sa.Engine, DuckDBFileDialect, Callable[[], None]]:
    """A DuckDB engine whose database has the four typed views, its dialect, and a closer."""
    tmp = tempfile.mkdtemp(prefix="fedpeer-duckdb-")
    config: dict[str, str | int] = {"memory_limit": memory_limit, "temp_directory": tmp}
    if threads:
        config["threads"] = threads
    # A database file in the private directory (it holds only views unless materialised),
    # so that materialised tables may exceed the memory limit.
    db = duckdb.connect(str(Path(tmp) / "extract.duckdb"), config=config)
    try:
        paths = {t: directory / f"{t}.{fmt}" for t in TABLES}
        for table, path in paths.items():
            if not path.is_file():
                raise ExtractError(f"the file {path.name} is missing", table=table)
        raw_types: dict[str, dict[str, str]] = {}
        for table, path in paths.items():
            if fmt == "csv":
                select, raw_types[table] = _csv_raw(table, path)
            else:
                select, raw_types[table] = _parquet_raw(db, table, path)
            db.execute(f"CREATE VIEW {q('_raw_' + table)} AS {select}")
        dialect = DuckDBFileDialect(raw_types, csv_paths=paths if fmt == "csv" else None)
        for table in TABLES:
            db.execute(f"CREATE VIEW {q(table)} AS {typed_select(dialect, table)}")
    except BaseException:
        db.close()
        shutil.rmtree(tmp, ignore_errors=True)
        raise

    # Cursors of one DuckDB connection share its database (and so the views), one per
    # pooled SQLAlchemy connection, so the engine may be used from several threads.
    engine = sa.create_engine(
        "duckdb:///:memory:",
        creator=lambda: ConnectionWrapper(db.cursor()),
        poolclass=sa.pool.QueuePool,
    )

    def close() -> None:
        engine.dispose()
        db.close()
        shutil.rmtree(tmp, ignore_errors=True)

    return engine, dialect, close


def materialize(conn: sa.Connection) -> None:
    """Replace the typed views by DuckDB tables holding the same rows.

    One more read of every file now, in exchange for much faster repeated queries: worth
    it for large CSV extracts, whose views re-parse the text on every query.
    """
    for table in TABLES:
        conn.exec_driver_sql(f"CREATE TABLE {q('_m_' + table)} AS SELECT * FROM {q(table)}")
        conn.exec_driver_sql(f"DROP VIEW {q(table)}")
        conn.exec_driver_sql(f"ALTER TABLE {q('_m_' + table)} RENAME TO {q(table)}")
    conn.commit()


def typed_select(dialect: DuckDBFileDialect, table: str) -> str:
    """The SELECT of a typed view: every schema column, as its declared type."""
    columns = ", ".join(
        f"{dialect.value(table, c.name, kind_of(c))} AS {q(c.name)}" for c in TABLES[table].columns
    )
    return f"SELECT {columns} FROM {dialect.relation(table)}"


def _csv_raw(table: str, path: Path) -> tuple[str, dict[str, str]]:
    header = read_header(path)
    if not header:
        raise ExtractError("the file is empty: a header line is needed", table=table, line=1)
    for column in TABLES[table].columns:
        found = header.count(column.name)
        if found == 0:
            raise ExtractError(
                "required column is missing from the header",
                table=table,
                line=1,
                column=column.name,
            )
        if found > 1:
            raise ExtractError(
                "column appears more than once in the header",
                table=table,
                line=1,
                column=column.name,
            )
    # Positional names, so that odd or repeated names among extra columns do no harm.
    columns = "{" + ", ".join(f"'c{i}': 'VARCHAR'" for i in range(len(header))) + "}"
    reader = (
        f"read_csv({sql_string(str(path))}, header = true, auto_detect = false, delim = ',', "
        f"quote = '\"', escape = '\"', nullstr = '', encoding = 'utf-8', columns = {columns})"
    )
    select = ", ".join(
        f"{q('c' + str(header.index(c.name)))} AS {q(c.name)}" for c in TABLES[table].columns
    )
    return f"SELECT {select} FROM {reader}", {c.name: "VARCHAR" for c in TABLES[table].columns}


def _parquet_raw(
    db: duckdb.DuckDBPyConnection, table: str, path: Path
) -> tuple[str, dict[str, str]]:
    reader = f"read_parquet({sql_string(str(path))}, file_row_number = true)"
    try:
        described = db.execute(
            f"DESCRIBE SELECT * FROM read_parquet({sql_string(str(path))})"
        ).fetchall()
    except duckdb.Error:
        raise ExtractError("the file is not a readable Parquet file", table=table) from None
    types = {name: _family(str(type_)) for name, type_, *_ in described}
    raw: dict[str, str] = {}
    select = ['"file_row_number"']
    for column in TABLES[table].columns:
        name, kind = column.name, kind_of(column)
        if name not in types:
            raise ExtractError("required column is missing", table=table, column=name)
        family = types[name]
        if family not in _ACCEPTED[kind]:
            raise ExtractError(
                f"column has Parquet type {family}, which cannot hold a {kind}",
                table=table,
                column=name,
            )
        raw[name] = family
        select.append(f"NULLIF({q(name)}, '') AS {q(name)}" if family == "VARCHAR" else q(name))
    return f"SELECT {', '.join(select)} FROM {reader}", raw


def _family(duckdb_type: str) -> str:
    """A DuckDB type name reduced to the families the views handle."""
    t = duckdb_type.upper().strip('"')
    if t in _INTEGER_TYPES:
        return "INTEGER"
    if t in ("FLOAT", "DOUBLE", "REAL") or t.startswith("DECIMAL"):
        return "DOUBLE"
    if t in ("TIMESTAMP", "TIMESTAMP_S", "TIMESTAMP_MS", "TIMESTAMP_NS"):
        return "TIMESTAMP"
    if t in ("VARCHAR", "DATE", "NULL"):
        return t
    return t  # anything else (e.g. TIMESTAMP WITH TIME ZONE, BLOB) is refused by _ACCEPTED
