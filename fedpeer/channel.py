"""The one place that sets TLS, keepalive and message sizes for channels and servers.

Both sides import these factories so their options agree: the agent pings to keep its
long-lived round subscription alive through NAT and firewalls, and the server permits
those pings rather than closing the connection for "too many pings".
"""

from __future__ import annotations

import grpc

MAX_MESSAGE_BYTES = 32 * 1024 * 1024  # a round with many definitions, or a large submission
KEEPALIVE_MS = 30_000
KEEPALIVE_TIMEOUT_MS = 10_000

Options = list[tuple[str, int | str]]


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
    return grpc.aio.secure_channel(address, credentials, options=channel_options(server_name))
