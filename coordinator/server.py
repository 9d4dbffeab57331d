"""The coordinator's gRPC servers, usable in-process (tests, demo) or via ``serve``.

Two ports, because enrolment must work before an agent holds a certificate while
everything else must not:

- the **enrolment port** uses server-only TLS and serves only Enrolment and health;
  a token (single use, hashed at rest, pinning the CA fingerprint) is the credential;
- the **main port** requires a client certificate issued by this CA
  (``require_client_auth=True``) and serves Agent, Admin and health; the interceptor in
  ``coordinator.services.auth`` then requires the role each service needs.

gRPC (grpc.aio) binds the same services to every port of a server, hence two servers.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import gc
import logging
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from coordinator.announce import store_listener
from coordinator.ca import CoordinatorHome, CoordinatorKeys, load_keys
from coordinator.group_commit import GroupCommit
from coordinator.metrics import CoordinatorMetrics, MetricsInterceptor, MetricsServer
from coordinator.release_check import check_document
from coordinator.round_clock import RoundClock
from coordinator.rounds import DocumentCheck
from coordinator.services import WellFormedInterceptor
from coordinator.services.admin import AdminServicer
from coordinator.services.agent import AgentServicer, RoundAnnouncer
from coordinator.services.auth import AuthInterceptor
from coordinator.services.enrolment import EnrolmentServicer
from coordinator.services.studies import AnalystServicer, StudyClock
from coordinator.services.version import VersionInterceptor
from coordinator.store import Store
from coordinator.studies import StudyBook
from fedpeer.channel import (
    ENROLMENT_MAX_CONCURRENT_RPCS,
    enrolment_server_options,
    server_credentials,
    server_options,
)
from fedpeer.errors import StoreError
from fedpeer.identity import cert_from_pem, subject_of
from fedpeer.policy import DisclosurePolicy
from fedpeer.v1 import admin_pb2_grpc, agent_pb2_grpc, enrolment_pb2_grpc

log = logging.getLogger("fedpeer.coordinator")
SERVICE_NAMES = (
    "fedpeer.v1.Agent",
    "fedpeer.v1.Admin",
    "fedpeer.v1.Analyst",
    "fedpeer.v1.Enrolment",
)


@dataclass(frozen=True)
class CoordinatorConfig:
    """Where the coordinator's home is and where it listens."""

    home: Path
    host: str = "127.0.0.1"
    port: int = 0
    enrol_port: int = 0
    db_url: str | None = None  # SQLite in the home when None
    announce_poll_seconds: float = 5.0
    grace_seconds: float = 5.0
    check_releases: bool = True  # check every release against its round (release_check)
    network_policy: DisclosurePolicy | None = None  # from the home's network.toml when None
    study_step_seconds: float = 300.0  # a study stage's time before it moves on without some
    study_tick_seconds: float = 1.0  # how often the study clock looks
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = None  # no /metrics endpoint when None; 0 picks a free port
    round_tick_seconds: float = 5.0  # how often the round clock looks (deadlines, schedule)


@dataclass
class RunningCoordinator:
    """A started coordinator: its bound ports, store and CA, and how to stop it."""

    host: str
    port: int
    enrol_port: int
    store: Store
    ca: CoordinatorKeys
    home: CoordinatorHome
    _servers: list[grpc.aio.Server] = field(default_factory=list, repr=False)
    _health: health.aio.HealthServicer | None = field(default=None, repr=False)
    _announcer: RoundAnnouncer | None = field(default=None, repr=False)
    _clock: StudyClock | None = field(default=None, repr=False)
    _writer: GroupCommit | None = field(default=None, repr=False)
    metrics_port: int | None = None  # where /metrics is served, when it is
    _metrics_server: MetricsServer | None = field(default=None, repr=False)
    round_clock: RoundClock | None = field(default=None, repr=False)

    @property
    def address(self) -> str:
        """HOST:PORT of the mutual-TLS port."""
        return f"{self.host}:{self.port}"

    @property
    def enrol_address(self) -> str:
        """HOST:PORT of the enrolment port."""
        return f"{self.host}:{self.enrol_port}"

    async def stop(self, grace: float | None = 5.0) -> None:
        """Stop taking calls, let calls in flight finish for ``grace`` seconds, close."""
        if self._health is not None:
            await self._health.enter_graceful_shutdown()
        await asyncio.gather(*(s.stop(grace) for s in self._servers))
        self._servers.clear()
        if self._metrics_server is not None:
            await self._metrics_server.stop()
        if self._announcer is not None:
            await self._announcer.stop()
        if self._clock is not None:
            await self._clock.stop()
        if self.round_clock is not None:
            await self.round_clock.stop()
        if self._writer is not None:
            await self._writer.stop()
        self.store.close()
        log.info("event=stopped")

    async def wait(self) -> None:
        """Wait until the servers stop."""
        await asyncio.gather(*(s.wait_for_termination() for s in self._servers))


def _bind(server: grpc.aio.Server, host: str, port: int, creds: grpc.ServerCredentials) -> int:
    target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        bound = server.add_secure_port(target, creds)
    except RuntimeError:  # newer grpcio raises where older ones returned 0
        bound = 0
    if bound == 0:
        raise StoreError(f"cannot listen on {host}:{port}: is another process using it?")
    return bound


async def start_coordinator(
    config: CoordinatorConfig,
    document_check: DocumentCheck | None = None,
    round_clock_now: Callable[[], dt.datetime] | None = None,
) -> RunningCoordinator:
    """Start both servers on ``config``'s ports (0 picks free ones) and return them.

    ``round_clock_now`` is the round clock's time (the real one when None): a test's seam.
    """
    home = CoordinatorHome(config.home)
    ca = load_keys(home)  # the CA key only when it can be opened: see ``ca.load_keys``
    store = Store(config.db_url or home.database)
    key_pem = home.server_key.read_bytes()
    # Send the CA with the leaf: an enrolling agent finds it in the handshake and checks it
    # against the fingerprint in its token before it trusts anything.
    cert_pem = home.server_cert.read_bytes() + ca.cert_pem
    metrics = CoordinatorMetrics(store)
    announcer = RoundAnnouncer(
        store, config.announce_poll_seconds, store_listener(store), metrics.stream_wakeups
    )
    writer = GroupCommit(store)
    network_policy = config.network_policy or home.network_policy()
    check = document_check or (check_document if config.check_releases else None)

    book = StudyBook(store, network_policy)
    step = config.study_step_seconds
    clock = StudyClock(book, step, config.study_tick_seconds)
    round_clock = RoundClock(
        store,
        ca,
        network_policy,
        announcer.refresh,
        config.round_tick_seconds,
        round_clock_now,
        book,
    )

    health_servicer = health.aio.HealthServicer()
    counted = MetricsInterceptor(metrics)  # outermost: it sees refusals by the others too
    main = grpc.aio.server(
        options=server_options(),
        interceptors=[
            counted,
            WellFormedInterceptor(),
            VersionInterceptor(),
            AuthInterceptor(store),
        ],
    )
    agent_pb2_grpc.add_AgentServicer_to_server(
        AgentServicer(store, ca, announcer, book, check, step, writer),
        main,
    )
    admin_servicer = AdminServicer(store, ca, announcer, network_policy, book, step)
    admin_pb2_grpc.add_AdminServicer_to_server(admin_servicer, main)
    admin_pb2_grpc.add_AnalystServicer_to_server(AnalystServicer(book), main)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, main)
    port = _bind(
        main,
        config.host,
        config.port,
        server_credentials(key_pem, cert_pem, ca.cert_pem, require_client_auth=True),
    )

    enrol = grpc.aio.server(
        options=enrolment_server_options(),
        interceptors=[counted, WellFormedInterceptor(), VersionInterceptor()],
        maximum_concurrent_rpcs=ENROLMENT_MAX_CONCURRENT_RPCS,
    )
    enrolment_pb2_grpc.add_EnrolmentServicer_to_server(
        EnrolmentServicer(store, ca, network_policy, announcer.practice_changed), enrol
    )
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, enrol)
    enrol_port = _bind(enrol, config.host, config.enrol_port, server_credentials(key_pem, cert_pem))
    # Agents reach the server by the name its certificate carries (``init --host``).
    public = subject_of(cert_from_pem(home.server_cert.read_bytes())).common_name
    admin_servicer.agent_address = f"[{public}]:{port}" if ":" in public else f"{public}:{port}"
    admin_servicer.enrol_port = enrol_port

    metrics_server, metrics_port = None, None
    if config.metrics_port is not None:
        metrics_server = MetricsServer(metrics)
        try:
            metrics_port = await metrics_server.start(config.metrics_host, config.metrics_port)
        except StoreError:
            store.close()
            raise
    await announcer.start()
    await clock.start()
    await round_clock.start()
    await main.start()
    await enrol.start()
    for name in ("", *SERVICE_NAMES):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    log.info(
        "event=started host=%s port=%d enrol_port=%d metrics=%s store=%s",
        config.host,
        port,
        enrol_port,
        "off" if metrics_port is None else f"{config.metrics_host}:{metrics_port}",
        store.engine.url.render_as_string(hide_password=True),
    )
    return RunningCoordinator(
        config.host,
        port,
        enrol_port,
        store,
        ca,
        home,
        [main, enrol],
        health_servicer,
        announcer,
        clock,
        _writer=writer,
        metrics_port=metrics_port,
        _metrics_server=metrics_server,
        round_clock=round_clock,
    )


# A served process allocates a few objects per call and keeps what it started with: the
# start-up objects are frozen out of every collection, and the youngest generation is
# collected less often (one collection per ~10,000 allocations, not 700). Measured with
# py-spy on bench/load.py (2,000 agents): the collector's share of the coordinator's busy
# samples fell from 7.7% to 3.5%.
GC_YOUNG_THRESHOLD = 10_000


def settle_garbage_collector() -> None:
    """Freeze what start-up made and collect the young generation less often."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)


async def serve(
    config: CoordinatorConfig,
    on_started: Callable[[RunningCoordinator], None] | None = None,
) -> None:
    """Run the coordinator until SIGINT or SIGTERM, then shut down gracefully."""
    running = await start_coordinator(config)
    settle_garbage_collector()
    home = CoordinatorHome(config.home)
    home.address_file.write_text(f"{running.address}\n{running.enrol_address}\n")
    if on_started is not None:
        on_started(running)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        # Windows event loops have no signal handlers; Ctrl+C still raises there.
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await running.stop(config.grace_seconds)
