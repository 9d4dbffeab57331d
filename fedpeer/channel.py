"""The one place that sets TLS, keepalive and message sizes for channels and servers.

Both sides import these factories so their options agree: the agent pings to keep its
long-lived round subscription alive through NAT and firewalls, and the server permits
those pings rather than closing the connection for "too many pings". Every call from a
channel made here says which fedpeer made it (metadata ``fedpeer-version``), so the
coordinator can refuse an agent too old for it (``coordinator.services.version``).
``translate`` turns a failed call into the domain error a person can act on, for every
client alike.
"""

from __future__ import annotations

import socket
from typing import Any

import grpc

from fedpeer import __version__
from fedpeer.collection import RoundClosed, SubmissionConflict, UnknownRound
from fedpeer.errors import (
    CoordinatorUnreachable,
    FedpeerError,
    IdentityError,
    RoundError,
    VersionError,
)

MAX_MESSAGE_BYTES = 32 * 1024 * 1024  # a round with many definitions, or a large submission
KEEPALIVE_MS = 30_000
KEEPALIVE_TIMEOUT_MS = 10_000

TLS_FRAME_BYTES = 4096
SERVER_QUEUE_SECONDS = 300  # longer than any agent's deadline: it times out first
SERVER_QUEUE_CALLS = 50_000  # a round stream and a call or two for each of 6,300 agents, twice

Options = list[tuple[str, int | str]]
VERSION_HEADER = "fedpeer-version"
# The coordinator's refusal of an old agent ends with these words (services.version).
UPGRADE = "upgrade the agent"


def channel_options(server_name: str | None = None) -> Options:
    """Client options: keepalive, message sizes, and an optional TLS name override."""
    options: Options = [
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.keepalive_time_ms", KEEPALIVE_MS),
        ("grpc.keepalive_timeout_ms", KEEPALIVE_TIMEOUT_MS),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
        # Reconnect quickly after a coordinator restart; the client adds its own backoff.
        ("grpc.initial_reconnect_backoff_ms", 500),
        ("grpc.max_reconnect_backoff_ms", 10_000),
    ]
    if server_name:
        options.append(("grpc.ssl_target_name_override", server_name))
    return options


def server_options() -> Options:
    """Server options matching ``channel_options``."""
    return [
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.keepalive_time_ms", KEEPALIVE_MS),
        ("grpc.keepalive_timeout_ms", KEEPALIVE_TIMEOUT_MS),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_recv_ping_interval_without_data_ms", KEEPALIVE_MS // 2),
        ("grpc.http2.max_ping_strikes", 0),
        ("grpc.so_reuseport", 0),
        # A new call waits in gRPC's queue until the server's event loop takes it up. By
        # default gRPC cancels some calls (CANCELLED) once 1,000 wait and all beyond
        # 3,000, and any waiting 30 s: a burst of thousands of agents at once must wait.
        ("grpc.server.max_pending_requests", SERVER_QUEUE_CALLS),
        ("grpc.server.max_pending_requests_hard_limit", SERVER_QUEUE_CALLS),
        ("grpc.server_max_unrequested_time_in_server", SERVER_QUEUE_SECONDS),
        # TLS records of at most 4 KiB: gRPC keeps a buffer of that size for each
        # connection (16 KiB by default). About 4 KiB less per agent connected
        # (docs/benchmarks.md); an agent's submission still fits in one record.
        ("grpc.tsi.max_frame_size", TLS_FRAME_BYTES),
    ]


# The enrolment port answers anyone (no client certificate): it takes small messages
# only (a certificate request is about 1 KiB), a few calls at a time, and drops a
# connection that idles or lingers, so that nobody can hold it or fill its memory.
ENROLMENT_MAX_MESSAGE_BYTES = 64 * 1024
ENROLMENT_MAX_CONCURRENT_RPCS = 32
ENROLMENT_IDLE_MS = 15_000
ENROLMENT_MAX_AGE_MS = 60_000
# A connection that has not finished its TLS handshake by then is dropped: otherwise a
# silent one holds a file descriptor for gRPC's default two minutes (issue 10's flood).
ENROLMENT_HANDSHAKE_MS = 5_000


def enrolment_server_options() -> Options:
    """Server options for the unauthenticated enrolment port."""
    return [
        ("grpc.max_send_message_length", ENROLMENT_MAX_MESSAGE_BYTES),
        ("grpc.max_receive_message_length", ENROLMENT_MAX_MESSAGE_BYTES),
        ("grpc.max_concurrent_streams", 4),
        ("grpc.max_connection_idle_ms", ENROLMENT_IDLE_MS),
        ("grpc.max_connection_age_ms", ENROLMENT_MAX_AGE_MS),
        ("grpc.max_connection_age_grace_ms", 5_000),
        ("grpc.server_handshake_timeout_ms", ENROLMENT_HANDSHAKE_MS),
        ("grpc.so_reuseport", 0),
    ]


def server_credentials(
    key_pem: bytes,
    cert_pem: bytes,
    client_ca_pem: bytes | None = None,
    require_client_auth: bool = False,
) -> grpc.ServerCredentials:
    """TLS for a server; with ``require_client_auth`` the client must present a CA cert."""
    return grpc.ssl_server_credentials(
        [(key_pem, cert_pem)],
        root_certificates=client_ca_pem,
        require_client_auth=require_client_auth,
    )


class VersionHeader(grpc.aio.UnaryUnaryClientInterceptor, grpc.aio.UnaryStreamClientInterceptor):
    """Adds ``fedpeer-version: <this fedpeer>`` to the metadata of every call."""

    def __init__(self, version: str = __version__) -> None:
        self.version = version

    def _with_version(self, details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
        metadata = grpc.aio.Metadata(*(details.metadata or ()))
        metadata[VERSION_HEADER] = self.version
        return details._replace(metadata=metadata)  # type: ignore[attr-defined]

    async def intercept_unary_unary(
        self, continuation: Any, client_call_details: grpc.aio.ClientCallDetails, request: Any
    ) -> Any:
        """Send a unary call with the version header."""
        return await continuation(self._with_version(client_call_details), request)

    async def intercept_unary_stream(
        self, continuation: Any, client_call_details: grpc.aio.ClientCallDetails, request: Any
    ) -> Any:
        """Open a server stream with the version header."""
        return await continuation(self._with_version(client_call_details), request)


def secure_channel(
    address: str,
    ca_pem: bytes,
    key_pem: bytes | None = None,
    cert_pem: bytes | None = None,
    server_name: str | None = None,
) -> grpc.aio.Channel:
    """An asyncio channel that trusts only ``ca_pem``; with a key and cert, mutual TLS."""
    credentials = grpc.ssl_channel_credentials(
        root_certificates=ca_pem, private_key=key_pem, certificate_chain=cert_pem
    )
    return grpc.aio.secure_channel(
        address,
        credentials,
        options=channel_options(server_name),
        interceptors=[VersionHeader()],
    )


# -- failures as sentences a person can act on (both sides' clients) --------------


def split_address(address: str) -> tuple[str, int]:
    """HOST and PORT of ``HOST:PORT`` (``[v6]:PORT`` too)."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise CoordinatorUnreachable(f"{address!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


# What the coordinator says when its store fails for a moment (UNAVAILABLE): retried.
STORE_UNAVAILABLE = "the coordinator's store is unavailable for a moment: try again shortly"


def translate(exc: grpc.aio.AioRpcError, address: str, probe: bool = False) -> FedpeerError:
    """A gRPC failure as the domain error a person can act on.

    With ``probe``, an UNAVAILABLE is told apart by a plain TCP connect: a server that
    accepts TCP but drops the TLS handshake is refusing this agent's certificate (gRPC
    reports only "Socket closed" then).
    """
    code, details = exc.code(), exc.details() or ""
    host, port = split_address(address)
    if code == grpc.StatusCode.UNAVAILABLE and details == STORE_UNAVAILABLE:
        return CoordinatorUnreachable(f"the coordinator at {address} says: {details}")
    if code == grpc.StatusCode.UNAVAILABLE:
        lowered = details.lower()
        handshake = "handshake" in lowered or "ssl" in lowered or "certificate" in lowered
        if handshake or (probe and _port_open(host, port)):
            return IdentityError(
                f"the TLS handshake with the coordinator at {address} failed: it does not "
                "accept this agent's certificate (from another CA, expired, or for another "
                "coordinator), or its certificate is not from the CA this agent enrolled "
                "with; re-enrol with a new token if this persists"
            )
        return CoordinatorUnreachable(
            f"cannot reach the coordinator at {host}:{port}: is it running, and does the "
            f"firewall allow outbound connections to port {port}?"
        )
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return CoordinatorUnreachable(f"the coordinator at {address} did not answer in time")
    if code in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED):
        return IdentityError(f"the coordinator refused this agent: {details}")
    if code == grpc.StatusCode.NOT_FOUND:
        return UnknownRound(details)
    if code == grpc.StatusCode.ALREADY_EXISTS:
        return SubmissionConflict(details)
    if code == grpc.StatusCode.FAILED_PRECONDITION and details.endswith(UPGRADE):
        return VersionError(details)
    if code == grpc.StatusCode.FAILED_PRECONDITION and "closed" in details:
        return RoundClosed(details)
    return RoundError(f"the coordinator refused the request ({code.name}): {details}")
