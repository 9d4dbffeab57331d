"""Engines: evaluate indicator definitions against an extract connection.

One narrow interface, two implementations that must agree exactly:

- ``reference``: fetches the rows and follows INDICATORS.md in plain Python; it defines
  the answer.
- ``sql``: compiles each definition to SQLAlchemy Core and aggregates in the database
  (DuckDB for files, SQLite, PostgreSQL).

Both are ``evaluate(definitions, connection, as_of, *, by_age_sex=False)`` returning
one ``IndicatorResult`` per definition, in order (followed, with ``by_age_sex``, by one
per sex and 5-year age band stratum for every patient-based non-breakdown definition).

``membership`` lists the units each definition counts (for the agent's differencing
check); it is compiled by the SQL engine from the same criteria, whichever engine counts.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Protocol

import sqlalchemy as sa

from agent.engine import reference, sql
from agent.engine.sql import Membership, membership
from fedpeer.definitions.model import IndicatorDefinition
from fedpeer.measures import IndicatorResult


class Engine(Protocol):
    """What every engine provides."""

    def __call__(
        self,
        definitions: Sequence[IndicatorDefinition],
        connection: sa.Connection,
        as_of: date,
        *,
        by_age_sex: bool = False,
    ) -> list[IndicatorResult]: ...


__all__ = ["ENGINES", "Engine", "Membership", "evaluate", "membership"]

ENGINES: dict[str, Engine] = {"reference": reference.evaluate, "sql": sql.evaluate}


def evaluate(
    definitions: Sequence[IndicatorDefinition],
    connection: sa.Connection,
    as_of: date,
    *,
    engine: str = "sql",
    by_age_sex: bool = False,
) -> list[IndicatorResult]:
    """Evaluate definitions with the named engine (``sql`` by default)."""
    return ENGINES[engine](definitions, connection, as_of, by_age_sex=by_age_sex)
