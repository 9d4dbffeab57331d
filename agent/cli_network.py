"""The agent's network commands: ``enrol`` once with a token, then ``run``."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import typer

from agent.cli_home import HOME, agent_home
from agent.client import SENT, Agent, Status, enrol
from agent.location import check_location
from agent.service import practice_agent  # one wiring for `run` and the service
from fedpeer.channel import split_address
from fedpeer.cli_support import log_events, make_console

__all__ = ["practice_agent", "register"]

console = make_console()


def follow(home: Path, extract: str, log_file: Path | None, agent: Agent) -> None:
    """Follow rounds until stopped, as the service does.

    Where the system allows, this process becomes the service entry (``agent.service``,
    same PID, same options): it waits without the command-line libraries (typer, rich,
    pydantic) that parsed this command, which would otherwise stay in memory for months.
    """
    if os.name == "posix":
        sys.stdout.flush()
        argv = [sys.executable, "-m", "agent.service", "--home", str(home), "--extract", extract]
        if log_file is not None:
            argv += ["--log-file", str(log_file)]
        os.execv(sys.executable, argv)
    try:
        asyncio.run(agent.run_forever())
    except KeyboardInterrupt:
        console.print("Stopped.")


def register(app: typer.Typer) -> None:
    """Add ``enrol`` and ``run`` to the agent's command-line app."""

    @app.command("enrol")
    def enrol_command(
        coordinator: str = typer.Option(
            ..., "--coordinator", help="HOST:PORT of the coordinator's mutual-TLS port."
        ),
        enrol_port: int = typer.Option(..., "--enrol-port", help="The enrolment port."),
        token: str = typer.Option(..., "--token", help="One-time token from the coordinator."),
        home: Path = HOME,
        server_name: str | None = typer.Option(
            None, "--server-name", help="Name in the coordinator's certificate, if not HOST."
        ),
    ) -> None:
        """Enrol this agent once: make a key here, get a certificate from the coordinator."""
        split_address(coordinator)
        identity = asyncio.run(enrol(coordinator, enrol_port, token, home, server_name))
        console.print(f"Enrolled as practice {identity.practice_id}; identity kept in {home}")
        console.print("The private key never leaves this directory.")

    @app.command("run")
    def run_command(
        home: Path = HOME,
        extract: str = typer.Option(..., help="CSV or Parquet directory, or a SQLAlchemy URL."),
        once: bool = typer.Option(
            False,
            "--once",
            help="Answer the open rounds, then exit (1: rounds wait, nothing sent).",
        ),
        log_file: Path | None = typer.Option(
            None, "--log-file", help="Following: log to this file, rotated by size."
        ),
    ) -> None:
        """Answer collection rounds: follow them as they open, or with --once, those open now."""
        agent_home(home)
        check_location(extract)  # now, not when the first round comes
        log_events()
        agent = practice_agent(home, extract)
        if not once:
            console.print(f"Following rounds from {agent.identity.coordinator}; Ctrl+C stops")
            follow(home, extract, log_file, agent)
            return
        outcomes = asyncio.run(agent.run_once())
        if not outcomes:
            console.print("No open rounds to answer.")
        for outcome in outcomes:
            line = f"round {outcome.round_id}: {outcome.status}"
            if outcome.receipt is not None:
                line += f" (receipt {outcome.receipt.submission_id})"
            elif outcome.detail:
                line += f" ({outcome.detail})"
            console.print(line)
        unsent = [o for o in outcomes if o.status not in (*SENT, Status.ALREADY)]
        if unsent and not any(o.status in SENT for o in outcomes):
            # A scheduled `run --once` shows by its exit status that rounds wait unanswered.
            console.print(f"Nothing was sent: {len(unsent)} round(s) still unanswered.")
            raise typer.Exit(1)
