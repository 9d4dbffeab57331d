"""Thin gRPC servicers: convert with ``fedpeer.wire``, call a plain function, map errors.

Domain errors become gRPC status codes here and nowhere else, so the agent and the CLI
can turn each code back into a sentence a person can act on. Two more rules, for what
is not a domain error:

- a failure that passes (the store locked, restarting or refusing connections, its
  pool exhausted, the process out of file handles: ``transient``) is UNAVAILABLE,
  which the agent retries with backoff: never a rejection;
- anything else is INTERNAL with a reference to the coordinator's log, never the
  exception's own text (it may hold SQL, the database's host or a file path);
- a status detail never carries text the caller sent (``unechoed``), and what callers
  without a certificate cause is logged through a rate limit (``log_limit``).
"""

from __future__ import annotations

import errno
import functools
import inspect
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc
import sqlalchemy as sa

from coordinator.plausibility import ImplausibleRelease
from coordinator.services.log_limit import RateLimitedLog
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
refusals_log = RateLimitedLog(log)
ECHO_MINIMUM = 4  # shorter texts ("1", "gp") are words of the message, not the caller's
DETAIL_LIMIT = 400  # characters of a status detail: a sentence, never a dump

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


# What a request deserialiser answers for bytes that are not the method's message: the
# call is then refused as INVALID_ARGUMENT by the wrapper, not by gRPC (whose UNKNOWN names
# the parser's exception, and whose log takes a traceback per call from anyone).
MALFORMED = object()
NOT_A_MESSAGE = "the request is not a valid message for this method"


def _guarded(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserializer is None:  # pragma: no cover - every fedpeer method has one
        return None

    def parse(data: bytes) -> Any:
        try:
            return deserializer(data)
        except Exception:  # DecodeError, or whatever else a parser of hostile bytes raises
            return MALFORMED

    return parse


def before_call(
    handler: grpc.RpcMethodHandler,
    check: Callable[[grpc.aio.ServicerContext], Awaitable[None]],
) -> grpc.RpcMethodHandler:
    """``handler`` with ``check(context)`` awaited before the call; ``check`` may abort it.

    The one way the server's interceptors put a check in front of a method (who is
    calling, which agent version), for unary and response-streaming methods alike. A
    request that does not parse is refused first, as INVALID_ARGUMENT.
    """
    serde = {
        "request_deserializer": _guarded(handler.request_deserializer),
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary is not None:
        inner = handler.unary_unary

        async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
            if request is MALFORMED:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, NOT_A_MESSAGE)
            await check(context)
            return await inner(request, context)

        return grpc.unary_unary_rpc_method_handler(unary, **serde)
    if handler.unary_stream is not None:
        inner_stream = handler.unary_stream

        async def stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            if request is MALFORMED:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, NOT_A_MESSAGE)
            await check(context)
            async for item in inner_stream(request, context):
                yield item

        return grpc.unary_stream_rpc_method_handler(stream, **serde)
    raise NotImplementedError("streaming requests")  # pragma: no cover - none exist


async def _no_check(context: grpc.aio.ServicerContext) -> None:
    return None


Wrap = Callable[[str, grpc.RpcMethodHandler], grpc.RpcMethodHandler]


class WrappedOnce:
    """Each method's handler as an interceptor wraps it, made once, not at every call.

    Wrapping costs a handler and a few closures per call, which a round stream keeps for
    its whole life (thousands of streams on one coordinator). The wrapping is kept by
    method and made again only when the handler it wrapped is not the one found now (an
    inner interceptor that wrapped anew, as a refusal does), so it holds one per method.
    """

    def __init__(self, wrap: Wrap) -> None:
        self._wrap = wrap
        self._by_method: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    def __call__(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        """``handler`` wrapped for ``method``."""
        found = self._by_method.get(method)
        if found is not None and found[0] is handler:
            return found[1]
        wrapped = self._wrap(method, handler)
        self._by_method[method] = (handler, wrapped)
        return wrapped


class WellFormedInterceptor(grpc.aio.ServerInterceptor):
    """Refuse a request that does not parse as INVALID_ARGUMENT, on every method and port."""

    def __init__(self) -> None:
        self._wrapped = WrappedOnce(lambda _method, handler: before_call(handler, _no_check))

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        """The method's handler, with its request parsed safely."""
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        return self._wrapped(handler_call_details.method, handler)  # type: ignore[attr-defined]


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
    # An outage meets every caller at once: one line per kind of failure, rate-limited.
    refusals_log.log(
        logging.WARNING,
        f"store:{reason}",
        "event=store_unavailable method=%s reason=%s",
        where,
        reason,
    )
    await context.abort(grpc.StatusCode.UNAVAILABLE, STORE_UNAVAILABLE)


def _given_texts(message: Any, found: set[str]) -> set[str]:
    """Every text a request carries (fields, nested messages, lists), as the caller sent it."""
    if not hasattr(message, "ListFields"):
        return found
    for field, value in message.ListFields():
        for item in value if field.is_repeated else (value,):
            if isinstance(item, bytes):
                item = item.decode("utf-8", "replace")
            if isinstance(item, str):
                found.add(item)
            else:
                _given_texts(item, found)
    return found


def unechoed(text: str, request: Any) -> str:
    """``text`` without any text the caller sent, and short: what a status detail may say.

    A refusal may name what it refused ("there is no round X"); the caller knows what it
    sent, and its text (a token, a CSR, a value, a crafted string) goes back to nobody.
    """
    for given in sorted(_given_texts(request, set()), key=len, reverse=True):
        if len(given) >= ECHO_MINIMUM:
            text = text.replace(given, "(as given)")
    return text if len(text) <= DETAIL_LIMIT else text[: DETAIL_LIMIT - 1] + "…"


def _unauthenticated(context: grpc.aio.ServicerContext) -> bool:
    return not context.auth_context().get("x509_pem_cert")


async def _abort(
    exc: Exception, method: str, request: Any, context: grpc.aio.ServicerContext
) -> None:
    """Abort the call for ``exc`` by the one table; log what the operator needs, once."""
    # Anyone can reach the enrolment port: what its callers cause is logged rate-limited.
    open_port = _unauthenticated(context)
    if isinstance(exc, FedpeerError):
        if open_port:
            kind = type(exc).__name__
            refusals_log.log(
                logging.INFO, f"{method}:{kind}", "event=refused method=%s reason=%s", method, kind
            )
        await context.abort(status_for(exc), unechoed(str(exc), request))
    if transient(exc):
        await abort_unavailable(context, method, exc)  # raises AbortError
    reference = uuid.uuid4().hex[:12]
    line = "event=internal_error method=%s reference=%s"
    if open_port:
        refusals_log.log(logging.ERROR, f"internal:{method}", line, method, reference, exc_info=exc)
    else:
        log.error(line, method, reference, exc_info=exc)
    await context.abort(
        grpc.StatusCode.INTERNAL,
        f"the coordinator failed on this request (reference {reference} in its log)",
    )


def domain_errors(method: F) -> F:
    """Abort the call with the mapped status: a FedpeerError's own words, else in general.

    Wraps unary methods and response-streaming ones (async generators) alike.
    """
    if inspect.isasyncgenfunction(method):

        @functools.wraps(method)
        async def streaming(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
            try:
                async for item in method(self, request, context):
                    yield item
            except grpc.aio.AbortError:
                raise
            except Exception as exc:
                await _abort(exc, method.__name__, request, context)

        return streaming  # type: ignore[return-value]

    @functools.wraps(method)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            return await method(self, request, context)
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            await _abort(exc, method.__name__, request, context)

    return wrapper  # type: ignore[return-value]
