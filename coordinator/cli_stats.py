"""``fedpeer-coordinator stats``: the round's statistics on any CSV, for analysts (STATS.md).

``stats funnel`` and ``stats peers`` call the same functions as a round's comparison
(``coordinator.stats.funnel.funnel_table``, ``coordinator.peers.nearest_peers``), so an
analyst can check a published number, or use the method on their own table. A bad CSV is
one line naming the file, the row and the column.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import numpy as np
import typer

from coordinator.peers import DEFAULT_PEER_COUNT, nearest_peers
from coordinator.stats import Distribution
from coordinator.stats.funnel import COLUMNS as FUNNEL_OUTPUT
from coordinator.stats.funnel import FunnelTable, funnel_table
from fedpeer.cli_support import file_to_write
from fedpeer.errors import FedpeerError

stats_app = typer.Typer(
    help="The published statistics on any CSV: funnel limits and most-alike peers.",
    no_args_is_help=True,
)

FUNNEL_INPUT = ("practice_id", "numerator", "denominator")
PEERS_INPUT = (
    "practice_id",
    "list_size",
    "share_u18",
    "share_18_24",
    "share_65plus",
    "mean_imd_decile",
)


class CsvError(FedpeerError):
    """A CSV the statistics cannot use: which file, row and column, and why."""


class TableKind(StrEnum):
    """What the numerator over the denominator is."""

    PROPORTION = "proportion"
    RATE = "rate"


@dataclass(frozen=True)
class Cell:
    """Where a value came from, for an error message."""

    path: Path
    row: int  # the data row, 1 = the first after the header
    column: str

    def fail(self, problem: str) -> CsvError:
        """An error naming this cell."""
        return CsvError(f"{self.path}, row {self.row}, column {self.column}: {problem}")


def read_rows(path: Path, columns: Sequence[str]) -> Iterator[tuple[int, dict[str, str]]]:
    """The data rows of a CSV with at least ``columns``, numbered from 1."""
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        missing = [c for c in columns if c not in header]
        if missing:
            raise CsvError(
                f"{path}: missing column {', '.join(missing)} (the header is: {', '.join(header)})"
            )
        for row_number, row in enumerate(reader, start=1):
            yield row_number, {c: (row.get(c) or "").strip() for c in columns}


def number(text: str, cell: Cell, *, whole: bool = False) -> float:
    """A cell as a number that is finite, not negative, and whole when asked; NaN if empty."""
    if text == "":
        return math.nan
    try:
        value = float(text)
    except ValueError:
        raise cell.fail(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise cell.fail(f"{text!r} is not a number")
    if value < 0:
        raise cell.fail(f"{text} is negative")
    if whole and not value.is_integer():
        raise cell.fail(f"{text} is not a whole number of patients")
    return value


def _ids(path: Path, rows: list[tuple[int, dict[str, str]]]) -> list[str]:
    seen: set[str] = set()
    for row_number, row in rows:
        pid = row["practice_id"]
        cell = Cell(path, row_number, "practice_id")
        if not pid:
            raise cell.fail("empty practice id")
        if pid in seen:
            raise cell.fail(f"practice {pid} appears twice")
        seen.add(pid)
    return [row["practice_id"] for _, row in rows]


def read_counts(path: Path, kind: TableKind) -> tuple[list[str], np.ndarray, np.ndarray]:
    """practice_id, numerator, denominator of a funnel CSV, checked cell by cell."""
    rows = list(read_rows(path, FUNNEL_INPUT))
    ids = _ids(path, rows)
    whole = kind is TableKind.PROPORTION  # a binomial counts whole patients
    num, den = np.full(len(rows), np.nan), np.full(len(rows), np.nan)
    for i, (row_number, row) in enumerate(rows):
        num[i] = number(row["numerator"], Cell(path, row_number, "numerator"), whole=whole)
        den[i] = number(row["denominator"], Cell(path, row_number, "denominator"), whole=whole)
        if whole and num[i] > den[i]:
            raise Cell(path, row_number, "numerator").fail(
                f"{row['numerator']} is above the denominator {row['denominator']}: "
                "not a proportion"
            )
    return ids, num, den


def _text(value: object) -> str:
    """A cell at full precision: repr round-trips a float exactly; empty for no value."""
    if value is None:
        return ""
    if isinstance(value, float | np.floating):
        return "" if math.isnan(value) else repr(float(value))
    return str(value)


def funnel_rows(
    ids: Sequence[str], num: np.ndarray, den: np.ndarray, table: FunnelTable
) -> Iterator[list[str]]:
    """The output rows: counts as given, every computed cell empty for an excluded practice."""
    for i, pid in enumerate(ids):
        counts = [pid, _text(num[i]), _text(den[i])]
        if not table.valued[i]:
            yield counts + [""] * len(FUNNEL_OUTPUT)
            continue
        cells = []
        for name in FUNNEL_OUTPUT:
            column = getattr(table, name)
            value = column[i] if isinstance(column, np.ndarray) else column
            whole = name == "decile" and not math.isnan(value)
            cells.append(str(int(value)) if whole else _text(value))
        yield counts + cells


def _write(path: Path, header: Sequence[str], rows: Iterator[list[str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


@stats_app.command("funnel")
def funnel_command(
    csv_in: Path = typer.Argument(..., help="CSV of practice_id,numerator,denominator."),
    kind: TableKind = typer.Option(..., "--kind", help="proportion or rate (per patient)."),
    out: Path = typer.Option(..., "--out", callback=file_to_write, help="CSV to write."),
    no_overdispersion: bool = typer.Option(
        False,
        "--no-overdispersion",
        help="Publish the exact limits with unadjusted z and p (phi and tau2 still shown).",
    ),
) -> None:
    """Funnel limits, z, p, flags, intervals and percentiles of every practice (S1-S16)."""
    ids, num, den = read_counts(csv_in, kind)
    distribution = Distribution.BINOMIAL if kind is TableKind.PROPORTION else Distribution.POISSON
    table = funnel_table(distribution, num, den, overdispersion=not no_overdispersion)
    _write(out, [*FUNNEL_INPUT, *FUNNEL_OUTPUT], funnel_rows(ids, num, den, table))


def read_profiles(path: Path) -> tuple[list[str], np.ndarray]:
    """Practices with every feature of S18 (log list size first); incomplete rows left out."""
    rows = list(read_rows(path, PEERS_INPUT))
    _ids(path, rows)
    ids, features = [], []
    for row_number, row in rows:
        values = [number(row[c], Cell(path, row_number, c)) for c in PEERS_INPUT[1:]]
        if any(math.isnan(v) for v in values):
            continue
        if values[0] == 0:
            raise Cell(path, row_number, "list_size").fail("a list size must be above 0")
        ids.append(row["practice_id"])
        features.append([math.log(values[0]), *values[1:]])
    return ids, np.array(features, dtype=float).reshape(len(ids), len(PEERS_INPUT) - 1)


@stats_app.command("peers")
def peers_command(
    csv_in: Path = typer.Argument(..., help="CSV of practice profiles (see STATS.md)."),
    k: int = typer.Option(DEFAULT_PEER_COUNT, "--k", min=1, help="Peers per practice."),
    out: Path = typer.Option(..., "--out", callback=file_to_write, help="CSV to write."),
) -> None:
    """Every practice's k most alike others, nearest first (S18)."""
    ids, features = read_profiles(csv_in)
    groups = nearest_peers(ids, features, k)
    rows = (
        [pid, str(rank), peer, _text(distance)]
        for pid in ids
        for rank, (peer, distance) in enumerate(
            zip(groups[pid].peer_ids, groups[pid].distances, strict=True), start=1
        )
    )
    _write(out, ["practice_id", "rank", "peer_id", "distance"], rows)
