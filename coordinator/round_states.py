"""A round's states and the one rule of which state may follow which (issue 9).

open -> closing when its deadline passes (no more submissions; the round clock then
closes it), open/closing -> closed (``round close`` or the clock), closed -> published
(``round publish``: its comparisons may go out), and anything not yet published ->
cancelled (``round cancel``). Published and cancelled are final.
"""

from __future__ import annotations

from enum import StrEnum

from fedpeer.errors import RoundError


class RoundState(StrEnum):
    """Where a round stands."""

    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"
    PUBLISHED = "published"
    CANCELLED = "cancelled"


_NEXT: dict[RoundState, frozenset[RoundState]] = {
    RoundState.OPEN: frozenset({RoundState.CLOSING, RoundState.CLOSED, RoundState.CANCELLED}),
    RoundState.CLOSING: frozenset({RoundState.CLOSED, RoundState.CANCELLED}),
    RoundState.CLOSED: frozenset({RoundState.PUBLISHED, RoundState.CANCELLED}),
    RoundState.PUBLISHED: frozenset(),
    RoundState.CANCELLED: frozenset(),
}


def check_transition(round_id: str, old: RoundState, new: RoundState) -> None:
    """Raise RoundError unless a round in ``old`` may move to ``new``."""
    if new not in _NEXT[old]:
        raise RoundError(f"round {round_id} is {old}: it cannot become {new}")


def takes_answers(state: RoundState) -> bool:
    """Whether a round in ``state`` takes submissions and refusals."""
    return state is RoundState.OPEN


def compared(state: RoundState) -> bool:
    """Whether a round in ``state`` has comparisons: closed to answers and not cancelled."""
    return state in (RoundState.CLOSED, RoundState.PUBLISHED)


class PracticePart(StrEnum):
    """Where one practice stands in a round."""

    SUBMITTED = "submitted"
    REFUSED = "refused"
    PENDING = "pending"  # not answered, the deadline (if any) still ahead
    LATE = "late"  # not answered, the deadline passed
    AWAITING_APPROVAL = "awaiting approval"  # its release waits for the practice's own yes
