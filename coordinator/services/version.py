"""Which agents the coordinator talks to: none older than ``MINIMUM_AGENT_VERSION``.

Every call from an agent carries the metadata ``fedpeer-version`` (``fedpeer.channel``).
The v1 protocol only grows compatibly (``tests/test_proto_compat.py``), so an older agent
usually still works; when a change needs every practice on a newer agent, the
minimum here is raised and an older one is refused on every call of the Agent and
Enrolment services with FAILED_PRECONDITION, in words its log shows practice IT:
"this agent is fedpeer X; the coordinator needs at least Y: upgrade the agent".

Agents before 0.2.0 sent no version: a call without one is taken as 0.1.0. Health
checks, the admin and analyst services (the coordinator's own tools) are not checked.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

import grpc

from coordinator.services import before_call
from fedpeer.channel import UPGRADE, VERSION_HEADER

MINIMUM_AGENT_VERSION = "0.1.0"
# The first agent that checks a signing key's certificate (issue 10); older ones check
# rounds, receipts and studies against the CA key itself, so they are sent CA signatures.
SIGNER_AGENT_VERSION = "0.3.0"
# The first agent that reads a definition's ``standardise`` key; an older one cannot read a
# round that has one, and is told to upgrade when it asks for it (not left to fail alone).
STANDARDISE_AGENT_VERSION = "0.4.0"
UNREPORTED = "0.1.0"  # the last version that did not say
CHECKED_PREFIXES = ("/fedpeer.v1.Agent/", "/fedpeer.v1.Enrolment/")
_RELEASE = re.compile(r"(\d+)\.(\d+)(?:\.(\d+))?")


def release(version: str) -> tuple[int, int, int] | None:
    """(major, minor, micro) of a version such as ``0.2.0`` or ``0.3.0rc1``; None if none."""
    match = _RELEASE.match(version.strip())
    if match is None:
        return None
    major, minor, micro = match.groups()
    return int(major), int(minor), int(micro or 0)


def reported_version(context: grpc.aio.ServicerContext) -> str:
    """The version the calling agent reports (``UNREPORTED`` when it does not say)."""
    metadata = context.invocation_metadata() or ()
    return str(next((value for key, value in metadata if key == VERSION_HEADER), UNREPORTED))


def at_least(context: grpc.aio.ServicerContext, version: str) -> bool:
    """True when the calling agent is ``version`` or newer."""
    have, needed = release(reported_version(context)), release(version)
    return have is not None and needed is not None and have >= needed


def knows_signer(context: grpc.aio.ServicerContext) -> bool:
    """True when the calling agent checks a signing key's certificate (0.3.0 or newer)."""
    return at_least(context, SIGNER_AGENT_VERSION)


def refusal(reported: str | None, minimum: str) -> str | None:
    """Why an agent reporting ``reported`` is refused, or None when it is new enough."""
    needed = release(minimum)
    if needed is None:  # pragma: no cover - a constant of this module
        raise ValueError(f"not a version: {minimum!r}")
    if reported is None:
        shown, have = f"{UNREPORTED} or older (it does not say)", release(UNREPORTED)
    else:
        shown, have = reported, release(reported)
        if have is None:
            return (
                f"this agent reports its version as {reported!r}, which is not one; "
                f"the coordinator needs at least {minimum}: {UPGRADE}"
            )
    if have is not None and have >= needed:
        return None
    return f"this agent is fedpeer {shown}; the coordinator needs at least {minimum}: {UPGRADE}"


class VersionInterceptor(grpc.aio.ServerInterceptor):
    """Refuse calls from agents older than the minimum."""

    def __init__(self, minimum: str | None = None) -> None:
        self._minimum = minimum

    @property
    def minimum(self) -> str:
        """The oldest agent served: as given, else this module's minimum."""
        return self._minimum or MINIMUM_AGENT_VERSION

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        """Pass the call on, or refuse it when the agent is too old."""
        handler = await continuation(handler_call_details)
        method: str = handler_call_details.method  # type: ignore[attr-defined]
        if handler is None or not method.startswith(CHECKED_PREFIXES):
            return handler
        metadata = handler_call_details.invocation_metadata or ()  # type: ignore[attr-defined]
        reported = next((value for key, value in metadata if key == VERSION_HEADER), None)
        why = refusal(reported, self.minimum)
        if why is None:
            return handler

        async def refuse(context: grpc.aio.ServicerContext) -> None:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, why)

        return before_call(handler, refuse)
