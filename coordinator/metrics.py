"""Prometheus metrics of a running coordinator, served as text on ``/metrics``.

A small HTTP endpoint on its own port (``metrics_host``, ``metrics_port``), off unless a
port is configured. It serves the Prometheus text exposition format (version 0.0.4),
written here in a few lines rather than taken from a dependency:

- ``grpc_server_started_total``, ``grpc_server_handled_total`` and
  ``grpc_server_handling_seconds``: every call on both gRPC ports by service, method, type
  and status code, counted by ``MetricsInterceptor`` (the names and labels that
  go-grpc-prometheus and py-grpc-prometheus use, so existing dashboards work);
- ``fedpeer_connected_agents``: agents holding a ``WatchRounds`` stream open;
- ``fedpeer_submissions_received_total``, ``fedpeer_refusals_received_total``: answers
  the coordinator acknowledged since it started;
- ``fedpeer_stream_wakeups_total``: round streams woken, by ``reason`` (``rounds``: the
  open rounds changed; ``not_served``: the practice was revoked or enrolled again, and
  only its streams are woken, to close);
- ``fedpeer_rounds``: rounds by state, read from the store at each scrape, and
  ``fedpeer_store_up`` (0 when that read failed).

Labels name services, methods, codes and states only: never a practice, a round or
anything from a release.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import Any

import grpc

from coordinator.round_states import RoundState
from coordinator.services import WrappedOnce
from coordinator.store import Store
from fedpeer.errors import StoreError

log = logging.getLogger("fedpeer.coordinator")
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
WATCH_METHOD = "/fedpeer.v1.Agent/WatchRounds"
SUBMIT_METHOD = "/fedpeer.v1.Agent/Submit"
REFUSAL_METHOD = "/fedpeer.v1.Agent/ReportRefusal"
ROUND_STATES = tuple(state.value for state in RoundState)  # each shown, 0 when none

Labels = tuple[str, ...]


def format_value(value: float) -> str:
    """A sample value as the text format writes it."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(names: Sequence[str], values: Sequence[str]) -> str:
    if not names:
        return ""
    pairs = ",".join(f'{n}="{_escape_label(v)}"' for n, v in zip(names, values, strict=True))
    return "{" + pairs + "}"


class _Family:
    kind = "untyped"

    def __init__(self, name: str, help_text: str, labelnames: Sequence[str] = ()) -> None:
        self.name = name
        self.help = help_text
        self.labelnames = tuple(labelnames)

    def header(self) -> list[str]:
        help_text = self.help.replace("\\", "\\\\").replace("\n", "\\n")
        return [f"# HELP {self.name} {help_text}", f"# TYPE {self.name} {self.kind}"]

    def _key(self, labels: Iterable[str]) -> Labels:
        key = tuple(labels)
        if len(key) != len(self.labelnames):
            raise ValueError(f"{self.name} takes labels {self.labelnames}, got {key}")
        return key


class Counter(_Family):
    """A count that only goes up."""

    kind = "counter"

    def __init__(self, name: str, help_text: str, labelnames: Sequence[str] = ()) -> None:
        super().__init__(name, help_text, labelnames)
        self._values: dict[Labels, float] = {} if labelnames else {(): 0.0}

    def inc(self, *labels: str, amount: float = 1.0) -> None:
        """Add ``amount`` to the series with these label values."""
        key = self._key(labels)
        self._values[key] = self._values.get(key, 0.0) + amount

    def value(self, *labels: str) -> float:
        """The series' value (0 when never counted)."""
        return self._values.get(self._key(labels), 0.0)

    def lines(self) -> list[str]:
        """HELP, TYPE and one sample per series."""
        return self.header() + [
            f"{self.name}{_labels(self.labelnames, k)} {format_value(v)}"
            for k, v in sorted(self._values.items())
        ]


class Gauge(Counter):
    """A value that goes up and down."""

    kind = "gauge"

    def set(self, value: float, *labels: str) -> None:
        """Set the series with these label values."""
        self._values[self._key(labels)] = float(value)

    def dec(self, *labels: str) -> None:
        """Subtract one."""
        self.inc(*labels, amount=-1.0)


class Histogram(_Family):
    """Observations counted into cumulative buckets, with their sum and count."""

    kind = "histogram"

    def __init__(
        self,
        name: str,
        help_text: str,
        labelnames: Sequence[str] = (),
        buckets: Sequence[float] = LATENCY_BUCKETS,
    ) -> None:
        super().__init__(name, help_text, labelnames)
        self.buckets = tuple(sorted(buckets))
        self._series: dict[Labels, tuple[list[int], list[float]]] = {}

    def observe(self, value: float, *labels: str) -> None:
        """Count one observation."""
        counts, total = self._series.setdefault(
            self._key(labels), ([0] * (len(self.buckets) + 1), [0.0])
        )
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                counts[i] += 1
                break
        else:
            counts[-1] += 1
        total[0] += value

    def lines(self) -> list[str]:
        """HELP, TYPE, and per series its buckets (``le``), ``_sum`` and ``_count``."""
        out = self.header()
        names = (*self.labelnames, "le")
        for key, (counts, total) in sorted(self._series.items()):
            running = 0
            for bound, n in zip((*self.buckets, math.inf), counts, strict=True):
                running += n
                le = format_value(bound)
                out.append(f"{self.name}_bucket{_labels(names, (*key, le))} {running}")
            out.append(f"{self.name}_sum{_labels(self.labelnames, key)} {format_value(total[0])}")
            out.append(f"{self.name}_count{_labels(self.labelnames, key)} {running}")
        return out


def _split(method: str) -> tuple[str, str]:
    service, _, name = method.lstrip("/").partition("/")
    return service, name


class CoordinatorMetrics:
    """The coordinator's metrics; the store is read for the round counts at each scrape."""

    def __init__(self, store: Store) -> None:
        self._store = store
        rpc = ("grpc_service", "grpc_method", "grpc_type")
        self.started = Counter("grpc_server_started_total", "RPCs started on the server.", rpc)
        self.handled = Counter(
            "grpc_server_handled_total",
            "RPCs completed on the server, by status code.",
            (*rpc, "grpc_code"),
        )
        self.latency = Histogram(
            "grpc_server_handling_seconds",
            "Time to handle an RPC (for a stream, its whole life).",
            rpc,
        )
        self.connected_agents = Gauge(
            "fedpeer_connected_agents", "Agents holding a WatchRounds stream open."
        )
        self.submissions = Counter(
            "fedpeer_submissions_received_total",
            "Releases acknowledged with a receipt (a resend of the same release counts again).",
        )
        self.refusals = Counter(
            "fedpeer_refusals_received_total", "Refusals of a round acknowledged."
        )
        self.stream_wakeups = Counter(
            "fedpeer_stream_wakeups_total",
            "Round streams woken: to announce a change of rounds, or to close the stream of"
            " a practice revoked or enrolled again.",
            ("reason",),
        )
        self.start_time = Gauge(
            "fedpeer_coordinator_start_time_seconds", "When the coordinator started (Unix time)."
        )
        self.start_time.set(time.time())

    def call_started(self, method: str, kind: str) -> None:
        """Count a call as it starts."""
        self.started.inc(*_split(method), kind)
        if method == WATCH_METHOD:
            self.connected_agents.inc()

    def call_ended(self, method: str, kind: str, code: grpc.StatusCode, seconds: float) -> None:
        """Count a call as it ends, with its status code and duration."""
        service, name = _split(method)
        self.handled.inc(service, name, kind, code.name)
        self.latency.observe(seconds, service, name, kind)
        if method == WATCH_METHOD:
            self.connected_agents.dec()
        elif code is grpc.StatusCode.OK and method == SUBMIT_METHOD:
            self.submissions.inc()
        elif code is grpc.StatusCode.OK and method == REFUSAL_METHOD:
            self.refusals.inc()

    async def render(self) -> str:
        """Every metric in the text exposition format."""
        rounds = Gauge("fedpeer_rounds", "Rounds in the store, by state.", ("state",))
        store_up = Gauge("fedpeer_store_up", "1 when the store answered this scrape, else 0.")
        try:
            counts = await asyncio.to_thread(self._store.rounds_by_state)
        except Exception as exc:  # a scrape must report an outage, not fail with it
            log.warning("event=metrics_store_failed reason=%s", type(exc).__name__)
            store_up.set(0)
        else:
            store_up.set(1)
            for state in sorted({*ROUND_STATES, *counts}):
                rounds.set(counts.get(state, 0), state)
        families: list[Counter | Histogram] = [
            self.started,
            self.handled,
            self.latency,
            self.connected_agents,
            self.submissions,
            self.refusals,
            self.stream_wakeups,
            rounds,
            store_up,
            self.start_time,
        ]
        return "\n".join(line for f in families for line in f.lines()) + "\n"


def _code_of(context: grpc.aio.ServicerContext, failed: BaseException | None) -> grpc.StatusCode:
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code
    if isinstance(code, int):  # some grpc versions return the enum's number
        for member in grpc.StatusCode:
            if member.value[0] == code:
                return member
    if isinstance(failed, asyncio.CancelledError):
        return grpc.StatusCode.CANCELLED
    return grpc.StatusCode.UNKNOWN if failed is not None else grpc.StatusCode.OK


class MetricsInterceptor(grpc.aio.ServerInterceptor):
    """Count every call on a server and time it, with the status it ended with."""

    def __init__(self, metrics: CoordinatorMetrics) -> None:
        self._metrics = metrics
        self._wrapped = WrappedOnce(self._counted)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        """Wrap the method's handler; unknown methods are left alone (no label for them)."""
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        return self._wrapped(handler_call_details.method, handler)  # type: ignore[attr-defined]

    def _counted(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        """``handler`` with its calls counted and timed under ``method``."""
        metrics = self._metrics

        def unary_response(inner: Any, kind: str) -> Any:
            async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
                metrics.call_started(method, kind)
                start, failed = time.perf_counter(), None
                try:
                    return await inner(request, context)
                except BaseException as exc:
                    failed = exc
                    raise
                finally:
                    seconds = time.perf_counter() - start
                    metrics.call_ended(method, kind, _code_of(context, failed), seconds)

            return call

        def stream_response(inner: Any, kind: str) -> Any:
            async def call(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
                metrics.call_started(method, kind)
                start, failed = time.perf_counter(), None
                try:
                    async for item in inner(request, context):
                        yield item
                except BaseException as exc:
                    failed = exc
                    raise
                finally:
                    seconds = time.perf_counter() - start
                    metrics.call_ended(method, kind, _code_of(context, failed), seconds)

            return call

        serde = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }
        if handler.unary_unary is not None:
            wrapped = unary_response(handler.unary_unary, "unary")
            return grpc.unary_unary_rpc_method_handler(wrapped, **serde)
        if handler.unary_stream is not None:
            wrapped = stream_response(handler.unary_stream, "server_stream")
            return grpc.unary_stream_rpc_method_handler(wrapped, **serde)
        if handler.stream_unary is not None:  # pragma: no cover - no such methods today
            wrapped = unary_response(handler.stream_unary, "client_stream")
            return grpc.stream_unary_rpc_method_handler(wrapped, **serde)
        if handler.stream_stream is not None:  # pragma: no cover - no such methods today
            wrapped = stream_response(handler.stream_stream, "bidi_stream")
            return grpc.stream_stream_rpc_method_handler(wrapped, **serde)
        return handler  # pragma: no cover


def _response(status: str, body: bytes, content_type: str = "text/plain; charset=utf-8") -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


class MetricsServer:
    """``GET /metrics`` over plain HTTP/1.1 on the coordinator's own event loop."""

    def __init__(self, metrics: CoordinatorMetrics, read_timeout: float = 10.0) -> None:
        self._metrics = metrics
        self._timeout = read_timeout
        self._server: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> int:
        """Listen on ``host:port`` (0 picks a free port); returns the bound port."""
        try:
            self._server = await asyncio.start_server(self._handle, host, port)
        except OSError as exc:
            raise StoreError(
                f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}"
            ) from None
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        """Stop listening."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), self._timeout)
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
                return
            parts = head.split(b"\r\n", 1)[0].decode("latin-1").split()
            if len(parts) != 3 or not parts[2].startswith("HTTP/"):
                writer.write(_response("400 Bad Request", b"bad request\n"))
            elif parts[0] not in ("GET", "HEAD"):
                writer.write(_response("405 Method Not Allowed", b"only GET\n"))
            elif parts[1].split("?", 1)[0] != "/metrics":
                writer.write(_response("404 Not Found", b"see /metrics\n"))
            else:
                body = (await self._metrics.render()).encode("utf-8")
                response = _response("200 OK", body, CONTENT_TYPE)
                if parts[0] == "HEAD":
                    response = response[: len(response) - len(body)]
                writer.write(response)
            with contextlib.suppress(ConnectionError):
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
