"""The Agent servicer: round announcements, rounds, submissions and refusals."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum

import grpc

from coordinator import rounds
from coordinator.announce import StoreListener
from coordinator.background import stop_task
from coordinator.ca import CoordinatorKeys
from coordinator.group_commit import GroupCommit
from coordinator.metrics import Counter
from coordinator.services import domain_errors
from coordinator.services.auth import (
    ENROLMENT_FRESH_SECONDS,
    calling_certificate,
    calling_peer,
    calling_practice,
    enrolment_refusal,
    refusal_of,
)
from coordinator.services.log_limit import RateLimitedLog
from coordinator.services.studies import AgentStudyMethods
from coordinator.services.version import (
    STANDARDISE_AGENT_VERSION,
    at_least,
    knows_signer,
    reported_version,
)
from coordinator.store import PRACTICES_CHANNEL, ROUNDS_CHANNEL, PracticeRecord, Store
from coordinator.studies import StudyBook
from fedpeer import wire
from fedpeer.channel import UPGRADE
from fedpeer.errors import RoundError
from fedpeer.standardise import asks_standardised
from fedpeer.v1 import agent_pb2, agent_pb2_grpc, common_pb2

log = logging.getLogger("fedpeer.coordinator")
# A line per submission, but not thousands in a second when a round's agents answer
# together: a burst, then about one a second saying how many were held back. Every one
# is counted in /metrics (fedpeer_submissions_received_total) and recorded in the store.
submissions_log = RateLimitedLog(log)


class Wakeup(StrEnum):
    """Why a round stream was woken: the label of ``fedpeer_stream_wakeups_total``."""

    ROUNDS = "rounds"  # the open rounds changed: it announces the new ones
    NOT_SERVED = "not_served"  # its certificate is revoked or replaced: it closes


@dataclass(eq=False, slots=True)
class Subscription:
    """One open round stream: whose, with which certificate, its wake-up, why it must close."""

    practice_id: str
    fingerprint: str
    woken: asyncio.Event = field(default_factory=asyncio.Event)
    refusal: str | None = None


class RoundAnnouncer:
    """The open rounds and this process's open round streams, which it wakes.

    One background task reads the store every ``poll_seconds`` instead of every
    subscribed agent querying it; a round opened here is announced at once via
    ``refresh``. A round opened or closed by another process sharing a PostgreSQL store
    is announced at once too when the ``listener`` (coordinator.announce) hears of it,
    and at the next poll otherwise.

    Streams are kept by practice, so a practice revoked or enrolled again
    (``practice_changed``, called by the revoking call here and by the listener for a
    change made through another process) closes that practice's streams only: no other
    stream is woken and no stream reads the store. The poll (and the listener's
    reconnection) also looks over every open stream against one read of the practices:
    the fallback for a notification missed.
    """

    def __init__(
        self,
        store: Store,
        poll_seconds: float = 5.0,
        listener: StoreListener | None = None,
        wakeups: Counter | None = None,
    ) -> None:
        self._store = store
        self._poll = poll_seconds
        self._listener = listener
        self._open: tuple[tuple[str, dt.date], ...] = ()
        self._streams: dict[str, set[Subscription]] = {}
        self._wakeups = wakeups or Counter("stream_wakeups", "", ("reason",))
        for reason in Wakeup:
            self._wakeups.inc(reason, amount=0)  # each series shown from the start
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def open_rounds(self) -> tuple[tuple[str, dt.date], ...]:
        """The open rounds as last read: (round id, reference date), oldest first."""
        return self._open

    @contextlib.contextmanager
    def subscribe(self, practice_id: str, fingerprint: str) -> Iterator[Subscription]:
        """A stream of ``practice_id`` under certificate ``fingerprint``, open for the block."""
        subscription = Subscription(practice_id, fingerprint)
        self._streams.setdefault(practice_id, set()).add(subscription)
        try:
            yield subscription
        finally:
            mine = self._streams[practice_id]
            mine.discard(subscription)
            if not mine:
                del self._streams[practice_id]

    def wake(self) -> None:
        """Wake every open stream: the open rounds changed."""
        woken = 0
        for subscriptions in self._streams.values():
            for subscription in subscriptions:
                subscription.woken.set()
                woken += 1
        self._wakeups.inc(Wakeup.ROUNDS, amount=woken)

    def _close_unserved(self, practice_id: str, record: PracticeRecord | None) -> None:
        """Close the practice's streams whose certificate ``record`` no longer serves."""
        for subscription in self._streams.get(practice_id, ()):
            if subscription.refusal is not None:
                continue  # already closing
            refusal = refusal_of(practice_id, subscription.fingerprint, record)
            if refusal is not None:
                subscription.refusal = refusal
                subscription.woken.set()
                self._wakeups.inc(Wakeup.NOT_SERVED)

    async def practice_changed(
        self, practice_id: str, record: PracticeRecord | None = None
    ) -> None:
        """A practice was revoked or enrolled again: every call and stream of it sees it now.

        The enrolment check's recent read is forgotten, and the practice's open streams
        whose certificate is no longer served are closed. ``record`` is the practice as
        it is now when the caller holds it; otherwise it is read (one query) only when
        this process holds a stream of it. Never raises: when the store cannot answer,
        the next poll's ``sweep`` closes the stream.
        """
        self._store.forget_practices()
        if practice_id not in self._streams:
            return
        if record is None:
            try:
                record = await asyncio.to_thread(self._store.practice, practice_id)
            except Exception as exc:
                log.warning("event=practice_changed_failed reason=%s", type(exc).__name__)
                return
        self._close_unserved(practice_id, record)

    async def sweep(self) -> None:
        """Close every open stream whose certificate is no longer served: one read at most."""
        if not self._streams:
            return
        records = await asyncio.to_thread(self._store.recent_practices, ENROLMENT_FRESH_SECONDS)
        for practice_id in list(self._streams):
            self._close_unserved(practice_id, records.get(practice_id))

    async def refresh(self) -> None:
        """Re-read the open rounds and wake subscribers when they changed."""
        now_open = tuple(await asyncio.to_thread(self._store.open_round_ids))
        if now_open != self._open:
            self._open = now_open
            self.wake()

    async def _logged(self, step: Callable[[], Awaitable[None]], what: str) -> None:
        try:
            await step()
        except Exception as exc:  # a store outage must not end announcements for good
            log.warning("event=%s_failed reason=%s", what, type(exc).__name__)

    async def _look(self) -> None:
        """The fallback: the open rounds, and every open stream's certificate, once."""
        await self._logged(self.refresh, "announce_refresh")
        await self._logged(self.sweep, "stream_sweep")

    async def _caught_up(self) -> None:
        """At the listener's (re)connection: whatever changed while it was not listening."""
        self._store.forget_practices()
        await self._look()

    async def _heard_of_rounds(self, payload: str) -> None:
        await self._logged(self.refresh, "announce_refresh")

    async def _poll_forever(self) -> None:
        while True:
            await self._look()
            await asyncio.sleep(self._poll)

    async def start(self) -> None:
        """Read the open rounds now and keep them fresh in the background."""
        await self.refresh()
        self._tasks.append(asyncio.create_task(self._poll_forever()))
        if self._listener is not None:
            handlers = {
                ROUNDS_CHANNEL: self._heard_of_rounds,
                PRACTICES_CHANNEL: self.practice_changed,
            }
            listening = self._listener.listen_forever(handlers, self._caught_up)
            self._tasks.append(asyncio.create_task(listening))

    async def stop(self) -> None:
        """Stop the background poller and the listener."""
        for task in self._tasks:
            await stop_task(task)
        self._tasks.clear()


class AgentServicer(AgentStudyMethods, agent_pb2_grpc.AgentServicer):
    """Serves enrolled practices; the caller's identity comes from its certificate."""

    def __init__(
        self,
        store: Store,
        ca: CoordinatorKeys,
        announcer: RoundAnnouncer,
        studies: StudyBook,
        check: rounds.DocumentCheck | None = None,
        step_seconds: float = 300.0,
        writer: GroupCommit | None = None,
    ) -> None:
        self._store = store
        self._writer = writer or GroupCommit(store)
        self._ca = ca
        self._announcer = announcer
        self._check = check
        self._studies = studies
        self._step_seconds = step_seconds

    @domain_errors
    async def WatchRounds(
        self, request: agent_pb2.WatchRoundsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[agent_pb2.RoundAnnouncement]:
        """Announce the open rounds, then each new one, until the agent hangs up.

        A practice revoked (or enrolled again elsewhere) loses its open stream: the
        announcer closes it (``RoundAnnouncer.practice_changed``).
        """
        practice_id, peer = calling_practice(), calling_peer()
        log.info("event=watching practice=%s", practice_id)
        sent: set[str] = set()
        with self._announcer.subscribe(practice_id, peer.fingerprint) as subscription:
            # Revoked between the call's check and the subscription: closed here.
            refused = await enrolment_refusal(self._store, peer)
            while refused is None:
                subscription.woken.clear()  # before reading, so no change is missed
                for round_id, as_of in self._announcer.open_rounds:
                    if round_id not in sent:
                        sent.add(round_id)
                        yield agent_pb2.RoundAnnouncement(
                            round_id=round_id, as_of=as_of.isoformat()
                        )
                await subscription.woken.wait()
                refused = subscription.refusal
        log.info("event=stream_closed practice=%s reason=not enrolled", practice_id)
        await context.abort(grpc.StatusCode.PERMISSION_DENIED, refused)

    @domain_errors
    async def ListOpenRounds(
        self, request: agent_pb2.ListOpenRoundsRequest, context: grpc.aio.ServicerContext
    ) -> agent_pb2.ListOpenRoundsResponse:
        """The rounds open now."""
        open_now = await asyncio.to_thread(self._store.open_round_ids)
        return agent_pb2.ListOpenRoundsResponse(
            rounds=[
                agent_pb2.RoundAnnouncement(round_id=r, as_of=a.isoformat()) for r, a in open_now
            ]
        )

    @domain_errors
    async def GetRound(
        self, request: agent_pb2.GetRoundRequest, context: grpc.aio.ServicerContext
    ) -> common_pb2.Round:
        """The signed round."""
        round_ = await asyncio.to_thread(self._store.round, request.round_id)
        if asks_standardised(round_) and not at_least(context, STANDARDISE_AGENT_VERSION):
            log.info(
                "event=round_refused practice=%s round=%s agent_version=%s reason=too old",
                calling_practice(),
                round_.round_id,
                reported_version(context),
            )
            raise RoundError(
                f"this round has definitions that need fedpeer-agent "
                f"{STANDARDISE_AGENT_VERSION} or newer: {UPGRADE}"
            )
        if not knows_signer(context):
            round_ = rounds.signed_by_ca(round_, rounds.ca_for_old_agents(self._ca))
        return wire.round_to_proto(round_)

    @domain_errors
    async def Submit(
        self, request: agent_pb2.SubmitRequest, context: grpc.aio.ServicerContext
    ) -> common_pb2.Receipt:
        """Verify and store the practice's signed release; the receipt only after the commit."""
        practice_id, sender = calling_practice(), calling_certificate()
        # Before anything is stored: an agent that cannot check this coordinator's receipt.
        old = None if knows_signer(context) else rounds.ca_for_old_agents(self._ca)
        signed = wire.release_from_proto(request)
        round_ = self._store.cached_round(request.round_id) or await asyncio.to_thread(
            self._store.round, request.round_id
        )
        # CPU only (a signature checked, the release checked, a receipt signed): on the
        # event loop, as a hop to a thread and back would cost more than it takes.
        pending = rounds.prepare_release(
            self._ca.signer, practice_id, sender, round_, signed, self._check
        )
        receipt = await self._writer.record(pending)
        submissions_log.log(
            logging.INFO,
            "submission",
            "event=submission practice=%s round=%s sha256=%s",
            practice_id,
            request.round_id,
            receipt.content_sha256[:16],
        )
        if old is not None:  # stored as the signing key signed it; sent as the CA signs
            receipt = rounds.signed_by_ca(receipt, old)
        return wire.receipt_to_proto(receipt)

    @domain_errors
    async def ReportRefusal(
        self, request: agent_pb2.RefusalRequest, context: grpc.aio.ServicerContext
    ) -> agent_pb2.RefusalResponse:
        """Record that the practice declines the round."""
        practice_id = calling_practice()
        at = await asyncio.to_thread(
            rounds.refuse, self._store, practice_id, request.round_id, request.reason
        )
        log.info("event=refusal practice=%s round=%s", practice_id, request.round_id)
        return agent_pb2.RefusalResponse(received_at=rounds.isoformat_z(at))

    @domain_errors
    async def ReportAwaitingApproval(
        self, request: agent_pb2.AwaitingApprovalRequest, context: grpc.aio.ServicerContext
    ) -> agent_pb2.AwaitingApprovalResponse:
        """Note that the practice's release waits for its own approval (no value comes)."""
        practice_id = calling_practice()
        await asyncio.to_thread(
            rounds.awaiting_approval, self._store, practice_id, request.round_id
        )
        log.info("event=awaiting_approval practice=%s round=%s", practice_id, request.round_id)
        return agent_pb2.AwaitingApprovalResponse()
