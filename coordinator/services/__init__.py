"""Thin gRPC servicers: convert with ``fedpeer.wire``, call a plain function, map errors.

Domain errors become gRPC status codes here and nowhere else, so the agent and the CLI
can turn each code back into a sentence a person can act on.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc

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

# Most specific first: the first matching class decides the code.
STATUS_FOR: tuple[tuple[type[FedpeerError], grpc.StatusCode], ...] = (
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


def status_for(exc: FedpeerError) -> grpc.StatusCode:
    """The gRPC status code for a domain error."""
    for kind, code in STATUS_FOR:
        if isinstance(exc, kind):
            return code
    return grpc.StatusCode.FAILED_PRECONDITION


def domain_errors(method: F) -> F:
    """Abort the call with the mapped status when the method raises a FedpeerError."""

    @functools.wraps(method)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            return await method(self, request, context)
        except FedpeerError as exc:
            await context.abort(status_for(exc), str(exc))

    return wrapper  # type: ignore[return-value]
