"""Leaving one practice's submission out of a round's comparisons, and putting it back.

A coordinator who finds a submission wrong after it was accepted (a practice's extract
was broken, say) excludes it: the submission stays stored and receipted, but the store's
frame of released rows (``Store.released_rows_frame``) no longer has it, so comparisons
and reports do not count it. Every decision is kept in ``exclusion_events`` with who made
it, when and why; ``submission_exclusions`` holds the exclusions in force. A closed
round's stored comparison is rebuilt at each decision, so reports read it at once.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum

import sqlalchemy as sa

from coordinator.comparison_store import record_comparison
from coordinator.round_states import RoundState
from coordinator.store import Store, utc
from coordinator.tables import exclusion_events, submission_exclusions, submissions
from fedpeer.errors import StoreError

WHY_LIMIT = 2000
# Rounds whose comparison is stored (``coordinator.comparison_store``) and read by reports.
STORED = frozenset({RoundState.CLOSED, RoundState.PUBLISHED})


class ExclusionAction(StrEnum):
    """What a coordinator decided about a submission."""

    EXCLUDE = "exclude"
    INCLUDE = "include"


@dataclass(frozen=True)
class SubmissionEntry:
    """One practice's submission to a round, and whether comparisons count it."""

    practice_id: str
    received_at: dt.datetime
    content_sha256: str
    excluded: bool
    by: str = ""
    at: dt.datetime | None = None
    why: str = ""


def _reason(why: str) -> str:
    text = " ".join(why.split())[:WHY_LIMIT]
    if not text:
        raise StoreError("say why (--why): the reason is kept with the decision")
    return text


def _submitted(conn: sa.Connection, round_id: str, practice_id: str) -> None:
    found = conn.execute(
        sa.select(submissions.c.submission_id).where(
            submissions.c.round_id == round_id, submissions.c.practice_id == practice_id
        )
    ).first()
    if found is None:
        raise StoreError(f"round {round_id}: practice {practice_id} has no submission")


def set_excluded(
    store: Store,
    round_id: str,
    practice_id: str,
    action: ExclusionAction,
    actor: str,
    why: str,
    now: dt.datetime,
) -> SubmissionEntry:
    """Exclude a submission from (or include it again in) a round's comparisons, audited."""
    reason = _reason(why)
    store.round_state(round_id)  # UnknownRound first, as every round command says
    with store.engine.begin() as conn:
        _submitted(conn, round_id, practice_id)
        key = (
            submission_exclusions.c.round_id == round_id,
            submission_exclusions.c.practice_id == practice_id,
        )
        conn.execute(submission_exclusions.delete().where(*key))
        if action is ExclusionAction.EXCLUDE:
            conn.execute(
                submission_exclusions.insert().values(
                    round_id=round_id,
                    practice_id=practice_id,
                    excluded_by=actor,
                    excluded_at=now,
                    why=reason,
                )
            )
        conn.execute(
            exclusion_events.insert().values(
                round_id=round_id,
                practice_id=practice_id,
                action=action.value,
                actor=actor,
                at=now,
                why=reason,
            )
        )
    if store.round_state(round_id) in STORED:
        record_comparison(store, round_id)  # its stored comparison is rebuilt without it
    (entry,) = [e for e in submission_list(store, round_id) if e.practice_id == practice_id]
    return entry


def submission_list(store: Store, round_id: str) -> list[SubmissionEntry]:
    """Every submission to a round, by practice, with the exclusion in force if any."""
    store.round_state(round_id)
    query = (
        sa.select(
            submissions.c.practice_id,
            submissions.c.received_at,
            submissions.c.content_sha256,
            submission_exclusions.c.excluded_by,
            submission_exclusions.c.excluded_at,
            submission_exclusions.c.why,
        )
        .select_from(
            submissions.outerjoin(
                submission_exclusions,
                sa.and_(
                    submission_exclusions.c.round_id == submissions.c.round_id,
                    submission_exclusions.c.practice_id == submissions.c.practice_id,
                ),
            )
        )
        .where(submissions.c.round_id == round_id)
        .order_by(submissions.c.practice_id)
    )
    with store.engine.connect() as conn:
        rows = conn.execute(query).all()
    return [
        SubmissionEntry(
            practice_id=r.practice_id,
            received_at=utc(r.received_at),
            content_sha256=r.content_sha256,
            excluded=r.excluded_at is not None,
            by=r.excluded_by or "",
            at=None if r.excluded_at is None else utc(r.excluded_at),
            why=r.why or "",
        )
        for r in rows
    ]


def exclusion_history(store: Store, round_id: str) -> list[tuple[str, str, str, dt.datetime, str]]:
    """Every exclusion decision on a round, oldest first: practice, action, who, when, why."""
    with store.engine.connect() as conn:
        rows = conn.execute(
            sa.select(exclusion_events)
            .where(exclusion_events.c.round_id == round_id)
            .order_by(exclusion_events.c.event_id)
        ).all()
    return [(r.practice_id, r.action, r.actor, utc(r.at), r.why) for r in rows]
