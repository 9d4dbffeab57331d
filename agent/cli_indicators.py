"""``fedpeer-agent explain ID`` and ``fedpeer-agent definitions list``: what the agent computes."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import typer

from fedpeer.cli_support import as_of_option
from fedpeer.dates import long_date
from fedpeer.definitions import (
    IndicatorDefinition,
    content_hash,
    explain,
    find_standard,
    load_definition,
    load_profile,
    load_standard_set,
)
from fedpeer.errors import DefinitionError


def _fail(exc: DefinitionError) -> None:
    typer.echo(f"DefinitionError: {exc}", err=True)
    raise typer.Exit(2)


def register(app: typer.Typer) -> None:
    """Add ``explain`` and ``definitions list`` to the agent's command line."""
    definitions = typer.Typer(
        help="The indicator definitions this agent knows.", no_args_is_help=True
    )

    @app.command("explain")
    def explain_command(
        indicator: str = typer.Argument(
            ..., help="An indicator id, or a path to a .toml definition."
        ),
        as_of: date | None = as_of_option(None, "Reference date, YYYY-MM-DD (default: today)."),
    ) -> None:
        """Say in plain words what an indicator counts on a reference date."""
        day = as_of or date.today()
        try:
            defn: IndicatorDefinition
            if indicator.endswith(".toml"):
                defn = load_definition(Path(indicator))
            else:
                defn = find_standard(indicator)
        except DefinitionError as exc:
            _fail(exc)
            return
        typer.echo(explain(defn, day))
        typer.echo(f"Content hash: {content_hash(defn)}")

    @definitions.command("list")
    def list_command(
        as_of: date | None = as_of_option(
            None, "Reference date for the notes, YYYY-MM-DD (default: today)."
        ),
    ) -> None:
        """List the standard indicators and the practice profile, with versions and hashes."""
        day = as_of or date.today()
        try:
            standard, profile = load_standard_set(), load_profile()
        except DefinitionError as exc:
            _fail(exc)
            return
        typer.echo(f"Standard indicators (reference date {long_date(day)}):")
        for defn in [*standard, *profile]:
            if defn is profile[0]:
                typer.echo("Practice profile:")
            typer.echo(
                f"  {defn.id:<28} v{defn.version}  {defn.kind.value:<10} "
                f"{content_hash(defn)[:12]}  {defn.title}"
            )

    app.add_typer(definitions, name="definitions")
