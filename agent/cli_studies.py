"""``fedpeer-agent study``: see a study in plain words, then approve, decline or withdraw.

Nothing is computed for a study before the practice (or its ``agent.toml`` rule for the
study's owner) accepts it. ``study show`` says what each question counts, in the same
words as ``fedpeer-agent explain``; the decision is sent at the agent's next run.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Column, Table

from agent.cli_home import HOME, agent_home
from agent.studies import STUDIES_FILE, Decision, LocalStudy, StudyBook
from fedpeer.cli_support import make_console
from fedpeer.definitions import explain
from fedpeer.errors import RoundError

console = make_console()
study_app = typer.Typer(
    help="Studies: see them in plain words, approve, decline or withdraw.", no_args_is_help=True
)


def _book(home: Path) -> StudyBook | None:
    """The home's record of studies; None before the agent has seen any (none is made here)."""
    path = agent_home(home) / STUDIES_FILE
    return StudyBook(path) if path.exists() else None


def _seen(home: Path, study_id: str) -> tuple[StudyBook, LocalStudy]:
    """A study as this agent keeps it, and the book it is in."""
    book = _book(home)
    local = None if book is None else book.get(study_id)
    if book is None or local is None:
        raise RoundError(f"this agent has not seen a study {study_id}: run the agent first")
    return book, local


@study_app.command("list")
def study_list(home: Path = HOME) -> None:
    """The studies this agent has seen, and the practice's decision on each."""
    table = Table(Column("study", overflow="fold"), "title", "owner", "as of", "decision", "why")
    book = _book(home)
    for local in [] if book is None else book.all():
        s = local.study
        table.add_row(s.study_id, s.title, s.owner, str(s.as_of), local.decision, local.why)
    console.print(table)


@study_app.command("show")
def study_show(study_id: str = typer.Argument(..., metavar="STUDY"), home: Path = HOME) -> None:
    """A study in plain words: who asks, why, and exactly what each question counts."""
    _, local = _seen(home, study_id)
    s = local.study
    console.print(f"{s.title}\nAsked by {s.owner}, as of {s.as_of:%d %B %Y}.\n")
    console.print(f"Purpose: {s.purpose}\n")
    console.print(
        f"Only the sum over at least {s.min_practices} practices is ever published, through "
        "secure aggregation: neither the coordinator nor the analyst sees this practice's "
        "numbers.\n"
    )
    for definition in s.parsed():
        console.print(explain(definition, s.as_of) + "\n")
    console.print(f"Decision: {local.decision}" + (f" ({local.why})" if local.why else ""))


def _decide(
    study_id: str, home: Path, decision: Decision, why: str, allowed: set[Decision]
) -> None:
    book, local = _seen(home, study_id)
    if local.decision not in allowed:
        raise RoundError(f"study {study_id} is {local.decision}: it cannot be {decision} now")
    book.decide(study_id, decision, why)
    console.print(f"Study {study_id}: {decision}; the coordinator hears at the next run.")


@study_app.command("approve")
def study_approve(study_id: str = typer.Argument(..., metavar="STUDY"), home: Path = HOME) -> None:
    """Join a study: this practice's counts go into its sum, masked."""
    _decide(study_id, home, Decision.ACCEPTED, "approved by the practice", {Decision.HELD})


@study_app.command("decline")
def study_decline(study_id: str = typer.Argument(..., metavar="STUDY"), home: Path = HOME) -> None:
    """Decline a study; nothing is computed for it."""
    _decide(study_id, home, Decision.DECLINED, "declined by the practice", {Decision.HELD})


@study_app.command("withdraw")
def study_withdraw(study_id: str = typer.Argument(..., metavar="STUDY"), home: Path = HOME) -> None:
    """Leave a study before it closes."""
    _decide(study_id, home, Decision.WITHDRAWN, "withdrawn by the practice", {Decision.ACCEPTED})


def register(app: typer.Typer) -> None:
    """Add ``study`` to ``fedpeer-agent``."""
    app.add_typer(study_app, name="study")
