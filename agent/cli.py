"""``fedpeer-agent``: the practice side, from computing indicators to sending them."""

from __future__ import annotations

import importlib
from datetime import date
from enum import StrEnum
from pathlib import Path

import typer

from fedpeer.cli_support import (
    add_common_options,
    as_of_option,
    file_to_write,
    make_console,
    run_app,
)
from fedpeer.release import write_rows_file

app = typer.Typer(
    name="fedpeer-agent",
    help=(
        "Compute peer-comparison indicators inside the practice; "
        "send only disclosure-controlled aggregates."
    ),
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
)
add_common_options(app)
console = make_console()

# Each area of the agent adds its own commands; see the modules' register() functions.
_COMMAND_MODULES = (
    "agent.cli_network",
    "agent.cli_synth",
    "agent.cli_indicators",
    "agent.cli_airlock",
    "agent.cli_studies",
    "agent.cli_setup",
)


class Engine(StrEnum):
    """The engines of ``agent.engine``: the same answers, computed in different places."""

    sql = "sql"
    reference = "reference"


@app.command()
def compute(
    extract: str = typer.Option(..., help="CSV or Parquet directory, or a SQLAlchemy URL."),
    as_of: date = as_of_option(),
    out: Path = typer.Option(
        ..., callback=file_to_write, help="Where to write the CSV of results."
    ),
    raw: bool = typer.Option(
        False, "--raw", help="Write unsuppressed local values (these never leave the machine)."
    ),
    engine: Engine = typer.Option(
        Engine.sql, help="Engine: sql (fast, in the database) or reference."
    ),
) -> None:
    """Compute the standard indicators; write what would leave, or with --raw the raw values."""
    from agent.pipeline import compute_rows

    rows, quality = compute_rows(extract, as_of, raw=raw, engine=engine.value)
    write_rows_file(rows, out)
    kind = "raw local values (never sent)" if raw else "released values"
    console.print(f"Wrote {len(rows)} rows of {kind} to {out}")
    if quality is not None:
        console.print(quality.describe())


def _register_commands() -> None:
    for name in _COMMAND_MODULES:
        importlib.import_module(name).register(app)


def main() -> None:
    """Entry point of ``fedpeer-agent``."""
    _register_commands()
    run_app(app)


if __name__ == "__main__":
    main()
