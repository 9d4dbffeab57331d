"""The agent's home on the command line: one ``--home`` option for every command, one check."""

from __future__ import annotations

from pathlib import Path

import typer

from fedpeer.cli_support import existing_home

HOME = typer.Option(..., "--home", envvar="FEDPEER_AGENT_HOME", help="The agent's home directory.")


def agent_home(home: Path) -> Path:
    """``home`` when it exists; every command but ``enrol`` needs one, and none makes one."""
    return existing_home(home, "agent", "fedpeer-agent enrol")
