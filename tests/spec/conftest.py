"""Spec tests run on every engine and database: the reference engine (on SQLite), and
the SQL engine on SQLite, DuckDB and PostgreSQL (as ehrql parametrises over engines)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any

import pytest
import spec_extract as sx

from agent.engine import reference, sql
from fedpeer.definitions import IndicatorDefinition, find_standard
from fedpeer.measures import Breakdown, Count, Mean, Measure, Proportion, Rate

ENGINE_BACKENDS = [
    pytest.param(("reference", "sqlite"), id="reference-sqlite"),
    pytest.param(("sql", "sqlite"), id="sql-sqlite"),
    pytest.param(("sql", "duckdb"), id="sql-duckdb"),
    pytest.param(("sql", "postgres"), id="sql-postgres", marks=pytest.mark.postgres),
]
EVALUATE = {"reference": reference.evaluate, "sql": sql.evaluate}


class Spec:
    """Evaluates definitions on small tables with one engine on one database."""

    def __init__(self, engine: str, backend: str, request: pytest.FixtureRequest) -> None:
        self.engine, self.backend, self.request = engine, backend, request

    def measure(
        self,
        defn: IndicatorDefinition | str,
        as_of: str,
        tables: dict[str, list[dict[str, Any]]],
        **kw: Any,
    ) -> Any:
        """Evaluate one definition; return its measure (or every result with ``by_age_sex``)."""
        if isinstance(defn, str):
            defn = find_standard(defn)
        url = self.request.getfixturevalue("postgres_url") if self.backend == "postgres" else None
        with sx.database(self.backend, url) as conn:
            sx.insert(conn, tables)
            results = EVALUATE[self.engine]([defn], conn, date.fromisoformat(as_of), **kw)
            if self.engine == "sql":
                self.members = sql.membership([defn], conn, date.fromisoformat(as_of))[0]
                _sizes_agree(self.members, results[0].measure)
        return results if kw.get("by_age_sex") else results[0].measure

    def __call__(self, indicator: IndicatorDefinition | str, as_of: str, **tables: Any) -> Measure:
        """Evaluate on the whole extract; check ``den``/``num`` marks, unit by unit on SQLite."""
        full = sx.complete(tables)
        unit_table = "appointments" if any("den" in a for a in full["appointments"]) else "patients"
        marked = [r for r in full[unit_table] if "den" in r]
        result = self.measure(indicator, as_of, full)
        if marked:
            num = sum(r.get("num") == "y" for r in marked)
            den = sum(r.get("den") == "y" for r in marked)
            assert result == Proportion(num, den), f"expected {num}/{den}"
            if self.engine == "sql":  # the very units marked, not just as many of them
                prefix, key = (
                    ("appointment", "appointment_id")
                    if unit_table == "appointments"
                    else ("patient", "patient_id")
                )
                for part, mark in (("population", "den"), ("numerator", "num")):
                    expected_ids = {f"{prefix}:{r[key]}" for r in marked if r.get(mark) == "y"}
                    assert self.members.sets[part] == expected_ids, part
            if self.backend == "sqlite":
                for r in marked:
                    part = sx.only(
                        full,
                        r["patient_id"],
                        r.get("appointment_id") if unit_table == "appointments" else None,
                    )
                    one = self.measure(indicator, as_of, part)
                    expected = Proportion(int(r.get("num") == "y"), int(r.get("den") == "y"))
                    who = (
                        r.get("appointment_id") if unit_table == "appointments" else r["patient_id"]
                    )
                    assert one == expected, f"{who}: expected {expected}, got {one}"
        return result


def _sizes_agree(members: sql.Membership, measure: Measure) -> None:
    """Each membership set has exactly as many units as the engine counted."""
    sizes = {part: len(ids) for part, ids in members.sets.items()}
    if isinstance(measure, Proportion | Rate):
        assert (sizes["numerator"], sizes["population"]) == (
            measure.numerator,
            measure.denominator,
        )
    elif isinstance(measure, Count):
        assert sizes["population"] == measure.value
    elif isinstance(measure, Mean):
        assert sizes["population"] == measure.count
        if measure.count:
            assert members.clipped_sum is not None and measure.mean is not None
            assert members.clipped_sum / measure.count <= measure.mean + 1e-9
    else:
        assert isinstance(measure, Breakdown)
        assert sizes["population"] == measure.total
        for category, n in measure.cells:
            assert sizes[f"cell:{category}"] == n, category


@pytest.fixture(params=ENGINE_BACKENDS)
def spec(request: pytest.FixtureRequest) -> Callable[..., Measure]:
    """Evaluate a standard indicator on small tables with each engine and database."""
    engine, backend = request.param
    return Spec(engine, backend, request)
