"""What both command-line tools share: every user mistake as one line, bugs with a traceback.

A mistake on the command line (an unknown option, a value that is not a date) is
``Error: <message>`` and exit code 2; a ``FedpeerError``, or a file the machine will not
open, is ``Name: message`` and exit code 1. Both tools take ``--version`` and
``--verbose``, print through ``make_console`` and check their homes with
``existing_home``, which never creates one.
"""

from __future__ import annotations

import importlib.metadata
import logging
import sys
from datetime import date
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape

from fedpeer.errors import FedpeerError, HomeNotFound

try:  # Typer 0.2x carries its own copy of Click
    from typer._click.exceptions import NoArgsIsHelpError, UsageError
except ImportError:  # pragma: no cover - older Typer runs on Click itself
    from click.exceptions import NoArgsIsHelpError, UsageError

# The libraries underneath, whose INFO logs only --verbose shows (their warnings always).
FRAMEWORK_LOGGERS = ("alembic", "sqlalchemy", "grpc")
LOG_FORMAT = "%(asctime)s %(name)s %(message)s"
# Into a pipe or a file, a table takes the width it needs, up to this.
PIPED_WIDTH = 1000


def make_console(*, stderr: bool = False) -> Console:
    """A console for a command's output, the same in both tools.

    In a terminal, text wraps at its width; into a pipe or a file nothing is wrapped or
    cut, so ``grep`` and ``cut`` see whole lines. Give a table's id columns
    ``overflow="fold"``, so that a narrow terminal folds an id rather than cuts it.
    """
    stream = sys.stderr if stderr else sys.stdout
    if stream.isatty():
        return Console(stderr=stderr, highlight=False)
    return Console(stderr=stderr, highlight=False, soft_wrap=True, width=PIPED_WIDTH)


err_console = make_console(stderr=True)


def _fail(message: str, code: int) -> None:
    err_console.print(message, markup=True, soft_wrap=True)
    sys.exit(code)


def run_app(app: typer.Typer) -> None:
    """Run a Typer app; print a user's mistake as one line, never with a traceback.

    Anything else is a bug and keeps its traceback.
    """
    try:
        code = app(standalone_mode=False)
    except NoArgsIsHelpError:
        sys.exit(2)  # the help is already printed
    except UsageError as exc:
        _fail(f"[bold red]Error[/]: {escape(_usage_problem(exc))}", exc.exit_code)
    except FedpeerError as exc:
        # A user error: no traceback, which could otherwise show local values.
        _fail(f"[bold red]{type(exc).__name__}[/]: {escape(str(exc))}", 1)
    except OSError as exc:
        if exc.filename is None:
            raise
        # A file the machine will not open or write (permissions, a missing file): the
        # path and the reason are what a person needs.
        _fail(f"[bold red]{type(exc).__name__}[/]: {escape(_os_problem(exc))}", 1)
    except typer.Abort:
        _fail("Aborted.", 1)
    sys.exit(code if isinstance(code, int) else 0)


def _usage_problem(exc: UsageError) -> str:
    # Typer passes on pydantic's "Value error, " before a choice it does not know.
    message = exc.format_message().replace("Value error, ", "").rstrip(".")
    if exc.ctx is None:
        return message
    return f"{message} (see {exc.ctx.command_path} --help)"


def _os_problem(exc: OSError) -> str:
    target = f" -> {exc.filename2}" if exc.filename2 is not None else ""
    return f"{exc.filename}{target}: {exc.strerror}"


# -- options both tools share ---------------------------------------------------------------


def package_version() -> str:
    """The installed fedpeer's version, or ``unknown`` when it runs from a plain checkout."""
    try:
        return importlib.metadata.version("fedpeer")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def configure_logging(verbose: bool) -> None:
    """Keep the frameworks' INFO logs (Alembic, SQLAlchemy, gRPC) out, unless ``verbose``."""
    level = logging.INFO if verbose else logging.WARNING
    for name in FRAMEWORK_LOGGERS:
        logging.getLogger(name).setLevel(level)
    if verbose:
        log_events()


def log_events() -> None:
    """Log fedpeer's own events to stderr, for the commands that keep running."""
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)


def add_common_options(app: typer.Typer) -> None:
    """Give ``app`` the options every fedpeer tool takes: ``--version`` and ``--verbose``."""

    def show_version(value: bool) -> None:
        if value:
            typer.echo(f"{app.info.name} {package_version()}")
            raise typer.Exit()

    @app.callback()
    def common_options(
        version: bool = typer.Option(
            False,
            "--version",
            callback=show_version,
            is_eager=True,
            help="Print the version and exit.",
        ),
        verbose: bool = typer.Option(
            False,
            "--verbose",
            help="Also show the logs of gRPC, SQLAlchemy (every SQL statement) and Alembic.",
        ),
    ) -> None:
        configure_logging(verbose)


def parse_date(value: str | date) -> date:
    """A date given on the command line, as YYYY-MM-DD (or a command's default date)."""
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a date (YYYY-MM-DD, e.g. 2026-09-30)") from None


def as_of_option(default: Any = ..., help: str = "Reference date, YYYY-MM-DD.") -> Any:
    """``--as-of``, parsed and checked the same way in every command that takes it."""
    return typer.Option(default, "--as-of", metavar="YYYY-MM-DD", parser=parse_date, help=help)


# -- paths ----------------------------------------------------------------------------------


def existing_home(home: Path, kind: str, made_by: str) -> Path:
    """``home`` when it is a directory; commands that read a home never create one."""
    if not home.is_dir():
        raise HomeNotFound(f"there is no {kind} home at {home}: check --home, or run `{made_by}`")
    return home


def file_to_write(path: Path | None) -> Path | None:
    """Check a file to be written before any work: its folder exists and it is no folder."""
    if path is None:
        return None
    if path.is_dir():
        raise typer.BadParameter(f"{path} is a folder: give a file name")
    if not path.parent.is_dir():
        raise typer.BadParameter(f"there is no folder {path.parent}: create it first")
    return path


def folder_to_write(path: Path) -> Path:
    """Check a folder to be written before any work: it is a folder, or does not exist yet."""
    if path.exists() and not path.is_dir():
        raise typer.BadParameter(f"{path} is a file: give a folder")
    return path
