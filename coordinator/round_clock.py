"""The round clock: the running coordinator's own hand on rounds (issue 9).

One task per server process, every ``tick_seconds``:

- a round whose deadline has passed goes to closing (no more answers), and on the next
  tick to closed (``rounds.pass_deadlines``);
- when a month has ended and the stored schedule (``round schedule``) has not yet
  started its round, a standard round for that month end opens, with the schedule's
  deadline and quorum, standardised for age and sex with the schedule's reference-rates
  study when it names one. The store's compare-and-set (``claim_scheduled``) makes sure two
  coordinator processes sharing a database start it once.

``now`` is injectable, so a test can move through month ends without waiting for one.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Awaitable, Callable

from coordinator import rounds
from coordinator.ca import CoordinatorKeys
from coordinator.periodic import Periodic
from coordinator.store import RoundSchedule, Store
from coordinator.studies import StudyBook, reference_rates
from fedpeer.collection import Round
from fedpeer.dates import last_complete_month_end
from fedpeer.errors import RoundError
from fedpeer.policy import DisclosurePolicy
from fedpeer.studies import StudyError

log = logging.getLogger("fedpeer.coordinator")

MONTH_END = "month-end"  # the one schedule there is: a standard round at every month end


def set_schedule(
    store: Store,
    deadline_days: int,
    quorum: int,
    now: dt.datetime | None = None,
    *,
    book: StudyBook | None = None,
    standardise_with: str = "",
) -> RoundSchedule:
    """Start a standard round at every month end from the next one on; replaces any other.

    With ``standardise_with`` (a published reference-rates study, checked now against the
    standard definitions) each round is standardised with its rates.
    """
    if deadline_days < 1 or quorum < 0:
        raise RoundError("a schedule needs a deadline of 1 day or more and a quorum >= 0")
    if standardise_with:
        if book is None:  # pragma: no cover - every caller with a study passes the book
            raise RoundError("a schedule that standardises needs the coordinator's studies")
        reference_rates(book, standardise_with, rounds.standard_definitions())
    # No month covered yet: the clock's first look marks the month that has already
    # ended as covered (that one is the operator's, by `round start`), by its own clock.
    schedule = RoundSchedule(deadline_days, quorum, None, standardise_with)
    store.set_round_schedule(MONTH_END, schedule, now or rounds.utc_now())
    return schedule


def start_scheduled(
    store: Store,
    ca: CoordinatorKeys,
    policy: DisclosurePolicy,
    now: dt.datetime,
    book: StudyBook | None = None,
) -> Round | None:
    """The scheduled round for the month just ended, started now if it is due; else None.

    A schedule's study whose rates no longer fit the standard definitions (a definition
    changed since) does not stop the month's round: it opens unstandardised, and the log
    says why.
    """
    schedule = store.round_schedule(MONTH_END)
    if schedule is None:
        return None
    due = last_complete_month_end(now.date())
    if schedule.last_as_of is not None and schedule.last_as_of >= due:
        return None
    if not store.claim_scheduled(MONTH_END, schedule.last_as_of, due):
        return None  # another coordinator process started it
    if schedule.last_as_of is None:
        return None  # a new schedule: its first round is at the next month end
    definitions = rounds.standard_definitions()
    standardisation = None
    if schedule.standardise_with and book is not None:
        try:
            standardisation = reference_rates(book, schedule.standardise_with, definitions)
        except StudyError as exc:
            log.warning(
                "event=scheduled_round_not_standardised study=%s reason=%s",
                schedule.standardise_with,
                exc,
            )
    return rounds.start_round(
        store,
        ca.signer,
        due,
        definitions,
        policy,
        deadline=now + dt.timedelta(days=schedule.deadline_days),
        quorum=schedule.quorum,
        now=now,
        standardisation=standardisation,
    )


class RoundClock(Periodic):
    """Moves rounds past their deadline and starts the scheduled ones, every tick."""

    def __init__(
        self,
        store: Store,
        ca: CoordinatorKeys,
        policy: DisclosurePolicy,
        changed: Callable[[], Awaitable[None]],
        tick_seconds: float = 5.0,
        now: Callable[[], dt.datetime] | None = None,
        book: StudyBook | None = None,
    ) -> None:
        super().__init__("round_clock", tick_seconds, self._step)
        self._store, self._ca, self._policy, self._book = store, ca, policy, book
        self._changed, self._now = changed, now or rounds.utc_now

    def tick(self) -> bool:
        """One look at the rounds; True when any round opened or changed state."""
        now = self._now()
        moved = rounds.pass_deadlines(self._store, now)
        for round_id, state in moved:
            log.info("event=round_%s round=%s reason=deadline", state.value, round_id)
        started = start_scheduled(self._store, self._ca, self._policy, now, self._book)
        if started is not None:
            log.info("event=round_started round=%s reason=schedule", started.round_id)
        return bool(moved) or started is not None

    async def _step(self) -> None:
        if await asyncio.to_thread(self.tick):
            await self._changed()  # wake the subscribed agents
