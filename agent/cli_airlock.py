"""The airlock commands of ``fedpeer-agent``: see what would leave, approve or reject it, audit.

``preview ROUND`` shows exactly what a round would send, as a table and as the release
document's bytes that the practice's key signs and the coordinator's receipt names;
``approve ROUND`` and ``reject ROUND --why TEXT`` decide;
``audit verify`` checks the hash chain of what has left and ``audit show`` lists it.
Every command takes ``--home`` (or ``FEDPEER_AGENT_HOME``), the agent's home directory.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import typer
from rich.table import Table

from agent.audit import AuditLog
from agent.cli_home import HOME, agent_home
from agent.identity_store import AgentHome
from agent.ledger import LEDGER_FILE, Ledger
from fedpeer.cli_support import make_console
from fedpeer.errors import RoundError

console = make_console()
STUDY_PREFIX = "study-"  # how the coordinator names studies (coordinator.studies)


def _ledger(home: Path) -> Ledger:
    """The home's ledger; one that is not there yet is not made here."""
    if not (agent_home(home) / LEDGER_FILE).exists():
        raise RoundError(f"{home} holds no ledger yet: this agent has not answered a round")
    return Ledger.at_home(home)


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def preview(
    round_id: str = typer.Argument(..., metavar="ROUND"),
    home: Path = HOME,
    show_bytes: bool = typer.Option(True, "--bytes/--no-bytes", help="Also print the bytes."),
) -> None:
    """Show exactly what ROUND would send: a table, then the document's bytes to be signed.

    For a study (``study-...``), what it asks in plain words, as ``study show``: its
    numbers never leave unmasked, so there are no bytes to preview.
    """
    if round_id.startswith(STUDY_PREFIX):
        from agent.cli_studies import study_show

        study_show(round_id, home)
        return
    ledger = _ledger(home)
    practice_id = AgentHome(home).load().practice_id
    document = ledger.round_document(round_id, practice_id)
    table = Table(title=f"Round {round_id}: what would leave the practice")
    for column in ("indicator", "category"):
        table.add_column(column, overflow="fold")
    for column in ("numerator", "denominator", "count", "mean", "value"):
        table.add_column(column, justify="right")
    table.add_column("suppressed")
    for row in sorted(document.rows, key=lambda r: (r.indicator, r.category)):
        table.add_row(
            row.indicator,
            row.category,
            *(
                _cell(getattr(row, c))
                for c in ("numerator", "denominator", "count", "mean", "value")
            ),
            "yes" if row.suppressed else "",
        )
    console.print(table)
    states = sorted(state.value for state in ledger.round_states(round_id))
    console.print(f"State: {', '.join(states)}")
    data = document.to_bytes()
    console.print(f"Release document: {len(data)} bytes, sha256 {document.digest}")
    if show_bytes:
        console.print(data.decode("utf-8"), markup=False, soft_wrap=True)


def approve(round_id: str = typer.Argument(..., metavar="ROUND"), home: Path = HOME) -> None:
    """Approve ROUND: its releases may now be sent."""
    _ledger(home).approve(round_id)
    console.print(f"Approved round {round_id}.")


def reject(
    round_id: str = typer.Argument(..., metavar="ROUND"),
    why: str = typer.Option(..., "--why", help="The reason, kept in the ledger."),
    home: Path = HOME,
) -> None:
    """Reject ROUND: nothing of it will leave the practice."""
    _ledger(home).reject(round_id, why)
    console.print(f"Rejected round {round_id}.")


audit_app = typer.Typer(help="The audit log of what has left the practice.", no_args_is_help=True)


@audit_app.command("verify")
def audit_verify(home: Path = HOME) -> None:
    """Check the audit log's hash chain; name the first entry that was tampered with."""
    log = AuditLog.at_home(agent_home(home))
    problem = log.verify()
    if problem is not None:
        console.print(f"Audit log damaged at {problem}")
        raise typer.Exit(1)
    # The chain cannot show entries cut from the end; the ledger's receipts can.
    if (home / LEDGER_FILE).exists():
        logged = {e.get("receipt") for e in log.entries()}
        missing = Ledger.at_home(home).sent_receipts() - logged
        if missing:
            console.print(
                f"Audit log incomplete: {len(missing)} sent release(s) have no entry "
                f"(receipts {', '.join(sorted(missing))})"
            )
            raise typer.Exit(1)
    console.print(f"Audit log intact: {len(log.entries())} entries.")


@audit_app.command("show")
def audit_show(home: Path = HOME) -> None:
    """List what has left the practice, oldest first."""
    table = Table(title="What has left the practice")
    for column in ("seq", "time", "round", "as of", "to", "receipt", "release sha256"):
        table.add_column(column, overflow="fold", no_wrap=column in ("seq", "as of"))
    for e in AuditLog.at_home(agent_home(home)).show():
        table.add_row(
            str(e["seq"]),
            str(e["time"]),
            str(e["round"]),
            str(e["as_of"]),
            str(e["to"]),
            str(e["receipt"] or "-"),
            str(e["release_sha256"])[:16],
        )
    console.print(table)


def outbox(
    home: Path = HOME,
    resend: bool = typer.Option(False, "--resend", help="Send the pending ones again now."),
) -> None:
    """What this agent has answered: each round's answer and its fate; --resend the pending.

    An answer stays pending until the coordinator acknowledges it or says it is wrong;
    the agent resends pending answers at every run, and here on demand.
    """
    from agent.client import Agent, Outcome
    from agent.outbox import Outbox

    agent_home(home)
    if resend:

        def never(_round: object) -> object:
            raise AssertionError("resending prepares nothing")

        outcomes: list[Outcome] = asyncio.run(Agent(home, never).resend())
        for outcome in outcomes:
            console.print(f"round {outcome.round_id}: {outcome.status} {outcome.detail}".rstrip())
    table = Table("round", "answer", "state", "since", "detail")
    for entry in Outbox(AgentHome(home).outbox_path).entries():
        table.add_row(entry.round_id, entry.kind, entry.state, entry.updated_at, entry.detail)
    console.print(table)


def register(app: typer.Typer) -> None:
    """Add the airlock commands to ``fedpeer-agent``."""
    app.command()(outbox)
    app.command()(preview)
    app.command()(approve)
    app.command()(reject)
    app.add_typer(audit_app, name="audit")
