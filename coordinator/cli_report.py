"""``fedpeer-coordinator report ROUND --out DIR``: every report of a closed round.

It reads the store directly (as ``backup`` does), so it runs on the coordinator machine
whether or not the coordinator is serving. A round closed before comparisons were stored
at closing has its comparison stored first; trends then read the stored rounds.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import typer

from coordinator.ca import CoordinatorHome
from coordinator.comparison_store import closed_round, comparison_for, trends
from coordinator.config import load_config
from coordinator.reports import write_round_reports
from coordinator.store import Store
from fedpeer.cli_support import existing_home, folder_to_write, make_console
from fedpeer.errors import FedpeerError

console = make_console()


class ReportError(FedpeerError):
    """The reports cannot be written where asked."""


def writable_folder(out: Path) -> Path:
    """Make ``out`` and prove a file can be written in it, before any work."""
    folder_to_write(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as exc:
        raise ReportError(f"cannot write reports into {out}: {exc.strerror}") from None
    return out


def _names(values: list[str]) -> set[str]:
    return {name.strip() for value in values for name in value.split(",") if name.strip()}


def report_command(
    round_id: str = typer.Argument(..., help="A closed round's id."),
    out: Path = typer.Option(..., "--out", help="The folder to write the reports into."),
    named_localities: list[str] = typer.Option(
        [],
        "--named-localities",
        help="Localities that agreed their practices are named in their slides "
        "(comma-separated or repeated); others are lettered.",
    ),
    home: Path | None = typer.Option(
        None, "--home", help="The coordinator's home directory (default: from settings)."
    ),
    db: str | None = typer.Option(
        None, "--db", help="SQLAlchemy URL of the store (default: SQLite in home)."
    ),
    config_file: Path | None = typer.Option(
        None,
        "--config",
        envvar="FEDPEER_COORDINATOR_CONFIG",
        help="A TOML settings file (see docs/operations.md).",
    ),
    pdf: bool = typer.Option(True, "--pdf/--no-pdf", help="Print a PDF beside each report."),
    chromium: Path | None = typer.Option(
        None, "--chromium", help="The Chromium to print with (default: /usr/bin/chromium)."
    ),
) -> None:
    """Write a closed round's reports: per practice, per locality (slides), for commissioners."""
    overrides = {k: v for k, v in (("home", home), ("db_url", db)) if v is not None}
    config = load_config(config_file, overrides=overrides)
    coord_home = CoordinatorHome(
        existing_home(config.home, "coordinator", "fedpeer-coordinator init")
    )
    store = Store(config.db_url or coord_home.database)
    try:
        closed_round(store, round_id)
        writable_folder(out)
        round_, comparison = comparison_for(store, round_id)
        series = trends(store, round_id)
    finally:
        store.close()
    longest = max((len(t.rounds) for t in series.values()), default=0)
    console.print(
        f"Round {round_id} as of {round_.as_of.isoformat()}: {len(comparison.practices)} "
        f"practices, {len(comparison.indicators)} indicators, trends over up to {longest} "
        f"round{'' if longest == 1 else 's'}"
    )
    written = write_round_reports(
        comparison,
        out,
        trends=series,
        named_localities=_names(named_localities),
        pdf=pdf,
        chromium=chromium,
    )
    console.print(
        f"Wrote {len(written.practices)} practice reports, {len(written.localities)} locality "
        f"slide packs and the commissioners' summary into {out}"
    )
    if written.pdfs:
        console.print(f"Printed {len(written.pdfs)} PDFs beside them")
    elif written.pdf_problem:
        console.print(f"[bold]No PDFs[/]: {written.pdf_problem} (the HTML reports are written)")
