"""Thin gRPC servicers: convert with ``fedpeer.wire``, call a plain function, map errors.

Domain errors become gRPC status codes here and nowhere else, so the agent and the CLI
can turn each code back into a sentence a person can act on. Two more rules, for what
is not a domain error:

- a failure that passes (the store locked, restarting or refusing connections, its
  pool exhausted, the process out of file handles: ``transient``) is UNAVAILABLE,
  which the agent retries with backoff: never a rejection;
- anything else is INTERNAL with a reference to the coordinator's log, never the
  exception's own text (it may hold SQL, the database's host or a file path).
"""

from __future__ import annotations

import errno
import functools
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc
import sqlalchemy as sa

from coordinator.plausibility import ImplausibleRelease
from fedpeer.channel import STORE_UNAVAILABLE
from fedpeer.collection import RoundClosed, SubmissionConflict, UnknownRound
from fedpeer.errors import (
    DefinitionError,
    DisclosureViolation,
    EnrolmentError,
    FedpeerError,
    IdentityError,
    PolicyError,
    RoundError,
    StoreError,
)
from fedpeer.studies import StudyError

log = logging.getLogger("fedpeer.coordinator")

# Most specific first: the first matching class decides the code.
STATUS_FOR: tuple[tuple[type[FedpeerError], grpc.StatusCode], ...] = (
    (ImplausibleRelease, grpc.StatusCode.INVALID_ARGUMENT),
    (UnknownRound, grpc.StatusCode.NOT_FOUND),
    (RoundClosed, grpc.StatusCode.FAILED_PRECONDITION),
    (SubmissionConflict, grpc.StatusCode.ALREADY_EXISTS),
    (RoundError, grpc.StatusCode.FAILED_PRECONDITION),
    (DisclosureViolation, grpc.StatusCode.FAILED_PRECONDITION),
    (PolicyError, grpc.StatusCode.INVALID_ARGUMENT),
    (DefinitionError, grpc.StatusCode.INVALID_ARGUMENT),
    (EnrolmentError, grpc.StatusCode.PERMISSION_DENIED),
    (IdentityError, grpc.StatusCode.PERMISSION_DENIED),
    (StoreError, grpc.StatusCode.FAILED_PRECONDITION),
    (StudyError, grpc.StatusCode.FAILED_PRECONDITION),
)

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


def before_call(
    handler: grpc.RpcMethodHandler,
    check: Callable[[grpc.aio.ServicerContext], Awaitable[None]],
) -> grpc.RpcMethodHandler:
    """``handler`` with ``check(context)`` awaited before the call; ``check`` may abort it.

    The one way the server's interceptors put a check in front of a method (who is
    calling, which agent version), for unary and response-streaming methods alike.
    """
    serde = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary is not None:
        inner = handler.unary_unary

        async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
            await check(context)
            return await inner(request, context)

        return grpc.unary_unary_rpc_method_handler(unary, **serde)
    if handler.unary_stream is not None:
        inner_stream = handler.unary_stream

        async def stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            await check(context)
            async for item in inner_stream(request, context):
                yield item

        return grpc.unary_stream_rpc_method_handler(stream, **serde)
    raise NotImplementedError("streaming requests")  # pragma: no cover - none exist


def status_for(exc: FedpeerError) -> grpc.StatusCode:
    """The gRPC status code for a domain error."""
    for kind, code in STATUS_FOR:
        if isinstance(exc, kind):
            return code
    return grpc.StatusCode.FAILED_PRECONDITION


def transient(exc: BaseException) -> bool:
    """Whether ``exc`` is a failure that passes, so the call is worth trying again."""
    if isinstance(exc, sa.exc.OperationalError | sa.exc.TimeoutError):
        return True  # locked, restarting, refusing connections; the pool's wait ran out
    if isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated:
        return True  # the connection was cut under the query: the next one is fresh
    return isinstance(exc, OSError) and exc.errno in (errno.EMFILE, errno.ENFILE)


async def abort_unavailable(
    context: grpc.aio.ServicerContext, where: str, exc: BaseException
) -> None:
    """End the call with UNAVAILABLE for a transient failure, naming only its type."""
    reason = type(getattr(exc, "orig", None) or exc).__name__  # the driver's class, if any
    log.warning("event=store_unavailable method=%s reason=%s", where, reason)
    await context.abort(grpc.StatusCode.UNAVAILABLE, STORE_UNAVAILABLE)


def domain_errors(method: F) -> F:
    """Abort the call with the mapped status: a FedpeerError's own words, else in general."""

    @functools.wraps(method)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            return await method(self, request, context)
        except grpc.aio.AbortError:
            raise
        except FedpeerError as exc:
            await context.abort(status_for(exc), str(exc))
        except Exception as exc:
            if transient(exc):
                await abort_unavailable(context, method.__name__, exc)  # raises AbortError
            reference = uuid.uuid4().hex[:12]
            log.exception("event=internal_error method=%s reference=%s", method.__name__, reference)
            await context.abort(
                grpc.StatusCode.INTERNAL,
                f"the coordinator failed on this request (reference {reference} in its log)",
            )

    return wrapper  # type: ignore[return-value]
