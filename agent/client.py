"""The agent's side of the wire: enrol once, then answer rounds over mutual TLS.

The agent opens every connection (outbound only). It learns of rounds from a
server stream it holds open, checks the coordinator's signature on each round against
the CA pinned at enrolment, asks an injected ``prepare`` for the released rows (or a
refusal), writes the answer to its outbox, sends it, and marks it acknowledged only when
a signed receipt for exactly that content comes back.

``prepare(round) -> ReleaseDocument | Refusal`` is the seam where the real extract ->
engine -> disclosure pipeline plugs in; it may be sync (run in a thread) or async. It
never sees the network. The agent signs the document's canonical bytes with the
practice's own key, stores them in the outbox, and only then sends them.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

import grpc

from agent.identity_store import AgentHome, AgentIdentity
from agent.outbox import AnswerKind, Delivery, Outbox, OutboxEntry
from agent.pipeline import AwaitingApproval
from agent.retry import RetriesExhausted, RetryPolicy, is_transient
from fedpeer import wire
from fedpeer.canonical import sha256_hex
from fedpeer.channel import secure_channel, split_address, translate
from fedpeer.collection import (
    Receipt,
    Refusal,
    ReleaseDocument,
    Round,
    SignedRelease,
)
from fedpeer.errors import (
    CoordinatorUnreachable,
    EnrolmentError,
    FedpeerError,
    IdentityError,
)
from fedpeer.identity import (
    ROLE_PRACTICE,
    cert_from_pem,
    cert_to_pem,
    fingerprint,
    generate_key,
    key_from_pem,
    key_to_pem,
    make_csr,
    parse_token,
    subject_of,
    verify_issued_by,
)
from fedpeer.policy import DisclosurePolicy
from fedpeer.signing import sign_bytes, verify_receipt, verify_round
from fedpeer.v1 import agent_pb2, agent_pb2_grpc, common_pb2, enrolment_pb2, enrolment_pb2_grpc

if TYPE_CHECKING:  # the study worker reads extracts; the client itself never does
    from agent.studies import StudyWorker

log = logging.getLogger("fedpeer.agent")

PrepareResult = ReleaseDocument | Refusal
Prepare = Callable[[Round], PrepareResult | Awaitable[PrepareResult]]
# Called once a receipt for a round is verified: (round id, receipt, coordinator address).
Acknowledged = Callable[[str, Receipt, str], None]
# What changes when the practice's input changes (say, an extract's files' times and
# sizes): a round that failed on a broken extract is tried again once it has changed.
Stamp = Callable[[], object]
# The coordinator failed without saying the release is wrong: keep it and send it again
# at the next run, never drop it (only a refusal of the release itself rejects it).
# Transient failures (``agent.retry``) are retried at once, with backoff, before that.
NOT_A_VERDICT = (
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.ABORTED,
    grpc.StatusCode.CANCELLED,
)


class Status(StrEnum):
    """What happened to one round when the agent answered it."""

    SUBMITTED = "submitted"  # a release, receipted just now
    REFUSED = "refused"  # the practice's refusal, recorded just now
    ALREADY = "already"  # answered before: the outbox holds its fate
    REJECTED = "rejected"  # the coordinator refused the answer for good
    # The agent tries these again while it follows: the practice approved meanwhile, or
    # its extract was fixed.
    AWAITING = "awaiting approval"
    FAILED = "failed"


# Outcomes in which an answer (a release or a refusal) reached the coordinator just now.
SENT = frozenset({Status.SUBMITTED, Status.REFUSED})
CALL_TIMEOUT = 30.0


# Enrolment


def fetch_ca_from_handshake(host: str, port: int, ca_fingerprint: str) -> bytes:
    """The CA certificate the server sends in its TLS handshake, if its fingerprint matches.

    Nothing is trusted yet, so the handshake is unverified; the fingerprint from the
    token is what makes the returned certificate trustworthy.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["h2"])
    try:
        with (
            socket.create_connection((host, port), timeout=10) as raw,
            context.wrap_socket(raw, server_hostname=host) as tls,
        ):
            # CPython 3.10-3.12 expose the peer chain only on the private object.
            chain = tls._sslobj.get_unverified_chain()  # type: ignore[union-attr]
            pems = [c.public_bytes() for c in chain or ()]  # PEM by default
    except OSError as exc:
        raise CoordinatorUnreachable(
            f"cannot reach the coordinator's enrolment port at {host}:{port}: is it running, "
            f"and does the firewall allow outbound connections to port {port}?"
        ) from exc
    for pem in pems:
        cert = cert_from_pem(pem.encode() if isinstance(pem, str) else pem)
        if fingerprint(cert) == ca_fingerprint:
            return cert_to_pem(cert)
    raise EnrolmentError(
        f"the server at {host}:{port} does not hold the CA named in the token: "
        "check the address, or ask the coordinator for a new token"
    )


async def enrol(
    coordinator: str,
    enrol_port: int,
    token: str,
    home: Path,
    server_name: str | None = None,
) -> AgentIdentity:
    """Enrol with a one-time token: make a key, get a certificate, save both in ``home``."""
    agent_home = AgentHome(home)
    if agent_home.is_enrolled():
        raise EnrolmentError(f"{home} already holds an enrolled agent; use another directory")
    ca_fp, _ = parse_token(token)
    host, _port = split_address(coordinator)
    ca_pem = await asyncio.to_thread(fetch_ca_from_handshake, host, enrol_port, ca_fp)
    key = generate_key()
    enrol_address = f"{host}:{enrol_port}" if ":" not in host else f"[{host}]:{enrol_port}"
    async with secure_channel(enrol_address, ca_pem, server_name=server_name) as channel:
        stub = enrolment_pb2_grpc.EnrolmentStub(channel)
        try:
            response = await stub.Enrol(
                enrolment_pb2.EnrolRequest(token=token, csr_pem=make_csr(key).decode()),
                timeout=CALL_TIMEOUT,
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.PERMISSION_DENIED:
                raise EnrolmentError(exc.details() or "enrolment refused") from None
            raise translate(exc, enrol_address) from None
    cert = cert_from_pem(response.certificate_pem)
    ca_cert = cert_from_pem(ca_pem)
    verify_issued_by(cert, ca_cert)
    if cert.public_key() != key.public_key() or subject_of(cert).role != ROLE_PRACTICE:
        raise EnrolmentError("the coordinator returned a certificate for another key or role")
    identity = AgentIdentity(
        practice_id=response.practice_id,
        coordinator=coordinator,
        key_pem=key_to_pem(key),
        cert_pem=response.certificate_pem.encode(),
        ca_pem=ca_pem,
        server_name=server_name,
        network_policy=wire.policy_from_proto(response.network_policy)
        if response.HasField("network_policy")
        else DisclosurePolicy(),
    )
    agent_home.save(identity)
    log.info("event=enrolled practice=%s", identity.practice_id)
    return identity


# Rounds


@dataclass(frozen=True)
class Outcome:
    """What happened to one round: submitted, refused, already, rejected, awaiting approval,
    or failed."""

    round_id: str
    status: Status
    receipt: Receipt | None = None
    detail: str = ""


class Agent:
    """An enrolled agent answering rounds with ``prepare``."""

    def __init__(
        self,
        home: Path,
        prepare: Prepare,
        *,
        max_attempts: int = 5,
        backoff_seconds: float = 0.5,
        max_backoff_seconds: float = 30.0,
        on_acknowledged: Acknowledged | None = None,
        studies: StudyWorker | None = None,
        study_poll_seconds: float = 30.0,
        retry: RetryPolicy | None = None,
        stamp: Stamp | None = None,
    ) -> None:
        self.home = AgentHome(home)
        self._studies = studies
        self._study_poll = study_poll_seconds
        self._on_acknowledged = on_acknowledged
        self.identity = self.home.load()
        self.outbox = Outbox(self.home.outbox_path)
        self._prepare = prepare
        self._backoff = backoff_seconds
        self._retry = retry or RetryPolicy(backoff_seconds, max_backoff_seconds, max_attempts)
        self._stamp = stamp
        # Rounds to try again while following: round id -> (outcome, input stamp then).
        self._again: dict[str, tuple[Status, object]] = {}

    def _channel(self) -> grpc.aio.Channel:
        i = self.identity
        return secure_channel(i.coordinator, i.ca_pem, i.key_pem, i.cert_pem, i.server_name)

    async def _retrying(self, attempt: Callable[[], Awaitable[list[Outcome]]]) -> list[Outcome]:
        try:
            return await self._retry.run(attempt)
        except (grpc.aio.AioRpcError, RetriesExhausted) as exc:
            raise self._unreachable(exc) from None

    def _unreachable(self, exc: BaseException) -> FedpeerError:
        """The user's error for a call that failed for good (after any retries)."""
        last = exc.last if isinstance(exc, RetriesExhausted) else exc
        if isinstance(last, grpc.aio.AioRpcError):
            return translate(last, self.identity.coordinator, probe=True)
        return CoordinatorUnreachable(
            f"cannot reach the coordinator at {self.identity.coordinator}: {last}"
        )

    async def run_once(self) -> list[Outcome]:
        """Resend what the outbox holds, answer every open round, then return."""

        async def attempt() -> list[Outcome]:
            async with self._channel() as channel:
                stub = agent_pb2_grpc.AgentStub(channel)
                outcomes = await self._flush(stub)
                listed = await stub.ListOpenRounds(
                    agent_pb2.ListOpenRoundsRequest(), timeout=CALL_TIMEOUT
                )
                for announcement in listed.rounds:
                    outcomes.append(await self.handle_round(stub, announcement.round_id))
                if self._studies is not None:
                    await self._studies.run(stub, self.identity)
                return outcomes

        return await self._retrying(attempt)

    async def resend(self) -> list[Outcome]:
        """Send again what the outbox holds as pending, and nothing else."""

        async def attempt() -> list[Outcome]:
            async with self._channel() as channel:
                return await self._flush(agent_pb2_grpc.AgentStub(channel))

        return await self._retrying(attempt)

    async def run_forever(self, stop: asyncio.Event | None = None) -> None:
        """Hold the round subscription open, answering rounds as they open, until ``stop``."""
        stop = stop or asyncio.Event()
        failures = 0
        while not stop.is_set():
            try:
                async with self._channel() as channel:
                    stub = agent_pb2_grpc.AgentStub(channel)
                    await self._flush(stub)
                    watch = stub.WatchRounds(agent_pb2.WatchRoundsRequest())
                    stopper = asyncio.create_task(stop.wait())
                    studying = asyncio.create_task(self._periodic(stub))
                    try:
                        await self._follow(stub, watch, stopper)
                    finally:
                        stopper.cancel()
                        studying.cancel()
                        watch.cancel()
                failures = 0
                if not stop.is_set():
                    # The coordinator ended the stream (a restart, a load balancer): pause
                    # briefly so a misbehaving server cannot make the agent spin.
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), self._backoff)
            except (grpc.aio.AioRpcError, RetriesExhausted) as exc:
                error = self._unreachable(exc)
                # A server shutting down may cancel the stream rather than drop it.
                given_up = isinstance(exc, RetriesExhausted)
                if (
                    not given_up
                    and not is_transient(exc)
                    and exc.code() != grpc.StatusCode.CANCELLED
                ):
                    raise error from None
                failures += 1
                delay = self._retry.delay(failures)
                log.warning("event=disconnected wait=%.1fs reason=%s", delay, error)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)

    async def _periodic(self, stub: agent_pb2_grpc.AgentStub) -> None:
        """Every ``study_poll_seconds`` while connected: resend what is still pending (a
        store that was down has come back), answer the rounds that were waiting for the
        practice's approval or failed on an extract since changed, and take the due
        study steps."""
        while True:
            try:
                if self.outbox.entries("pending"):
                    await self._flush(stub)
                await self._try_again(stub)
                if self._studies is not None:
                    await self._studies.run(stub, self.identity)
            except (grpc.aio.AioRpcError, RetriesExhausted) as exc:
                log.warning("event=periodic_failed reason=%s", self._unreachable(exc))
            await asyncio.sleep(self._study_poll)

    async def _follow(
        self,
        stub: agent_pb2_grpc.AgentStub,
        watch: grpc.aio.UnaryStreamCall,
        stopper: asyncio.Task[bool],
    ) -> None:
        reader = watch.__aiter__()
        while True:
            nxt = asyncio.ensure_future(reader.__anext__())
            done, _ = await asyncio.wait({nxt, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if stopper in done:
                nxt.cancel()
                return
            try:
                announcement = nxt.result()
            except StopAsyncIteration:
                return
            try:
                await self.handle_round(stub, announcement.round_id)
            except grpc.aio.AioRpcError as exc:
                if is_transient(exc):
                    raise
                error = translate(exc, self.identity.coordinator)
                if isinstance(error, IdentityError):
                    raise error from None
                log.error("event=round_failed round=%s reason=%s", announcement.round_id, error)
            except FedpeerError as exc:
                # One bad round (unverifiable, refused by prepare's errors) must not stop
                # the agent answering the next; the reason is logged, never patient data.
                log.error("event=round_failed round=%s reason=%s", announcement.round_id, exc)

    async def _flush(self, stub: agent_pb2_grpc.AgentStub) -> list[Outcome]:
        return [await self._send(stub, e) for e in self.outbox.entries("pending")]

    async def handle_round(self, stub: agent_pb2_grpc.AgentStub, round_id: str) -> Outcome:
        """Answer one round: verify it, prepare, store in the outbox, send, record receipt."""
        entry = self.outbox.get(round_id)
        if entry is not None:
            if entry.state in (Delivery.ACKNOWLEDGED, Delivery.REJECTED):
                return Outcome(round_id, Status.ALREADY, self._receipt(entry), entry.detail)
            return await self._send(stub, entry)
        message = await stub.GetRound(agent_pb2.GetRoundRequest(round_id=round_id), timeout=60)
        round_ = wire.round_from_proto(message)
        if round_.round_id != round_id:
            raise IdentityError(f"asked for round {round_id}, the coordinator sent another")
        verify_round(self.identity.ca_cert, round_)
        stamp = None if self._stamp is None else await asyncio.to_thread(self._stamp)
        try:
            result = await self._run_prepare(round_)
        except AwaitingApproval as exc:
            # Nothing is sent but the fact of waiting (never a value), so the coordinator
            # can show who waits; the round is tried again at each poll while following.
            self._again[round_id] = (Status.AWAITING, stamp)
            await self._tell_waiting(stub, round_id)
            return Outcome(round_id, Status.AWAITING, detail=str(exc))
        except FedpeerError as exc:
            # Nothing was stored or sent; the round is tried again when the input changes.
            self._again[round_id] = (Status.FAILED, stamp)
            log.error("event=prepare_failed round=%s reason=%s", round_id, exc)
            return Outcome(round_id, Status.FAILED, detail=f"{type(exc).__name__}: {exc}")
        self._again.pop(round_id, None)
        if isinstance(result, Refusal):
            payload = agent_pb2.RefusalRequest(round_id=round_id, reason=result.reason)
            data = payload.SerializeToString(deterministic=True)
            entry = self.outbox.put(
                round_id, AnswerKind.REFUSAL, sha256_hex(data), data, round_.deadline
            )
        else:
            if (result.practice_id, result.round_id) != (self.identity.practice_id, round_id):
                raise IdentityError(f"round {round_id}: prepare() made a release for another")
            document = result.to_bytes()
            key = key_from_pem(self.identity.key_pem)
            signed = SignedRelease(document, sign_bytes(key, document))
            data = wire.release_to_proto(round_id, signed).SerializeToString(deterministic=True)
            entry = self.outbox.put(
                round_id, AnswerKind.SUBMISSION, signed.digest, data, round_.deadline
            )
        return await self._send(stub, entry)

    async def _tell_waiting(self, stub: agent_pb2_grpc.AgentStub, round_id: str) -> None:
        request = agent_pb2.AwaitingApprovalRequest(round_id=round_id)
        try:
            await stub.ReportAwaitingApproval(request, timeout=CALL_TIMEOUT)
        except grpc.aio.AioRpcError as exc:
            # Only a courtesy to the coordinator's view (an older one lacks it): the round
            # itself is unaffected.
            log.warning("event=awaiting_not_told round=%s reason=%s", round_id, exc.code().name)

    async def _try_again(self, stub: agent_pb2_grpc.AgentStub) -> None:
        """Answer again the rounds awaiting approval, and those that failed on an input
        that has changed since."""
        if not self._again:
            return
        listed = await stub.ListOpenRounds(agent_pb2.ListOpenRoundsRequest(), timeout=CALL_TIMEOUT)
        still_open = {r.round_id for r in listed.rounds}
        for gone in set(self._again) - still_open:
            del self._again[gone]  # closed or cancelled meanwhile: nothing more to send
        stamp = None if self._stamp is None else await asyncio.to_thread(self._stamp)
        for round_id, (outcome, then) in list(self._again.items()):
            if outcome is Status.FAILED and stamp is not None and stamp == then:
                continue  # the same broken input would fail the same way
            try:
                result = await self.handle_round(stub, round_id)
            except FedpeerError as exc:
                log.error("event=round_failed round=%s reason=%s", round_id, exc)
                continue
            log.info("event=tried_again round=%s outcome=%s", round_id, result.status)

    async def _run_prepare(self, round_: Round) -> PrepareResult:
        if inspect.iscoroutinefunction(self._prepare):
            return await self._prepare(round_)
        # A synchronous pipeline reads the extract: keep it off the event loop so the
        # round subscription's keepalive pings carry on meanwhile.
        result = await asyncio.to_thread(self._prepare, round_)
        if inspect.isawaitable(result):
            return await result
        return result

    async def _send(self, stub: agent_pb2_grpc.AgentStub, entry: OutboxEntry) -> Outcome:
        try:
            if entry.kind == AnswerKind.REFUSAL:
                refusal = agent_pb2.RefusalRequest.FromString(entry.payload)
                answer = await self._retry.run(
                    lambda: stub.ReportRefusal(refusal, timeout=CALL_TIMEOUT), entry.deadline_at
                )
                self.outbox.acknowledge(entry.round_id, answer.SerializeToString(), "refused")
                return Outcome(entry.round_id, Status.REFUSED, detail=refusal.reason)
            request = agent_pb2.SubmitRequest.FromString(entry.payload)
            message = await self._retry.run(
                lambda: stub.Submit(request, timeout=CALL_TIMEOUT), entry.deadline_at
            )
        except grpc.aio.AioRpcError as exc:
            if is_transient(exc):
                raise  # not retried here (a caller outside retries): never a verdict
            error = translate(exc, self.identity.coordinator)
            if isinstance(error, IdentityError):
                raise error from None
            if exc.code() in NOT_A_VERDICT:
                log.warning("event=send_failed round=%s reason=%s", entry.round_id, error)
                return Outcome(entry.round_id, Status.FAILED, detail=str(error))
            # The coordinator will never take this answer (closed round, conflict): keep
            # the entry for the record, stop resending it.
            self.outbox.reject(entry.round_id, str(error))
            log.warning("event=rejected round=%s reason=%s", entry.round_id, error)
            return Outcome(entry.round_id, Status.REJECTED, detail=str(error))
        receipt = wire.receipt_from_proto(message)
        verify_receipt(self.identity.ca_cert, receipt)
        if (
            receipt.content_sha256 != entry.content_sha256
            or receipt.round_id != entry.round_id
            or receipt.practice_id != self.identity.practice_id
        ):
            raise IdentityError(f"round {entry.round_id}: the receipt is for other content")
        if self._on_acknowledged is not None:
            # Only now has it left the practice: the ledger and audit log say so, before the
            # outbox lets go of it. Should recording fail (a damaged audit log, a crash), the
            # entry stays pending and the resend gets the same receipt to record.
            self._on_acknowledged(entry.round_id, receipt, self.identity.coordinator)
        self.outbox.acknowledge(entry.round_id, message.SerializeToString())
        log.info("event=acknowledged round=%s submission=%s", entry.round_id, receipt.submission_id)
        return Outcome(entry.round_id, Status.SUBMITTED, receipt)

    @staticmethod
    def _receipt(entry: OutboxEntry) -> Receipt | None:
        if entry.kind != AnswerKind.SUBMISSION or not entry.receipt:
            return None
        return wire.receipt_from_proto(common_pb2.Receipt.FromString(entry.receipt))
