"""Odd requests to every RPC, over the real wire: no status detail says more than it should.

Every method of every service (Agent, Admin, Analyst, Enrolment) gets a request whose text
fields carry a marker shaped like an injection, one that is not protobuf at all, and
(on the enrolment port) one far too large. Whatever each answers, its detail never holds
the marker, SQL, the store's path, a traceback or an exception's class; and the caller
without a certificate is logged through the rate limit.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from _coordinator_helpers import AS_OF, DEFINITIONS, admin, start
from google.protobuf import descriptor

from agent.client import enrol
from agent.identity_store import AgentIdentity
from coordinator.server import RunningCoordinator
from coordinator.services.log_limit import BURST, PER_SECOND, RateLimitedLog
from fedpeer.channel import secure_channel
from fedpeer.v1 import admin_pb2, agent_pb2, enrolment_pb2

MARKER = "ECHO-7f3a'; SELECT * FROM practices; --"
FORBIDDEN = (
    "ECHO-7f3a",
    "SELECT",
    "INSERT",
    "sqlite",
    "postgres",
    "Traceback",
    "Unexpected",
    "Exception",
    "Error:",
    "/tmp",
    "coordinator.sqlite",
)
NOT_PROTOBUF = b"\xff\xff\xff\xff\x0f" + b"\x00" * 64


def _filled(message_type: descriptor.Descriptor, module: object, depth: int = 0) -> object:
    """An instance of a request type with every text field set to the marker, recursively."""
    cls = getattr(module, message_type.name, None)
    if cls is None:  # a type from common.proto, reached through a field
        from fedpeer.v1 import common_pb2

        cls = getattr(common_pb2, message_type.name)
    message = cls()
    for field in message_type.fields:
        repeated = field.is_repeated
        if field.type == field.TYPE_STRING:
            value: object = MARKER
        elif field.type == field.TYPE_BYTES:
            value = MARKER.encode()
        elif field.type == field.TYPE_MESSAGE and depth < 2:
            value = _filled(field.message_type, module, depth + 1)
            if repeated:
                getattr(message, field.name).append(value)
            else:
                getattr(message, field.name).CopyFrom(value)
            continue
        else:
            continue
        if repeated:
            getattr(message, field.name).append(value)
        else:
            setattr(message, field.name, value)
    return message


def _methods(module: object) -> list[tuple[str, descriptor.MethodDescriptor]]:
    file = module.DESCRIPTOR  # type: ignore[attr-defined]
    return [
        (f"/{service.full_name}/{method.name}", method)
        for service in file.services_by_name.values()
        for method in service.methods
    ]


async def _call(
    channel: grpc.aio.Channel, path: str, streaming: bool, payload: bytes
) -> grpc.aio.AioRpcError | None:
    identity = lambda data: data  # noqa: E731  # the bytes go as they are
    try:
        if streaming:
            call = channel.unary_stream(path, identity, identity)(payload, timeout=5)
            async for _ in call:
                break
            call.cancel()
        else:
            await channel.unary_unary(path, identity, identity)(payload, timeout=10)
    except grpc.aio.AioRpcError as exc:
        return exc
    return None


def _clean(where: str, error: grpc.aio.AioRpcError | None) -> None:
    if error is None:
        return
    details = error.details() or ""
    for word in FORBIDDEN:
        assert word not in details, f"{where} ({error.code().name}): {details}"
    assert len(details) <= 400, where


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[tuple[RunningCoordinator, AgentIdentity]]:
    running = await start(tmp_path / "coord")
    async with admin(running) as adm:
        token, _ = await adm.invite("Q1", "Quirk Lane", "North")
        await adm.start_round(AS_OF, DEFINITIONS)
    identity = await enrol(running.address, running.enrol_port, token, tmp_path / "Q1")
    yield running, identity
    await running.stop(0)


async def test_no_rpc_echoes_odd_input_or_internal_detail(
    site: tuple[RunningCoordinator, AgentIdentity],
) -> None:
    running, identity = site
    home = running.home
    practice = secure_channel(
        identity.coordinator, identity.ca_pem, identity.key_pem, identity.cert_pem
    )
    admin_channel = secure_channel(
        running.address,
        home.ca_cert.read_bytes(),
        home.admin_key.read_bytes(),
        home.admin_cert.read_bytes(),
    )
    open_channel = secure_channel(running.enrol_address, running.ca.cert_pem)
    plan = [
        (practice, agent_pb2),
        (admin_channel, admin_pb2),
        (open_channel, enrolment_pb2),
    ]
    refused = 0
    async with practice, admin_channel, open_channel:
        for channel, module in plan:
            for path, method in _methods(module):
                odd = _filled(method.input_type, module).SerializeToString()  # type: ignore[attr-defined]
                for name, payload in (("marker", odd), ("not protobuf", NOT_PROTOBUF)):
                    error = await _call(channel, path, method.server_streaming, payload)
                    _clean(f"{path} {name}", error)
                    refused += error is not None
        big = enrolment_pb2.EnrolRequest(token=MARKER, csr_pem=MARKER * 200_000)
        error = await _call(
            open_channel, "/fedpeer.v1.Enrolment/Enrol", False, big.SerializeToString()
        )
        assert error is not None and error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        _clean("Enrol oversized", error)
    assert refused > 20  # most of the odd requests are refused, each checked above


async def test_refusals_on_the_open_port_are_logged_through_a_rate_limit(
    site: tuple[RunningCoordinator, AgentIdentity], caplog: pytest.LogCaptureFixture
) -> None:
    running, _ = site
    caplog.set_level(logging.INFO, logger="fedpeer.coordinator")
    async with secure_channel(running.enrol_address, running.ca.cert_pem) as channel:
        enrol_call = channel.unary_unary(
            "/fedpeer.v1.Enrolment/Enrol",
            enrolment_pb2.EnrolRequest.SerializeToString,
            enrolment_pb2.EnrolResponse.FromString,
        )
        started = time.monotonic()
        for i in range(3 * BURST):
            with pytest.raises(grpc.aio.AioRpcError):
                await enrol_call(enrolment_pb2.EnrolRequest(token=f"fp1.x.{i}", csr_pem="no"))
        took = time.monotonic() - started
    lines = [r.getMessage() for r in caplog.records if "event=refused" in r.getMessage()]
    # At most a burst, plus what the bucket refilled while the calls ran: with no limit
    # all 3 x BURST refusals would be logged. At least one line: refusals are not silent.
    assert 1 <= len(lines) <= BURST + 1 + int(took * PER_SECOND)
    assert len(lines) < 3 * BURST
    assert all(MARKER not in line and "fp1.x" not in line for line in lines)


def test_the_rate_limit_counts_what_it_held_back(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    limited = RateLimitedLog(logging.getLogger("fedpeer.test"), burst=3, clock=lambda: now[0])
    caplog.set_level(logging.INFO, logger="fedpeer.test")
    sent = [limited.log(logging.INFO, "tls", "event=refused n=%d", i) for i in range(10)]
    assert sent == [True] * 3 + [False] * 7
    assert limited.log(logging.INFO, "other", "event=other")  # each reason has its own bucket
    now[0] = 1.0  # one token back
    assert limited.log(logging.INFO, "tls", "event=refused n=%d", 10)
    messages = [r.getMessage() for r in caplog.records]
    assert messages[-1] == "event=refused n=10 (7 similar messages suppressed)"
    assert len(messages) == 5


def test_every_rpc_of_every_servicer_goes_through_the_one_error_table() -> None:
    from coordinator.services.admin import AdminServicer
    from coordinator.services.agent import AgentServicer
    from coordinator.services.enrolment import EnrolmentServicer
    from coordinator.services.studies import AnalystServicer

    servicers = {
        "fedpeer.v1.Agent": AgentServicer,
        "fedpeer.v1.Admin": AdminServicer,
        "fedpeer.v1.Analyst": AnalystServicer,
        "fedpeer.v1.Enrolment": EnrolmentServicer,
    }
    checked = 0
    for module in (agent_pb2, admin_pb2, enrolment_pb2):
        for path, _ in _methods(module):
            service, name = path.strip("/").split("/")
            method = getattr(servicers[service], name)
            assert getattr(method, "__wrapped__", None) is not None, path  # domain_errors
            checked += 1
    assert checked > 25
