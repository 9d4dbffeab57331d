"""The ``synth`` command: write a federation of synthetic practice extracts."""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from pathlib import Path

import typer

from fedpeer.cli_support import as_of_option, folder_to_write


class Format(StrEnum):
    """File format of the written extracts."""

    csv = "csv"
    parquet = "parquet"


def synth(
    out: Path = typer.Option(
        ...,
        "--out",
        callback=folder_to_write,
        help="Directory to write DIR/<practice_id>/ and practices.csv into.",
    ),
    practices: int = typer.Option(..., "--practices", min=1, help="How many practices."),
    list_size: int = typer.Option(..., "--list-size", min=1, help="Typical registered list size."),
    seed: int = typer.Option(1, "--seed", help="The same seed writes the same files."),
    as_of: date = as_of_option(date(2026, 9, 30)),
    fmt: Format = typer.Option(Format.parquet, "--format", help="csv or parquet."),
) -> None:
    """Write synthetic practice extracts that differ the way real practices do."""
    from agent.synth import generate_practices  # NumPy and pyarrow: only when asked

    made = generate_practices(
        out, practices=practices, list_size=list_size, seed=seed, as_of=as_of, fmt=fmt.value
    )
    localities = sorted({t.locality for t in made})
    typer.echo(
        f"Wrote {len(made)} practices ({sum(t.list_size for t in made):,} registered patients, "
        f"localities {', '.join(localities)}) to {out}; manifest {out / 'practices.csv'}"
    )


def register(app: typer.Typer) -> None:
    """Add the ``synth`` command to a Typer app."""
    app.command("synth")(synth)
