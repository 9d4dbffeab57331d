"""Practice IT's first hour: ``init`` writes a commented agent.toml, ``doctor`` checks it all.

``init --home DIR`` creates the agent's home (private to its owner) and writes
``agent.toml`` with every setting commented out at its default and explained
(``agent.policy_file.agent_toml_template``); it never replaces one without ``--force``.
``doctor --home DIR [--extract LOCATION]`` prints one line per check (``agent.doctor``)
and exits 1 when any is a problem. See docs/agent.md.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import shlex
from pathlib import Path

import typer

from agent.cli_home import HOME
from agent.doctor import DEFAULT_TIMEOUT, Status, check_extract, diagnose, shown_location, summary
from agent.policy_file import AGENT_TOML, agent_toml_template
from fedpeer.private_files import private_dir, write_private

EXTRACT = typer.Option(
    None, "--extract", help="CSV or Parquet directory, or a SQLAlchemy URL, to check it opens."
)


def _fail(message: str) -> None:
    typer.echo(message, err=True)
    raise typer.Exit(1)


def init(
    home: Path = HOME,
    extract: str | None = EXTRACT,
    force: bool = typer.Option(False, "--force", help="Replace an existing agent.toml."),
) -> None:
    """Write a commented agent.toml (every setting at its default) into the agent's home."""
    path = home / AGENT_TOML
    if home.exists() and not home.is_dir():
        _fail(f"{home} is a file, not a folder: give the folder for the agent's home")
    if path.exists() and not force:
        _fail(f"{path} already exists and was left as it is (--force replaces it)")
    private_dir(home)
    write_private(path, agent_toml_template())
    typer.echo(
        f"Wrote {path}: every setting commented out at its default, each explained; "
        "edit it to make disclosure control stricter, never looser."
    )
    quoted = shlex.quote(str(home))
    extract_arg = ""
    if extract is not None:
        finding = check_extract(extract, dt.datetime.now(dt.UTC).date())
        typer.echo(finding.line())
        extract_arg = f" --extract {shlex.quote(shown_location(extract))}"
        if finding.status == Status.PROBLEM:
            raise typer.Exit(1)
    typer.echo(f"Next: `fedpeer-agent doctor --home {quoted}{extract_arg}` checks everything.")


def doctor(
    home: Path = HOME,
    extract: str | None = EXTRACT,
    timeout: float = typer.Option(
        DEFAULT_TIMEOUT, "--timeout", min=0.1, help="Seconds to wait for the coordinator."
    ),
) -> None:
    """Check this agent is ready: one line per check, each ok, warning or problem."""
    findings = asyncio.run(diagnose(home, extract, timeout=timeout))
    for finding in findings:
        typer.echo(finding.line())
    if len(findings) > 1:
        typer.echo(summary(findings))
    if any(f.status == Status.PROBLEM for f in findings):
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add ``init`` and ``doctor`` to ``fedpeer-agent``."""
    app.command()(init)
    app.command()(doctor)
