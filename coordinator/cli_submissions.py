"""``fedpeer-coordinator submission`` and ``admin``: exclusions and admin certificates.

``submission exclude ROUND PRACTICE --why TEXT`` leaves an accepted submission out of the
round's comparisons (it stays stored and receipted); ``submission include`` counts it
again; ``submission list ROUND`` shows each submission and the decision in force. Every
decision is kept with who made it, when and why. ``admin add NAME --out DIR`` issues an
administrator their own certificate; ``admin revoke NAME|FINGERPRINT`` refuses admin
certificates from their next call; ``admin list`` shows those seen.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Column, Table

from coordinator.cli import COORDINATOR, HOME, _admin_call, app, console, issue_into
from fedpeer.cli_support import folder_to_write

submission_app = typer.Typer(
    help="Leave a practice's submission out of a round's comparisons, or count it again.",
    no_args_is_help=True,
)
admin_app = typer.Typer(help="Admin certificates: list and revoke.", no_args_is_help=True)
app.add_typer(submission_app, name="submission")
app.add_typer(admin_app, name="admin")

ROUND = typer.Argument(..., help="The round's id.")
PRACTICE = typer.Argument(..., help="The practice's id.")
WHY = typer.Option(..., "--why", help="Why: kept with the decision, with who and when.")


def _decision(excluded: bool, summary: str) -> None:
    """Register ``submission exclude`` or ``include``: the same command, one flag apart."""

    def decide(
        round_id: str = ROUND,
        practice_id: str = PRACTICE,
        why: str = WHY,
        home: Path = HOME,
        coordinator: str | None = COORDINATOR,
    ) -> None:
        entry = _admin_call(
            home, coordinator, lambda c: c.set_excluded(round_id, practice_id, excluded, why)
        )
        counted = "is counted again" if not entry.excluded else "is left out of comparisons"
        console.print(f"Round {round_id}: {practice_id}'s submission {counted}.")

    decide.__doc__ = summary
    submission_app.command("exclude" if excluded else "include")(decide)


_decision(True, "Leave a practice's submission out of a round's comparisons and reports.")
_decision(False, "Count an excluded submission again.")


@submission_app.command("list")
def submission_list(
    round_id: str = ROUND,
    home: Path = HOME,
    coordinator: str | None = COORDINATOR,
) -> None:
    """Each submission to a round, and whether comparisons count it (who, when, why)."""
    entries = _admin_call(home, coordinator, lambda c: c.submissions(round_id))
    table = Table(Column("practice", overflow="fold"), "received", "counted", "by", "at", "why")
    for e in entries:
        table.add_row(
            e.practice_id,
            e.received_at,
            "no" if e.excluded else "yes",
            e.excluded_by,
            e.excluded_at,
            e.why,
        )
    console.print(table)


@admin_app.command("add")
def admin_add(
    name: str = typer.Argument(..., help="Who holds it: shown by `admin list`, revoked by name."),
    out: Path = typer.Option(
        ...,
        "--out",
        callback=folder_to_write,
        help="A new folder for the admin's key and cert (usable as --home for admin commands).",
    ),
    home: Path = HOME,
) -> None:
    """Issue another admin certificate, so that each administrator has their own."""
    issue_into(out, "admin", home, lambda ca: ca.issue_admin(name))
    console.print(
        f"Admin {name}: key and certificate in {out} (keep the key private; "
        f"`--home {out} --coordinator HOST:PORT` runs admin commands with it)"
    )


@admin_app.command("list")
def admin_list(home: Path = HOME, coordinator: str | None = COORDINATOR) -> None:
    """Admin certificates that have called this coordinator, or were revoked."""
    admins = _admin_call(home, coordinator, lambda c: c.admins())
    table = Table("name", Column("fingerprint", overflow="fold"), "first seen", "revoked")
    for a in admins:
        revoked = f"{a.revoked_at} by {a.revoked_by}" if a.revoked_at else ""
        table.add_row(a.name, a.fingerprint, a.first_seen, revoked)
    console.print(table)


@admin_app.command("revoke")
def admin_revoke(
    target: str = typer.Argument(..., help="An admin's name, or one certificate's fingerprint."),
    home: Path = HOME,
    coordinator: str | None = COORDINATOR,
) -> None:
    """Revoke admin certificates: refused from their next call."""
    revoked = _admin_call(home, coordinator, lambda c: c.revoke_admin(target))
    for a in revoked:
        console.print(f"Revoked admin certificate {a.fingerprint[:16]} ({a.name or 'unnamed'})")
