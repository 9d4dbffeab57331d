"""The Agent servicer: round announcements, rounds, submissions and refusals."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import AsyncIterator

import grpc

from coordinator import rounds
from coordinator.announce import RoundListener
from coordinator.background import stop_task
from coordinator.ca import CoordinatorKeys
from coordinator.group_commit import GroupCommit
from coordinator.services import domain_errors, transient
from coordinator.services.auth import (
    calling_certificate,
    calling_peer,
    calling_practice,
    enrolment_refusal,
)
from coordinator.services.studies import AgentStudyMethods
from coordinator.services.version import knows_signer
from coordinator.store import Store
from coordinator.studies import StudyBook
from fedpeer import wire
from fedpeer.v1 import agent_pb2, agent_pb2_grpc, common_pb2

log = logging.getLogger("fedpeer.coordinator")


class RoundAnnouncer:
    """The open rounds, kept fresh by one poller per process, and a wake-up on change.

    One background task reads the store every ``poll_seconds`` instead of every
    subscribed agent querying it; a round opened here is announced at once via
    ``refresh``. A round opened or closed by another process sharing a PostgreSQL store
    is announced at once too when a ``listener`` (coordinator.announce) calls ``refresh``
    on its notification, and at the next poll otherwise.
    """

    def __init__(
        self, store: Store, poll_seconds: float = 5.0, listener: RoundListener | None = None
    ) -> None:
        self._store = store
        self._poll = poll_seconds
        self._listener = listener
        self._open: tuple[tuple[str, dt.date], ...] = ()
        self._changed = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def open_rounds(self) -> tuple[tuple[str, dt.date], ...]:
        """The open rounds as last read: (round id, reference date), oldest first."""
        return self._open

    @property
    def changed(self) -> asyncio.Event:
        """An event set at the next change; take it before reading ``open_rounds``."""
        return self._changed

    def wake(self) -> None:
        """Wake every subscriber without a change of rounds: each re-checks its practice."""
        event, self._changed = self._changed, asyncio.Event()
        event.set()

    async def refresh(self) -> None:
        """Re-read the open rounds and wake subscribers when they changed."""
        now_open = tuple(await asyncio.to_thread(self._store.open_round_ids))
        if now_open != self._open:
            self._open = now_open
            self.wake()

    async def _refresh_or_log(self) -> None:
        try:
            await self.refresh()
        except Exception as exc:  # a store outage must not end announcements for good
            log.warning("event=announce_refresh_failed reason=%s", type(exc).__name__)

    async def _poll_forever(self) -> None:
        while True:
            await self._refresh_or_log()
            await asyncio.sleep(self._poll)

    async def start(self) -> None:
        """Read the open rounds now and keep them fresh in the background."""
        await self.refresh()
        self._tasks.append(asyncio.create_task(self._poll_forever()))
        if self._listener is not None:
            self._tasks.append(
                asyncio.create_task(self._listener.listen_forever(self._refresh_or_log))
            )

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
        recheck_seconds: float = 10.0,
        writer: GroupCommit | None = None,
    ) -> None:
        self._store = store
        self._writer = writer or GroupCommit(store)
        self._ca = ca
        self._announcer = announcer
        self._check = check
        self._studies = studies
        self._step_seconds = step_seconds
        self._recheck_seconds = recheck_seconds  # how soon a revoked stream is closed

    @domain_errors
    async def WatchRounds(
        self, request: agent_pb2.WatchRoundsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[agent_pb2.RoundAnnouncement]:
        """Announce the open rounds, then each new one, until the agent hangs up."""
        practice_id, peer = calling_practice(), calling_peer()
        log.info("event=watching practice=%s", practice_id)
        sent: set[str] = set()
        while True:
            changed = self._announcer.changed  # before reading, so no change is missed
            for round_id, as_of in self._announcer.open_rounds:
                if round_id not in sent:
                    sent.add(round_id)
                    yield agent_pb2.RoundAnnouncement(round_id=round_id, as_of=as_of.isoformat())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), self._recheck_seconds)
            # A practice revoked (or enrolled again elsewhere) loses its open stream too.
            try:
                refused = await enrolment_refusal(self._store, peer)
            except Exception as exc:
                if not transient(exc):
                    raise
                continue  # the store is down for a moment: keep the stream, look again later
            if refused is not None:
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
        log.info(
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
