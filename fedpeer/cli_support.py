"""What both command-line tools share: user errors as one line, bugs with a traceback."""

from __future__ import annotations

import sys
from datetime import date

import typer
from rich.console import Console

from fedpeer.errors import FedpeerError

err_console = Console(stderr=True, highlight=False, soft_wrap=True)


def run_app(app: typer.Typer) -> None:
    """Run a Typer app, printing a FedpeerError as ``Name: message`` and exiting 1."""
    try:
        app()
    except FedpeerError as exc:
        # A user error: no traceback, which could otherwise show local values.
        err_console.print(f"[bold red]{type(exc).__name__}[/]: {exc}", markup=True)
        sys.exit(1)


def parse_date(value: str, option: str) -> date:
    """Parse an ISO date given on the command line, naming the option when it is wrong."""
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(
            f"expected a date as YYYY-MM-DD, got {value!r}", param_hint=option
        ) from None
