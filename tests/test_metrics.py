"""``/metrics``: a real coordinator in-process, real calls, the exposition read over HTTP."""

from __future__ import annotations

import asyncio
import math
import re
from pathlib import Path

import grpc
import pytest
from _coordinator_helpers import AS_OF, DEFINITIONS, admin, fixed_prepare, refusing_prepare

from agent.client import Agent, enrol
from coordinator.ca import init_home
from coordinator.metrics import Counter, Gauge, Histogram, format_value
from coordinator.server import CoordinatorConfig, start_coordinator
from coordinator.services import WrappedOnce
from fedpeer.channel import secure_channel
from fedpeer.collection import UnknownRound
from fedpeer.v1 import agent_pb2, agent_pb2_grpc

SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse_exposition(text: str) -> tuple[dict[str, str], Samples]:
    """The TYPE of each family and every sample, checking each line's syntax."""
    types: dict[str, str] = {}
    samples: Samples = {}
    assert text.endswith("\n")
    for line in text.splitlines():
        if line.startswith("# HELP "):
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in ("counter", "gauge", "histogram", "summary", "untyped")
            types[name] = kind
            continue
        match = SAMPLE.match(line)
        assert match, f"not a sample line: {line!r}"
        name, _, labels, value = match.groups()
        pairs = frozenset(LABEL.findall(labels or ""))
        key = (name, pairs)
        assert key not in samples, f"duplicate series {line!r}"
        samples[key] = float(value)
    return types, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def http_get(port: int, path: str, method: str = "GET") -> tuple[str, dict[str, str], str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    await writer.drain()
    data = await reader.read()
    writer.close()
    head, _, body = data.decode().partition("\r\n\r\n")
    status, *header_lines = head.split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines)}
    return status, headers, body


def test_exposition_format_of_each_kind() -> None:
    c = Counter("x_total", "Things.\nCounted.", ("kind",))
    c.inc('a"b\\c\nd')
    assert c.lines()[0] == "# HELP x_total Things.\\nCounted."
    assert c.lines()[2] == 'x_total{kind="a\\"b\\\\c\\nd"} 1.0'
    g = Gauge("g", "A gauge.")
    g.inc()
    g.dec()
    g.dec()
    assert g.lines()[-1] == "g -1.0"
    h = Histogram("h_seconds", "Time.", ("m",), buckets=(0.1, 1.0))
    for v in (0.05, 0.5, 0.5, 3.0):
        h.observe(v, "M")
    assert h.lines()[2:] == [
        'h_seconds_bucket{m="M",le="0.1"} 1',
        'h_seconds_bucket{m="M",le="1.0"} 3',
        'h_seconds_bucket{m="M",le="+Inf"} 4',
        'h_seconds_sum{m="M"} 4.05',
        'h_seconds_count{m="M"} 4',
    ]
    assert format_value(math.inf) == "+Inf" and format_value(math.nan) == "NaN"
    with pytest.raises(ValueError):
        c.inc()


async def test_metrics_endpoint_counts_calls_agents_rounds_and_answers(tmp_path: Path) -> None:
    home = tmp_path / "coord"
    init_home(home)
    config = CoordinatorConfig(home=home, announce_poll_seconds=0.2, metrics_port=0)
    running = await start_coordinator(config)
    assert running.metrics_port
    try:
        async with admin(running) as adm:
            agents = {}
            for pid, prepare in (
                ("A81001", fixed_prepare("A81001")),
                ("A81002", fixed_prepare("A81002")),
                ("A81003", refusing_prepare("not this month")),
            ):
                token, _ = await adm.invite(pid, f"Practice {pid}", "North")
                await enrol(running.address, running.enrol_port, token, tmp_path / pid)
                agents[pid] = Agent(tmp_path / pid, prepare)
            first = await adm.start_round(AS_OF, DEFINITIONS)
            await adm.start_round(AS_OF, DEFINITIONS)
            for agent in agents.values():
                await agent.run_once()
            await adm.close_round(first.round_id)
            with pytest.raises(UnknownRound):
                await adm.status("no-such-round")  # NOT_FOUND on the wire

            # Two agents hold the round stream open, as running agents do.
            identity = agents["A81001"].identity
            channel = secure_channel(
                identity.coordinator,
                identity.ca_pem,
                identity.key_pem,
                identity.cert_pem,
                identity.server_name,
            )
            stub = agent_pb2_grpc.AgentStub(channel)
            watches = [stub.WatchRounds(agent_pb2.WatchRoundsRequest()) for _ in range(2)]
            for watch in watches:
                await watch.read()  # an open round is announced at once
            _, samples = parse_exposition((await http_get(running.metrics_port, "/metrics"))[2])
            assert value(samples, "fedpeer_connected_agents") == 2
            for watch in watches:
                watch.cancel()
            await channel.close()

            # The practice certificate is refused on the admin service: counted too.
            channel = secure_channel(
                identity.coordinator,
                identity.ca_pem,
                identity.key_pem,
                identity.cert_pem,
                identity.server_name,
            )
            from fedpeer.v1 import admin_pb2, admin_pb2_grpc

            with pytest.raises(grpc.aio.AioRpcError) as denied:
                await admin_pb2_grpc.AdminStub(channel).ListPractices(
                    admin_pb2.ListPracticesRequest()
                )
            assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
            await channel.close()

        # The server counts a call as it unwinds, which may be just after the client has
        # its answer, and notices cancelled streams shortly after: wait until all are in.
        for _ in range(100):
            status, headers, body = await http_get(running.metrics_port, "/metrics")
            types, samples = parse_exposition(body)
            started = sum(v for (n, _), v in samples.items() if n == "grpc_server_started_total")
            handled = sum(v for (n, _), v in samples.items() if n == "grpc_server_handled_total")
            if started == handled:
                break
            await asyncio.sleep(0.05)
        assert status == "HTTP/1.1 200 OK"
        assert headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
        assert int(headers["content-length"]) == len(body.encode())
        assert value(samples, "fedpeer_connected_agents") == 0
        assert types["fedpeer_connected_agents"] == "gauge"
        assert types["grpc_server_handling_seconds"] == "histogram"
        assert types["grpc_server_handled_total"] == "counter"
        assert value(samples, "fedpeer_rounds", state="open") == 1
        assert value(samples, "fedpeer_rounds", state="closed") == 1
        assert value(samples, "fedpeer_store_up") == 1
        assert value(samples, "fedpeer_submissions_received_total") == 4  # 2 practices, 2 rounds
        assert value(samples, "fedpeer_refusals_received_total") == 2

        agent_ok = {"grpc_service": "fedpeer.v1.Agent", "grpc_type": "unary", "grpc_code": "OK"}
        assert value(samples, "grpc_server_handled_total", grpc_method="Submit", **agent_ok) == 4
        assert (
            value(samples, "grpc_server_handled_total", grpc_method="ReportRefusal", **agent_ok)
            == 2
        )
        enrolled = {"grpc_service": "fedpeer.v1.Enrolment", "grpc_method": "Enrol"}
        assert (
            value(
                samples, "grpc_server_handled_total", grpc_type="unary", grpc_code="OK", **enrolled
            )
            == 3
        )
        admin_call = {"grpc_service": "fedpeer.v1.Admin", "grpc_type": "unary"}
        assert (
            value(
                samples,
                "grpc_server_handled_total",
                grpc_method="GetRoundStatus",
                grpc_code="NOT_FOUND",
                **admin_call,
            )
            == 1
        )
        assert (
            value(
                samples,
                "grpc_server_handled_total",
                grpc_method="ListPractices",
                grpc_code="PERMISSION_DENIED",
                **admin_call,
            )
            == 1
        )
        watch_labels = {
            "grpc_service": "fedpeer.v1.Agent",
            "grpc_method": "WatchRounds",
            "grpc_type": "server_stream",
        }
        assert value(samples, "grpc_server_started_total", **watch_labels) == 2
        assert (
            value(samples, "grpc_server_handled_total", grpc_code="CANCELLED", **watch_labels) == 2
        )

        # The latency histogram: cumulative buckets ending in +Inf == _count.
        submit = {"grpc_service": "fedpeer.v1.Agent", "grpc_method": "Submit", "grpc_type": "unary"}
        assert value(samples, "grpc_server_handling_seconds_count", **submit) == 4
        assert value(samples, "grpc_server_handling_seconds_bucket", le="+Inf", **submit) == 4
        assert value(samples, "grpc_server_handling_seconds_sum", **submit) > 0
        buckets = sorted(
            (float(dict(labels)["le"]), v)
            for (name, labels), v in samples.items()
            if name == "grpc_server_handling_seconds_bucket"
            and {k: v for k, v in labels if k != "le"} == submit
        )
        assert [v for _, v in buckets] == sorted(v for _, v in buckets)

        # No practice id, round id or anything from a release in the exposition.
        for secret in (*agents, first.round_id):
            assert secret not in body

        assert (await http_get(running.metrics_port, "/other"))[0] == "HTTP/1.1 404 Not Found"
        assert (await http_get(running.metrics_port, "/metrics", "POST"))[0].startswith(
            "HTTP/1.1 405"
        )
    finally:
        await running.stop(0)
    with pytest.raises(OSError):
        await http_get(running.metrics_port, "/metrics")  # it stopped with the coordinator


async def test_metrics_are_off_unless_a_port_is_set(tmp_path: Path) -> None:
    init_home(tmp_path / "coord")
    running = await start_coordinator(CoordinatorConfig(home=tmp_path / "coord"))
    try:
        assert running.metrics_port is None
    finally:
        await running.stop(0)


def test_a_handler_is_wrapped_once_per_method_and_again_when_it_changes() -> None:
    """Interceptors wrap each method's handler once (a stream keeps its wrapping for its
    life), and anew when an inner interceptor handed over another (a refusal's)."""
    made: list[tuple[str, object]] = []

    def wrap(method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        made.append((method, handler))
        return grpc.unary_unary_rpc_method_handler(handler.unary_unary)

    async def one(request: object, context: object) -> object:
        return request

    async def other(request: object, context: object) -> object:
        return request

    wrapped = WrappedOnce(wrap)
    first = grpc.unary_unary_rpc_method_handler(one)
    second = grpc.unary_unary_rpc_method_handler(other)
    a = wrapped("/m.S/A", first)
    assert wrapped("/m.S/A", first) is a and len(made) == 1
    b = wrapped("/m.S/B", first)
    assert b is not a and len(made) == 2
    changed = wrapped("/m.S/A", second)
    assert changed is not a and changed.unary_unary is other and len(made) == 3
    assert wrapped("/m.S/A", second) is changed and len(made) == 3
