"""The row form of results: what ``fedpeer-agent compute`` writes and what a submission carries.

One row per indicator, one per category for a breakdown, and the practice profile rows
named as in INDICATORS.md (``profile.list_size``, ``profile.age_sex.female.40-44``,
``profile.imd.3``). The same renderer serves raw results (``--raw``, never sent) and
released ones; a released value that disclosure control withheld is ``None`` and the
row is marked suppressed.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from fedpeer.measures import Breakdown, Count, IndicatorResult, Kind, Mean, Proportion, Rate
from fedpeer.private_files import write_private

if TYPE_CHECKING:  # the definitions package imports measures, not rows: no cycle at run time
    from fedpeer.definitions.model import IndicatorDefinition

CSV_COLUMNS = (
    "indicator",
    "category",
    "numerator",
    "denominator",
    "count",
    "mean",
    "value",
    "suppressed",
)
PROFILE_PREFIX = "profile."
TOTAL_CATEGORY = "total"


@dataclass(frozen=True)
class ResultRow:
    """One row of a result file or submission."""

    indicator: str
    category: str = ""
    numerator: int | None = None
    denominator: int | None = None
    count: int | None = None
    mean: float | None = None
    value: float | None = None
    suppressed: bool = False


def _cell_key(name: str, category: str, stratum: str) -> tuple[str, str]:
    """Where a breakdown's cell stands: the profile names it in the indicator column."""
    if name.startswith(PROFILE_PREFIX):
        return f"{name}.{category}", stratum
    return name, category


def row_keys(defn: IndicatorDefinition) -> tuple[tuple[str, str], ...]:
    """The (indicator, category) of every row a definition's whole-practice result renders to."""
    if defn.kind is not Kind.BREAKDOWN:
        return ((defn.id, ""),)
    assert defn.breakdown is not None
    cells = tuple(_cell_key(defn.id, cat, "") for cat in defn.breakdown.categories)
    if defn.id.startswith(PROFILE_PREFIX):
        return cells
    return (*cells, (defn.id, TOTAL_CATEGORY))


def _ratio(numerator: int | None, denominator: int | None, scale: int = 1) -> float | None:
    if numerator is None or denominator is None or denominator == 0:
        return None
    return scale * numerator / denominator


def result_rows(result: IndicatorResult) -> Iterator[ResultRow]:
    """Render one result as rows; values are computed from the counts the result holds."""
    m = result.measure
    name, category = result.indicator, result.stratum
    if isinstance(m, Proportion):
        yield ResultRow(
            name,
            category,
            numerator=m.numerator,
            denominator=m.denominator,
            value=_ratio(m.numerator, m.denominator),
            suppressed=m.numerator is None or m.denominator is None,
        )
    elif isinstance(m, Rate):
        yield ResultRow(
            name,
            category,
            numerator=m.numerator,
            denominator=m.denominator,
            value=_ratio(m.numerator, m.denominator, m.per),
            suppressed=m.numerator is None or m.denominator is None,
        )
    elif isinstance(m, Mean):
        yield ResultRow(
            name,
            category,
            count=m.count,
            mean=m.mean,
            value=m.mean,
            suppressed=m.count is None or m.mean is None,
        )
    elif isinstance(m, Count):
        yield ResultRow(
            name,
            category,
            count=m.value,
            value=None if m.value is None else float(m.value),
            suppressed=m.value is None,
        )
    elif isinstance(m, Breakdown):
        total = m.total
        if total is None and all(c is not None for _, c in m.cells):
            total = sum(c for _, c in m.cells if c is not None)
        profile = name.startswith(PROFILE_PREFIX)
        for cat, cnt in m.cells:
            yield ResultRow(
                *_cell_key(name, cat, category),
                count=cnt,
                value=_ratio(cnt, total),
                suppressed=cnt is None,
            )
        if not profile:
            yield ResultRow(
                name,
                TOTAL_CATEGORY,
                count=total,
                value=None,
                suppressed=total is None,
            )
    else:  # pragma: no cover - the Measure union is closed
        raise TypeError(f"unknown measure {type(m).__name__}")


def to_rows(results: Iterable[IndicatorResult]) -> list[ResultRow]:
    """Render results as rows in a stable order: the given order of results."""
    return [row for result in results for row in result_rows(result)]


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(round(value, 6))
    return str(value)


def write_rows(rows: Iterable[ResultRow], out: TextIO) -> None:
    """Write rows as CSV with the standard columns."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        writer.writerow([_cell(getattr(row, name)) for name in CSV_COLUMNS])


def rows_to_csv(rows: Iterable[ResultRow]) -> str:
    """The CSV text of rows."""
    buf = io.StringIO()
    write_rows(rows, buf)
    return buf.getvalue()


def write_rows_file(rows: Iterable[ResultRow], path: Path) -> None:
    """Write rows to a CSV file, replacing it atomically; on failure nothing is left behind."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        write_private(tmp, rows_to_csv(rows))  # released or raw values: the owner's only
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # it may hold released values
        raise


def read_rows(text: TextIO) -> list[ResultRow]:
    """Parse rows written by ``write_rows``."""
    reader = csv.DictReader(text)
    missing = set(CSV_COLUMNS) - set(reader.fieldnames or ())
    if missing:
        raise ValueError(f"result file lacks columns: {', '.join(sorted(missing))}")
    types = {f.name: f.type for f in fields(ResultRow)}
    rows = []
    for record in reader:
        values: dict[str, object] = {}
        for name in CSV_COLUMNS:
            raw = record[name]
            kind = str(types[name])
            if name == "suppressed":
                values[name] = raw == "true"
            elif raw == "":
                values[name] = "" if kind == "str" else None
            elif "int" in kind:
                values[name] = int(raw)
            elif "float" in kind:
                values[name] = float(raw)
            else:
                values[name] = raw
        rows.append(ResultRow(**values))  # type: ignore[arg-type]
    return rows
