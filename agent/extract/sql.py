"""Extract tables that live in the practice's own SQL database (SQLite or PostgreSQL).

The tables are used where they are: validation runs as queries in that database and
the engines query the same tables, so no row is copied out. The four tables must be
found by their plain names (on PostgreSQL, through the connection's search_path).

What the column types must be, so that the engines' queries see the declared types:

- SQLite: identifiers and categories as TEXT; dates as ISO text ``YYYY-MM-DD`` (it
  compares correctly as text); ``starts_at`` as ISO text ``YYYY-MM-DD HH:MM[:SS]``;
  ``numeric_value`` and ``duration_minutes`` stored as numbers (a column declared REAL
  or NUMERIC converts numeric text on insert; text that is not a number is refused);
  ``imd_decile`` stored as an integer.
- PostgreSQL: identifiers and categories TEXT/VARCHAR (integer identifiers are accepted
  but lose leading zeros); dates DATE; ``starts_at`` TIMESTAMP WITHOUT TIME ZONE;
  ``numeric_value`` and ``duration_minutes`` any numeric type; ``imd_decile`` an integer
  type. These are checked from the catalogue before any data is read.
"""

from __future__ import annotations

import sqlalchemy as sa

from agent.extract._dialects import (
    DATE,
    INTEGER,
    NUMBER,
    TEXT,
    TIMESTAMP,
    PostgresDialect,
    SourceDialect,
    SQLiteDialect,
    kind_of,
)
from agent.extract.schema import TABLES
from fedpeer.errors import ExtractError

_DIALECTS: dict[str, type[SourceDialect]] = {"sqlite": SQLiteDialect, "postgresql": PostgresDialect}


def open_database(url: str) -> tuple[sa.Engine, SourceDialect]:
    """An engine on the practice database, after checking its tables and column types."""
    try:
        engine = sa.create_engine(url)
    except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError):
        raise ExtractError("the database URL is not a valid SQLAlchemy URL") from None
    except ImportError as exc:
        # The agent alone (`pip install fedpeer`) carries no PostgreSQL driver.
        raise ExtractError(
            f"reading this extract needs the database driver {exc.name}, which is not "
            "installed: for PostgreSQL, pip install 'fedpeer[postgres]'"
        ) from None
    dialect_cls = _DIALECTS.get(engine.dialect.name)
    if dialect_cls is None:
        engine.dispose()
        raise ExtractError(f"extracts in {engine.dialect.name} databases are not supported")
    try:
        with engine.connect() as conn:
            views = _check_catalogue(conn, engine.dialect.name)
    except sa.exc.OperationalError:
        engine.dispose()
        raise ExtractError(
            f"cannot connect to the extract's {engine.dialect.name} database: is it running, "
            "and are the URL's host, port, database name and credentials right?"
        ) from None
    except BaseException:
        engine.dispose()
        raise
    return engine, dialect_cls(views)


def _check_catalogue(conn: sa.Connection, dialect_name: str) -> frozenset[str]:
    """Check tables, columns and (PostgreSQL) types; return which tables are views."""
    inspector = sa.inspect(conn)
    views = set(inspector.get_view_names())
    present = set(inspector.get_table_names()) | views
    for table in TABLES.values():
        if table.name not in present:
            raise ExtractError("the table is missing from the database", table=table.name)
        found = {c["name"]: c["type"] for c in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name not in found:
                raise ExtractError(
                    "required column is missing", table=table.name, column=column.name
                )
            if dialect_name == "postgresql":
                _check_type(table.name, column.name, kind_of(column), found[column.name])
    return frozenset(views & set(TABLES))


def _check_type(table: str, column: str, kind: str, found: sa.types.TypeEngine) -> None:
    ok = {
        TEXT: isinstance(found, sa.String | sa.Integer),
        DATE: isinstance(found, sa.Date) and not isinstance(found, sa.DateTime),
        TIMESTAMP: isinstance(found, sa.DateTime) and not getattr(found, "timezone", False),
        NUMBER: isinstance(found, sa.Numeric | sa.Float | sa.Integer),
        INTEGER: isinstance(found, sa.Integer),
    }[kind]
    if not ok:
        wanted = {
            TEXT: "TEXT",
            DATE: "DATE",
            TIMESTAMP: "TIMESTAMP WITHOUT TIME ZONE",
            NUMBER: "a numeric type",
            INTEGER: "an integer type",
        }[kind]
        raise ExtractError(
            f"column has SQL type {found}; it must be {wanted}", table=table, column=column
        )
