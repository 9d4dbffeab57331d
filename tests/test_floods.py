"""Floods on the enrolment port, which anyone can reach, against a coordinator process.

The coordinator runs as ``fedpeer-coordinator serve`` in its own process, with the open
file limit its systemd unit sets, so its memory (RSS, from /proc) and its file
descriptors are its own. Two floods from the issue: 48 requests of 31 MiB, and 1,100
connections that never say a word. Through both, an enrolled agent's real submission is
stored, and the coordinator's memory stays within a bound with margin.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import select
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from _coordinator_helpers import AS_OF, DEFINITIONS, fixed_prepare
from _processes import Served, init_home, serving

from agent.client import Agent, enrol
from coordinator.admin_client import AdminClient
from coordinator.ca import CoordinatorHome
from fedpeer.channel import ENROLMENT_HANDSHAKE_MS, secure_channel

pytestmark = pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")

UNIT = Path(__file__).parent.parent / "deploy" / "systemd" / "fedpeer-coordinator.service"
LARGE = 31 * 1024 * 1024
LARGE_REQUESTS = 48
IDLE_CONNECTIONS = 1_100
# A coordinator with one agent sits near 100 MB; the issue saw 5.8 GB under the large
# requests. 200 MB over its own starting size leaves margin on a loaded machine and
# still fails loudly if a request's bytes were held.
RSS_GROWTH_BOUND = 200 * 1024 * 1024


def unit_nofile() -> int:
    """The LimitNOFILE the coordinator's systemd unit sets."""
    for line in UNIT.read_text().splitlines():
        if line.startswith("LimitNOFILE="):
            return int(line.partition("=")[2])
    raise AssertionError("the unit sets no LimitNOFILE")


def rss(pid: int) -> int:
    """A process's resident memory in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@pytest.fixture
def limited(tmp_path: Path) -> Iterator[Served]:
    """``fedpeer-coordinator serve`` with the open-file limit the systemd unit sets."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    limit = min(unit_nofile(), hard)

    def as_the_unit_sets() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))

    with serving(init_home(tmp_path / "coord"), preexec_fn=as_the_unit_sets) as served:
        yield served


async def _large_requests(enrol_address: str, ca_pem: bytes) -> list[grpc.StatusCode]:
    """48 enrolment requests of 31 MiB each, eight at a time; the codes they got."""
    payload = bytes(LARGE)  # not a message at all: refused on its size before its sense
    codes: list[grpc.StatusCode] = []
    async with secure_channel(enrol_address, ca_pem) as channel:  # it sends up to 32 MiB
        call = channel.unary_unary("/fedpeer.v1.Enrolment/Enrol", lambda b: b, lambda b: b)

        async def one() -> None:
            try:
                await call(payload, timeout=20)
                codes.append(grpc.StatusCode.OK)
            except grpc.aio.AioRpcError as exc:
                codes.append(exc.code())

        for _ in range(LARGE_REQUESTS // 8):
            await asyncio.gather(*(one() for _ in range(8)))
    return codes


def _idle_connections(host: str, port: int, count: int) -> list[socket.socket]:
    """``count`` TCP connections to the port that never start TLS."""
    held = []
    for _ in range(count):
        s = socket.create_connection((host, port), timeout=5)
        held.append(s)
    return held


def _failed_handshakes(host: str, enrol_port: int, address: str) -> None:
    """Connections that fail TLS: nonsense to the enrolment port, no certificate to the other."""
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    main_host, main_port = address.rsplit(":", 1)
    for _ in range(50):
        with socket.create_connection((host, enrol_port), timeout=5) as s:
            s.sendall(b"GET / HTTP/1.1\r\n\r\n")
        with (
            contextlib.suppress(OSError),
            socket.create_connection((main_host, int(main_port)), timeout=5) as s,
            context.wrap_socket(s) as tls,
        ):
            tls.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            tls.recv(1)


def _count_dropped(held: list[socket.socket]) -> int:
    """How many of the connections the server has closed (end of file, or a reset)."""
    poller = select.poll()
    for s in held:
        poller.register(s, select.POLLIN | select.POLLHUP | select.POLLERR)
    ready = {fd for fd, _ in poller.poll(1000)}
    dropped = 0
    for s in held:
        if s.fileno() not in ready:
            continue  # still open and silent
        try:
            dropped += s.recv(1, socket.MSG_DONTWAIT) == b""
        except ConnectionResetError:
            dropped += 1
        except BlockingIOError:
            pass
    return dropped


async def test_floods_on_the_enrolment_port_leave_agents_served(
    limited: Served, tmp_path: Path
) -> None:
    proc, home = limited.process, CoordinatorHome(limited.home)
    address, enrol_address = home.address_file.read_text().split()
    enrol_host, enrol_port = enrol_address.rsplit(":", 1)
    async with AdminClient(address, home) as adm:
        token, _ = await adm.invite("FL1", "Flood Lane", "East")
        round_ = await adm.start_round(AS_OF, DEFINITIONS)
    await enrol(address, int(enrol_port), token, tmp_path / "FL1")
    agent = Agent(tmp_path / "FL1", fixed_prepare("FL1"), max_attempts=3, backoff_seconds=0.5)
    before = rss(proc.pid)
    peak = before

    # 1. Large requests: refused at the size limit, none of their bytes kept.
    codes = await _large_requests(enrol_address, home.ca_cert.read_bytes())
    peak = max(peak, rss(proc.pid))
    assert len(codes) == LARGE_REQUESTS
    assert grpc.StatusCode.OK not in codes

    # 2. Idle connections, held open while the agent submits on the other port.
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # this test holds 1,100 sockets
    held = await asyncio.to_thread(_idle_connections, enrol_host, int(enrol_port), IDLE_CONNECTIONS)
    opened = time.monotonic()
    try:
        await asyncio.sleep(0.5)
        peak = max(peak, rss(proc.pid))
        (outcome,) = await agent.run_once()
        assert outcome.status == "submitted", outcome
        async with AdminClient(address, home) as adm:
            status = await adm.status(round_.round_id)
        assert [p.state for p in status.practices] == ["submitted"]
        # A new practice can still enrol on the flooded port.
        async with AdminClient(address, home) as adm:
            second, _ = await adm.invite("FL2", "Second Lane", "East")
        await enrol(address, int(enrol_port), second, tmp_path / "FL2")
        peak = max(peak, rss(proc.pid))
        # The silent connections are dropped once the handshake time is up.
        await asyncio.sleep(max(0, opened + ENROLMENT_HANDSHAKE_MS / 1000 + 1.5 - time.monotonic()))
        dropped = await asyncio.to_thread(_count_dropped, held)
        assert dropped == len(held), dropped
    finally:
        for s in held:
            s.close()
    assert proc.poll() is None
    # Failed handshakes from anyone (the silent connections, plus some that speak nonsense
    # or come without a certificate) leave no line each in the coordinator's log.
    await asyncio.to_thread(_failed_handshakes, enrol_host, int(enrol_port), address)
    await asyncio.sleep(0.5)
    if "GRPC_VERBOSITY" not in os.environ:  # else the run asked for gRPC's lines
        output = limited.output()
        assert output.count("andshake") <= 3, output[-2000:]
    assert peak - before < RSS_GROWTH_BOUND, (before, peak)
    async with secure_channel(enrol_address, home.ca_cert.read_bytes()) as channel:
        await asyncio.wait_for(channel.channel_ready(), 10)  # still serving
