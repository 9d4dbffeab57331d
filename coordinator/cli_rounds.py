"""``fedpeer-coordinator round ...``: start, list, watch, close, publish, cancel, schedule.

A round is open (taking answers), closing (its deadline passed), closed, published or
cancelled (``coordinator.round_states``). ``round watch`` redraws one table until the
round takes no more answers: who submitted, who is late, who refused, and whose release
waits for the practice's own approval.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Group
from rich.live import Live
from rich.table import Column, Table
from rich.text import Text

from coordinator.admin_client import AdminClient
from coordinator.round_states import PracticePart, RoundState
from coordinator.rounds import standard_definitions
from fedpeer.cli_support import as_of_option, make_console
from fedpeer.collection import parse_instant
from fedpeer.errors import RoundError
from fedpeer.v1 import admin_pb2

T = TypeVar("T")
AdminCall = Callable[[Path, str | None, Callable[[AdminClient], Awaitable[T]]], T]
console = make_console()

# How each state of a practice is shown: colour-blind safe by word first, colour second.
_STYLE = {
    PracticePart.SUBMITTED: "green",
    PracticePart.REFUSED: "magenta",
    PracticePart.PENDING: "",
    PracticePart.LATE: "bold red",
    PracticePart.AWAITING_APPROVAL: "yellow",
}
# A watched round stops changing once it takes no more answers.
_SETTLED = {RoundState.CLOSED.value, RoundState.PUBLISHED.value, RoundState.CANCELLED.value}


def _deadline(text: str) -> dt.datetime | None:
    if not text:
        return None
    try:
        return parse_instant(text)
    except RoundError as exc:
        raise typer.BadParameter(str(exc), param_hint="'--deadline'") from None


def status_view(status: admin_pb2.RoundStatus) -> Group:
    """A round's state, deadline and quorum, and each practice's part, as one renderable."""
    counts = {part: sum(p.state == part.value for p in status.practices) for part in PracticePart}
    head = Text(f"Round {status.round_id}, as of {status.as_of}: {status.state}", style="bold")
    lines = [head]
    if status.deadline:
        lines.append(Text(f"deadline {status.deadline}"))
    if status.quorum:
        met = "reached" if status.quorum_met else "not reached"
        lines.append(Text(f"quorum {counts[PracticePart.SUBMITTED]}/{status.quorum}: {met}"))
    table = Table(Column("practice", overflow="fold"), "state", "at", "detail")
    for p in status.practices:
        detail = p.detail[:16] if p.state == PracticePart.SUBMITTED else p.detail
        table.add_row(
            p.practice_id, Text(p.state, style=_STYLE[PracticePart(p.state)]), p.at, detail
        )
    summary = ", ".join(f"{n} {part.value}" for part, n in counts.items() if n)
    answered = counts[PracticePart.SUBMITTED] + counts[PracticePart.REFUSED]
    tail = Text(f"{answered} of {len(status.practices)} practices have answered ({summary})")
    return Group(*lines, table, tail)


def rounds_table(found: list[admin_pb2.RoundSummary]) -> Table:
    """``round list``: one line a round."""
    table = Table(Column("round", overflow="fold"), "as of", "state", "deadline", "submitted")
    for r in found:
        quorum = f" (quorum {r.quorum})" if r.quorum else ""
        table.add_row(
            r.round_id, r.as_of, r.state, r.deadline or "-", f"{r.submitted}/{r.expected}{quorum}"
        )
    return table


def register(round_app: typer.Typer, admin_call: AdminCall[Any], home: Any, coord: Any) -> None:
    """Add the round commands; ``admin_call`` runs one call with the admin certificate."""

    @round_app.command("start")
    def round_start(
        as_of: dt.date = as_of_option(
            help="Reference date: a month end no later than the last complete month, YYYY-MM-DD."
        ),
        deadline: str = typer.Option(
            "", "--deadline", help="When answers stop, e.g. 2026-12-31T17:00:00Z (default none)."
        ),
        quorum: int = typer.Option(0, "--quorum", min=0, help="Practices needed to count."),
        standardise_with: str = typer.Option(
            "",
            "--standardise-with",
            metavar="STUDY",
            help="A published reference-rates study: standardise for age and sex with its rates.",
        ),
        home: Path = home,
        coordinator: str | None = coord,
    ) -> None:
        """Open a round of the standard indicators and announce it to connected agents."""
        definitions, until = standard_definitions(), _deadline(deadline)
        round_ = admin_call(
            home,
            coordinator,
            lambda c: c.start_round(as_of, definitions, until, quorum, standardise_with),
        )
        console.print(
            f"Started round {round_.round_id} (as of {round_.as_of}, "
            f"{len(round_.definitions)} definitions"
            + (f", deadline {round_.deadline}" if round_.deadline else "")
            + (f", quorum {round_.quorum}" if round_.quorum else "")
            + (f", standardised with {standardise_with}" if standardise_with else "")
            + ")"
        )

    @round_app.command("list")
    def round_list(home: Path = home, coordinator: str | None = coord) -> None:
        """List rounds, newest first: state, deadline, and how many submitted."""
        found = admin_call(home, coordinator, lambda c: c.rounds())
        if not found:
            console.print("No rounds yet: `fedpeer-coordinator round start` opens one.")
            return
        console.print(rounds_table(found))

    @round_app.command("status")
    def round_status(
        round_id: str = typer.Argument(..., help="Round id."),
        follow: bool = typer.Option(False, "--follow", help="Keep watching (as `round watch`)."),
        interval: float = typer.Option(2.0, "--interval", min=0.05, help="Seconds between looks."),
        home: Path = home,
        coordinator: str | None = coord,
    ) -> None:
        """Show who has submitted, refused, is late, or waits for approval."""
        if follow:
            _watch(admin_call, home, coordinator, round_id, interval)
            return
        console.print(status_view(admin_call(home, coordinator, lambda c: c.status(round_id))))

    @round_app.command("watch")
    def round_watch(
        round_id: str = typer.Argument(..., help="Round id."),
        interval: float = typer.Option(2.0, "--interval", min=0.05, help="Seconds between looks."),
        home: Path = home,
        coordinator: str | None = coord,
    ) -> None:
        """Watch a round live until it takes no more answers (Ctrl+C stops)."""
        _watch(admin_call, home, coordinator, round_id, interval)

    @round_app.command("close")
    def round_close(
        round_id: str = typer.Argument(..., help="Round id."),
        home: Path = home,
        coordinator: str | None = coord,
    ) -> None:
        """Close a round to further submissions."""
        console.print(status_view(admin_call(home, coordinator, lambda c: c.close_round(round_id))))

    @round_app.command("publish")
    def round_publish(
        round_id: str = typer.Argument(..., help="Round id."),
        home: Path = home,
        coordinator: str | None = coord,
    ) -> None:
        """Publish a closed round: its comparisons and reports may go out."""
        status = admin_call(home, coordinator, lambda c: c.publish_round(round_id))
        console.print(status_view(status))

    @round_app.command("cancel")
    def round_cancel(
        round_id: str = typer.Argument(..., help="Round id."),
        home: Path = home,
        coordinator: str | None = coord,
    ) -> None:
        """Cancel a round not yet published: it takes no answers and is not compared."""
        status = admin_call(home, coordinator, lambda c: c.cancel_round(round_id))
        console.print(status_view(status))

    @round_app.command("schedule")
    def round_schedule(
        deadline_days: int = typer.Option(
            14, "--deadline-days", min=1, help="Days from a round's start to its deadline."
        ),
        quorum: int = typer.Option(0, "--quorum", min=0, help="Practices needed to count."),
        off: bool = typer.Option(False, "--off", help="Stop starting rounds by schedule."),
        show: bool = typer.Option(False, "--show", help="Show the schedule, change nothing."),
        standardise_with: str = typer.Option(
            "",
            "--standardise-with",
            metavar="STUDY",
            help="A published reference-rates study: standardise each round with its rates.",
        ),
        home: Path = home,
        coordinator: str | None = coord,
    ) -> None:
        """Have the coordinator start a standard round at every month end, by itself."""
        if show:
            setting = admin_call(home, coordinator, lambda c: c.schedule())
        else:
            setting = admin_call(
                home,
                coordinator,
                lambda c: c.set_schedule(deadline_days, quorum, not off, standardise_with),
            )
        if not setting.enabled:
            console.print("No rounds are scheduled.")
            return
        covered = (
            f"the last month end it covered is {setting.last_as_of}"
            if setting.last_as_of
            else "the first opens at the next month end"
        )
        console.print(
            "A standard round opens at every month end, for the month just ended, with a "
            f"deadline {setting.deadline_days} days later and a quorum of {setting.quorum}"
            + (
                f", standardised for age and sex with study {setting.standardise_with}"
                if setting.standardise_with
                else ""
            )
            + f"; {covered}."
        )


def _watch(
    admin_call: AdminCall[Any], home: Path, coordinator: str | None, round_id: str, every: float
) -> None:
    async def look(client: AdminClient) -> admin_pb2.RoundStatus:
        return await client.status(round_id)

    status = admin_call(home, coordinator, look)
    try:
        with Live(status_view(status), console=console, auto_refresh=False) as live:
            while status.state not in _SETTLED:
                time.sleep(every)
                status = admin_call(home, coordinator, look)
                live.update(status_view(status), refresh=True)
    except KeyboardInterrupt:
        console.print("Stopped watching.")
