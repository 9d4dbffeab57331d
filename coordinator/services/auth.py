"""Who is calling: the verified client certificate decides, never a message field.

The mutual-TLS port already refuses a client whose certificate this CA did not issue.
This interceptor adds what TLS cannot know: which role a method needs (``practice`` for
the Agent service, ``admin`` for Admin) and whether the practice is still enrolled with
this very certificate (re-enrolment replaces it; revocation refuses it).
"""

from __future__ import annotations

import asyncio
import contextvars
import datetime as dt
import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import grpc
from cryptography import x509

from coordinator.admins import admin_seen
from coordinator.services import (
    WrappedOnce,
    abort_unavailable,
    before_call,
    refusals_log,
    transient,
)
from coordinator.store import PracticeRecord, Store
from fedpeer.errors import IdentityError
from fedpeer.identity import (
    ROLE_ADMIN,
    ROLE_ANALYST,
    ROLE_PRACTICE,
    cert_from_pem,
    fingerprint,
    subject_of,
)

T = TypeVar("T")
AGENT_PREFIX = "/fedpeer.v1.Agent/"
ADMIN_PREFIX = "/fedpeer.v1.Admin/"
ANALYST_PREFIX = "/fedpeer.v1.Analyst/"
OPEN_PREFIXES = ("/grpc.health.v1.Health/",)
ENROLMENT_FRESH_SECONDS = 2.0  # not one database read per call under thousands of agents


@dataclass(frozen=True)
class Peer:
    """The authenticated caller: its certificate's CN and role, and the certificate."""

    name: str
    role: str
    certificate: x509.Certificate
    fingerprint: str


current_peer: contextvars.ContextVar[Peer] = contextvars.ContextVar("current_peer")


def calling_practice() -> str:
    """The practice id of the authenticated caller of an Agent method."""
    peer = current_peer.get()
    if peer.role != ROLE_PRACTICE:  # pragma: no cover - the interceptor admits only practices
        raise IdentityError("this call needs a practice certificate")
    return peer.name


def calling_peer() -> Peer:
    """The authenticated caller of any method."""
    return current_peer.get()


def calling_certificate() -> x509.Certificate:
    """The verified client certificate of the caller: the key its signatures must verify under."""
    return current_peer.get().certificate


def _peer(context: grpc.aio.ServicerContext) -> Peer:
    pems = context.auth_context().get("x509_pem_cert") or []
    if not pems:
        raise IdentityError("no client certificate was presented")
    return _peer_of(bytes(pems[0]))


@functools.lru_cache(maxsize=16_384)  # an agent's every call presents the same certificate
def _peer_of(pem: bytes) -> Peer:
    cert = cert_from_pem(pem)
    # The names from a parse of their own: the certificate object keeps its subject once
    # read (about 2 KB), and the certificate is kept here for every agent.
    subject = subject_of(cert_from_pem(pem))
    return Peer(subject.common_name, subject.role, cert, fingerprint(cert))


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def refusal_of(
    practice_id: str, certificate_fingerprint: str, record: PracticeRecord | None
) -> str | None:
    """Why a practice's certificate is not served (revoked, replaced), given its record; or None."""
    if record is None or record.cert_fingerprint != certificate_fingerprint:
        return f"practice {practice_id}: this certificate is not the one enrolled"
    if record.revoked:
        return f"practice {practice_id} has been revoked"
    return None


def not_enrolled(store: Store, peer: Peer) -> str | None:
    """Why a practice's certificate is no longer served (revoked, replaced), or None.

    Checked at every call against what the store read at most ``ENROLMENT_FRESH_SECONDS``
    ago, all practices in one query. A revocation forgets that read at once, through this
    process or, sharing a PostgreSQL store, through another (its notification); the age
    bounds only a notification missed while the listener reconnected.
    """
    return refusal_of(
        peer.name, peer.fingerprint, store.practice(peer.name, max_age=ENROLMENT_FRESH_SECONDS)
    )


async def enrolment_refusal(store: Store, peer: Peer) -> str | None:
    """``not_enrolled`` from memory when the store's read is fresh, else in a thread."""
    if store.practices_fresh(ENROLMENT_FRESH_SECONDS):
        return not_enrolled(store, peer)
    return await asyncio.to_thread(not_enrolled, store, peer)


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """Admit each call only with the certificate role its service needs."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._wrapped = WrappedOnce(self._checked)

    async def _refuse(
        self, context: grpc.aio.ServicerContext, code: grpc.StatusCode, why: str, reason: str
    ) -> None:
        # A revoked or replaced certificate may keep calling: one line per kind, rate-limited.
        refusals_log.log(logging.INFO, f"auth:{reason}", "event=refused reason=%s", reason)
        await context.abort(code, why)

    async def _ask(
        self,
        method: str,
        context: grpc.aio.ServicerContext,
        question: Callable[..., T],
        *args: object,
    ) -> T:
        """``question(store, *args)`` in a thread; UNAVAILABLE while the store cannot say."""
        try:
            return await asyncio.to_thread(question, self._store, *args)
        except Exception as exc:
            if not transient(exc):
                raise
            # The caller tries again, as for any call's store.
            await abort_unavailable(context, method, exc)
            raise  # pragma: no cover - abort_unavailable raises

    async def _authorise(self, method: str, context: grpc.aio.ServicerContext) -> Peer:
        try:
            peer = _peer(context)
        except IdentityError as exc:
            await self._refuse(context, grpc.StatusCode.UNAUTHENTICATED, str(exc), "no_cert")
        if peer.role == ROLE_ADMIN and await self._ask(
            method, context, admin_seen, peer.fingerprint, peer.name, _now()
        ):
            await self._refuse(
                context,
                grpc.StatusCode.PERMISSION_DENIED,
                "this admin certificate has been revoked",
                "admin_revoked",
            )
        if method.startswith(ADMIN_PREFIX):
            if peer.role != ROLE_ADMIN:
                await context.abort(grpc.StatusCode.PERMISSION_DENIED, "this needs an admin cert")
            return peer
        if method.startswith(ANALYST_PREFIX):
            if peer.role not in (ROLE_ANALYST, ROLE_ADMIN):
                await context.abort(
                    grpc.StatusCode.PERMISSION_DENIED, "this needs an analyst or admin cert"
                )
            return peer
        if peer.role != ROLE_PRACTICE:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, "this needs a practice cert")
        try:
            refused = await enrolment_refusal(self._store, peer)
        except Exception as exc:
            if not transient(exc):
                raise
            # The store cannot say now: the agent tries again, as for any call's store.
            await abort_unavailable(context, method, exc)
        if refused is not None:
            await self._refuse(context, grpc.StatusCode.PERMISSION_DENIED, refused, "not_enrolled")
        return peer

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        """Wrap the method's handler with the certificate check."""
        handler = await continuation(handler_call_details)
        method: str = handler_call_details.method  # type: ignore[attr-defined]
        if handler is None or method.startswith(OPEN_PREFIXES):
            return handler
        if not method.startswith((AGENT_PREFIX, ADMIN_PREFIX, ANALYST_PREFIX)):  # pragma: no cover
            return None  # type: ignore[return-value]  # unknown services get UNIMPLEMENTED
        return self._wrapped(method, handler)

    def _checked(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        """``handler`` with the certificate check of ``method`` in front."""
        authorise = self._authorise

        async def check(context: grpc.aio.ServicerContext) -> None:
            current_peer.set(await authorise(method, context))

        return before_call(handler, check)
