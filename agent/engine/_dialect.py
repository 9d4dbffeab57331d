"""Small SQL constructs whose spelling differs between SQLite, PostgreSQL and DuckDB."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import FunctionElement


class date_of(FunctionElement):
    """The calendar date of a date-time (ISO text on SQLite, with a space or a 'T')."""

    type = sa.Date()
    inherit_cache = True
    name = "date_of"


@compiles(date_of)
def _date_of_default(element: date_of, compiler: Any, **kw: Any) -> str:
    return f"CAST({compiler.process(next(iter(element.clauses)), **kw)} AS DATE)"


@compiles(date_of, "sqlite")
def _date_of_sqlite(element: date_of, compiler: Any, **kw: Any) -> str:
    return f"date({compiler.process(next(iter(element.clauses)), **kw)})"


class days_between(FunctionElement):
    """``later`` minus ``earlier`` in whole days, both dates."""

    type = sa.Integer()
    inherit_cache = True
    name = "days_between"


def _pair(element: days_between, compiler: Any, **kw: Any) -> tuple[str, str]:
    later, earlier = list(element.clauses)
    return compiler.process(later, **kw), compiler.process(earlier, **kw)


@compiles(days_between)
def _days_default(element: days_between, compiler: Any, **kw: Any) -> str:
    later, earlier = _pair(element, compiler, **kw)
    return f"({later} - {earlier})"


@compiles(days_between, "sqlite")
def _days_sqlite(element: days_between, compiler: Any, **kw: Any) -> str:
    later, earlier = _pair(element, compiler, **kw)
    return f"CAST(round(julianday({later}) - julianday({earlier})) AS INTEGER)"


@compiles(days_between, "duckdb")
def _days_duckdb(element: days_between, compiler: Any, **kw: Any) -> str:
    later, earlier = _pair(element, compiler, **kw)
    return f"date_diff('day', {earlier}, {later})"


class day(FunctionElement):
    """A date column as a date: as it is, except on SQLite where ISO text may carry a time."""

    type = sa.Date()
    inherit_cache = True
    name = "day"


@compiles(day)
def _day_default(element: day, compiler: Any, **kw: Any) -> str:
    return compiler.process(next(iter(element.clauses)), **kw)


@compiles(day, "sqlite")
def _day_sqlite(element: day, compiler: Any, **kw: Any) -> str:
    return f"date({compiler.process(next(iter(element.clauses)), **kw)})"
