"""Benchmark: one coordinator under many agents at once (issue 10).

    PYTHONPATH=. .venv/bin/python bench/load.py [--agents 100 500 2000 6300]
                                                [--db sqlite|postgres] [--workers 2]

Everything is real and on loopback. For each number of agents N, a fresh coordinator
(``python -m coordinator.cli serve``, its own process, so its RSS and CPU are its own)
runs in a temporary home, on SQLite in that home or on a private PostgreSQL database
created for the run (and dropped after). N practices are invited over the admin API and
enrolled through the enrolment port, each with its own key and certificate (keys are
cached in ``bench/out/load-keys``). ``--workers`` client processes then hold N agents,
each on its own mutual-TLS channel following ``WatchRounds``. Reported:

* **RSS**: the coordinator's VmRSS once all N follow a first round, and its CPU use
  (share of one core) over 20 s of them all waiting;
* **announce**: from ``StartRound`` returning to the last of the N receiving the round;
* **submissions/s**: all N send a signed release together (rows in the agent's
  ``ReleaseDocument``, signed with ``fedpeer.signing``; every receipt is checked as the
  agent checks it); N divided by the time from the go to the last answer;
* **statuses**: the count of each status code (anything but OK is a failure);
* **CPU per submission**: the coordinator's CPU (user + system) over the submissions / N.

The machine is shared with other work while it is measured; the figures in
docs/benchmarks.md say so.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import datetime as dt
import multiprocessing as mp
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import grpc  # noqa: E402

from bench.agent_idle import cpu_seconds  # noqa: E402
from bench.agent_idle import status as proc_status  # noqa: E402
from coordinator.admin_client import AdminClient  # noqa: E402
from coordinator.ca import CoordinatorHome, init_home  # noqa: E402
from fedpeer import wire  # noqa: E402
from fedpeer.channel import secure_channel  # noqa: E402
from fedpeer.collection import (  # noqa: E402
    Answer,
    DefinitionDocument,
    ReleaseDocument,
    Round,
    SignedRelease,
)
from fedpeer.definitions import find_standard, serialize  # noqa: E402
from fedpeer.identity import (  # noqa: E402
    cert_from_pem,
    generate_key,
    key_from_pem,
    key_to_pem,
    make_csr,
)
from fedpeer.release import ResultRow  # noqa: E402
from fedpeer.signing import sign_bytes, verify_receipt, verify_round  # noqa: E402
from fedpeer.v1 import agent_pb2, agent_pb2_grpc, enrolment_pb2, enrolment_pb2_grpc  # noqa: E402

OUT = ROOT / "bench" / "out"
KEYS = OUT / "load-keys"
POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432"
INDICATORS = ("dm_hba1c_le58", "dna_rate", "profile.list_size")
CALL_TIMEOUT = 60.0
IDLE_SECONDS = 20.0  # longer than the poll that checks open streams (5 s) and the cache (2 s)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cached_keys(n: int) -> list[bytes]:
    """``n`` practice keys (PEM), generated once and kept in bench/out/load-keys."""
    KEYS.mkdir(parents=True, exist_ok=True)
    keys = []
    for i in range(n):
        path = KEYS / f"{i:05d}.pem"
        if not path.exists():
            path.write_bytes(key_to_pem(generate_key()))
        keys.append(path.read_bytes())
    return keys


def last_month_end() -> dt.date:
    """The last day of the previous month: a reference date every round accepts."""
    return dt.date.today().replace(day=1) - dt.timedelta(days=1)


def definitions() -> tuple[DefinitionDocument, ...]:
    """The round's questions: three standard indicators."""
    return tuple(DefinitionDocument.of(n, serialize(find_standard(n))) for n in INDICATORS)


def rows_for(i: int) -> list[ResultRow]:
    """Released rows for practice number ``i``: on the rounding grid, as the agent sends."""
    n, size = 40 + 5 * (i % 37), 5000 + 5 * i
    return [
        ResultRow("dm_hba1c_le58", numerator=n, denominator=n + 20, value=n / (n + 20)),
        ResultRow("dna_rate", numerator=None, denominator=200, suppressed=True),
        ResultRow("profile.list_size", count=size, value=float(size)),
    ]


def release_for(practice_id: str, i: int, round_: Round, key_pem: bytes) -> SignedRelease:
    """The practice's signed release document answering ``round_``."""
    rows = rows_for(i)
    answers = tuple(
        Answer(
            d.content_hash,
            d.id,
            round_.policy,
            tuple(r for r in rows if r.indicator == d.id or r.indicator.startswith(d.id + ".")),
        )
        for d in round_.definitions
    )
    data = ReleaseDocument(practice_id, round_.round_id, round_.as_of, answers).to_bytes()
    return SignedRelease(data, sign_bytes(key_from_pem(key_pem), data))


# -- the client processes: many agents each ---------------------------------------------


class Agents:
    """A worker's agents: one mutual-TLS channel and one round stream per practice."""

    def __init__(self, address: str, ca_pem: bytes, identities: list[dict[str, Any]]) -> None:
        self.address, self.ca_pem, self.identities = address, ca_pem, identities
        self.channels: list[grpc.aio.Channel] = []
        self.stubs: list[agent_pb2_grpc.AgentStub] = []
        self.seen: dict[str, list[float]] = collections.defaultdict(list)
        self.arrived: dict[str, asyncio.Event] = collections.defaultdict(asyncio.Event)
        self.tasks: list[asyncio.Task[None]] = []
        self.stream_ends: collections.Counter[str] = collections.Counter()

    async def follow(self, stub: agent_pb2_grpc.AgentStub) -> None:
        """Follow the round stream, noting when each round arrives."""
        try:
            async for announcement in stub.WatchRounds(agent_pb2.WatchRoundsRequest()):
                seen = self.seen[announcement.round_id]
                seen.append(time.time())
                if len(seen) == len(self.identities):
                    self.arrived[announcement.round_id].set()
        except grpc.aio.AioRpcError as exc:
            self.stream_ends[f"{exc.code().name}: {exc.debug_error_string()}"[:200]] += 1

    def connect(self) -> None:
        """Open every channel and stream."""
        for ident in self.identities:
            channel = secure_channel(self.address, self.ca_pem, ident["key"], ident["cert"])
            stub = agent_pb2_grpc.AgentStub(channel)
            self.channels.append(channel)
            self.stubs.append(stub)
            self.tasks.append(asyncio.create_task(self.follow(stub)))

    async def submit_all(self, round_id: str, go: float) -> dict[str, Any]:
        """Fetch and verify the round, sign each release, then send all at ``go``."""
        ca_cert = cert_from_pem(self.ca_pem)
        round_msg = await self.stubs[0].GetRound(agent_pb2.GetRoundRequest(round_id=round_id))
        round_ = wire.round_from_proto(round_msg)
        verify_round(ca_cert, round_)
        requests = [
            wire.release_to_proto(
                round_id, release_for(ident["practice_id"], ident["i"], round_, ident["key"])
            )
            for ident in self.identities
        ]
        await asyncio.sleep(max(0.0, go - time.time()))
        codes: collections.Counter[str] = collections.Counter()
        ends: list[float] = []
        details: dict[str, str] = {}

        async def one(stub: agent_pb2_grpc.AgentStub, request: Any, practice_id: str) -> None:
            try:
                message = await stub.Submit(request, timeout=CALL_TIMEOUT)
                receipt = wire.receipt_from_proto(message)
                verify_receipt(ca_cert, receipt)
                assert receipt.practice_id == practice_id
                codes["OK"] += 1
            except grpc.aio.AioRpcError as exc:
                codes[exc.code().name] += 1
                details.setdefault(exc.code().name, exc.details() or "")
            ends.append(time.time())

        await asyncio.gather(
            *(
                one(stub, req, ident["practice_id"])
                for stub, req, ident in zip(self.stubs, requests, self.identities, strict=True)
            )
        )
        return {"codes": dict(codes), "last": max(ends), "details": details}

    async def close(self) -> None:
        """Hang up every stream and channel."""
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*(c.close() for c in self.channels), return_exceptions=True)


def worker(conn: Any, address: str, ca_pem: bytes, identities: list[dict[str, Any]]) -> None:
    """A client process: obey the parent's commands over ``conn``, one at a time."""

    async def run() -> None:
        agents = Agents(address, ca_pem, identities)
        loop = asyncio.get_running_loop()
        while True:
            command, arg = await loop.run_in_executor(None, conn.recv)
            if command == "connect":
                agents.connect()
                conn.send("ok")
            elif command == "wait":  # until every agent has this round: the latest arrival
                try:
                    await asyncio.wait_for(agents.arrived[arg].wait(), 900)
                except TimeoutError:
                    seen, ended = len(agents.seen[arg]), dict(agents.stream_ends)
                    conn.send(f"only {seen} of {len(identities)} had the round; ended {ended}")
                else:
                    conn.send(max(agents.seen[arg]))
            elif command == "submit":
                round_id, go = arg
                conn.send(await agents.submit_all(round_id, go))
            else:
                await agents.close()
                conn.send("bye")
                return

    asyncio.run(run())


# -- the parent: a coordinator, enrolment, and the measurements --------------------------


def start_coordinator(home: Path, db_url: str | None) -> tuple[subprocess.Popen[bytes], str, int]:
    """``fedpeer-coordinator serve`` on free ports: the process, its address, enrol port."""
    port, enrol_port = free_port(), free_port()
    command = [sys.executable, "-m", "coordinator.cli", "serve", "--home", str(home)]
    command += ["--port", str(port), "--enrol-port", str(enrol_port)]
    if db_url:
        command += ["--db", db_url]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    log = (home / "coordinator.log").open("wb")
    proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    address = f"127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while not CoordinatorHome(home).address_file.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the coordinator did not start; see {home / 'coordinator.log'}")
        time.sleep(0.1)
    return proc, address, enrol_port


async def enrol_all(home: Path, address: str, enrol_port: int, n: int) -> list[dict[str, Any]]:
    """Invite and enrol ``n`` practices over the real admin and enrolment ports."""
    keys = cached_keys(n)
    ca_pem = CoordinatorHome(home).ca_cert.read_bytes()
    # The enrolment port takes 4 streams per connection: 8 connections, 4 calls each.
    channels = [secure_channel(f"127.0.0.1:{enrol_port}", ca_pem) for _ in range(8)]
    stubs = [enrolment_pb2_grpc.EnrolmentStub(c) for c in channels]
    limits = [asyncio.Semaphore(4) for _ in channels]
    identities: list[dict[str, Any]] = []
    async with AdminClient(address, CoordinatorHome(home)) as admin:

        async def one(i: int) -> None:
            practice_id = f"P{i:05d}"
            async with limits[i % len(limits)]:
                token, _ = await admin.invite(practice_id, f"Practice {i}", f"L{i % 40:02d}")
                csr = make_csr(key_from_pem(keys[i])).decode()
                response = await stubs[i % len(stubs)].Enrol(
                    enrolment_pb2.EnrolRequest(token=token, csr_pem=csr), timeout=CALL_TIMEOUT
                )
            identities.append(
                {
                    "i": i,
                    "practice_id": response.practice_id,
                    "key": keys[i],
                    "cert": response.certificate_pem.encode(),
                }
            )

        await asyncio.gather(*(one(i) for i in range(n)))
    await asyncio.gather(*(c.close() for c in channels))
    return sorted(identities, key=lambda d: d["i"])


def stop_coordinator(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, as systemd stops it; once more if it is still there after 30 s (it is noted)."""
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        print("# the coordinator needed a second SIGTERM to stop", file=sys.stderr)
        proc.terminate()
        proc.wait(30)


def postgres_database() -> tuple[str, str]:
    """A private PostgreSQL database for one run: its name and URL."""
    import sqlalchemy as sa

    name = f"fedpeer_load_{uuid.uuid4().hex[:10]}"
    engine = sa.create_engine(f"{POSTGRES}/test", isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return name, f"{POSTGRES}/{name}"


def drop_postgres_database(name: str) -> None:
    """Drop a database made by ``postgres_database``."""
    import sqlalchemy as sa

    engine = sa.create_engine(f"{POSTGRES}/test", isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


def ask(conns: list[Any], command: str, arg: Any = None) -> list[Any]:
    """Send a command to every worker and collect their answers; stop at a failure."""
    for conn in conns:
        conn.send((command, arg))
    answers = [conn.recv() for conn in conns]
    for answer in answers:
        if isinstance(answer, str) and answer.startswith("only"):
            raise SystemExit(answer)
    return answers


async def admin_call(home: Path, address: str, method: str, *args: Any) -> Any:
    """One admin call with the home's admin certificate."""
    async with AdminClient(address, CoordinatorHome(home)) as admin:
        return await getattr(admin, method)(*args)


def measure(n: int, db: str, workers: int) -> dict[str, Any]:
    """Every figure for ``n`` agents on a fresh coordinator."""
    with tempfile.TemporaryDirectory(prefix="fedpeer-load-") as tmp:
        home = Path(tmp) / "coordinator"
        init_home(home)
        pg_name, db_url = postgres_database() if db == "postgres" else (None, None)
        proc, address, enrol_port = start_coordinator(home, db_url)
        procs: list[Any] = []
        try:
            t = time.monotonic()
            identities = asyncio.run(enrol_all(home, address, enrol_port, n))
            enrol_s = time.monotonic() - t
            ca_pem = CoordinatorHome(home).ca_cert.read_bytes()
            rss_idle = proc_status(proc.pid, "VmRSS")
            first = asyncio.run(
                admin_call(home, address, "start_round", last_month_end(), definitions())
            )
            ctx = mp.get_context("spawn")
            conns = []
            for w in range(workers):
                parent, child = ctx.Pipe()
                share = identities[w::workers]
                p = ctx.Process(target=worker, args=(child, address, ca_pem, share), daemon=True)
                p.start()
                procs.append(p)
                conns.append(parent)
            t = time.monotonic()
            ask(conns, "connect")
            ask(conns, "wait", first.round_id)
            connect_s = time.monotonic() - t
            time.sleep(2)  # let allocations settle before reading RSS
            rss_held = proc_status(proc.pid, "VmRSS")
            idle0 = cpu_seconds(proc.pid)
            time.sleep(IDLE_SECONDS)  # every agent connected and waiting: what does that cost?
            idle_cpu = (cpu_seconds(proc.pid) - idle0) / IDLE_SECONDS
            second = asyncio.run(
                admin_call(home, address, "start_round", last_month_end(), definitions())
            )
            started = time.time()
            announce_s = max(ask(conns, "wait", second.round_id)) - started
            go = time.time() + 10.0  # time for every worker to prepare its releases
            for conn in conns:
                conn.send(("submit", (second.round_id, go)))
            time.sleep(max(0.0, go - time.time() - 0.5))
            cpu0 = cpu_seconds(proc.pid)
            answers = [conn.recv() for conn in conns]
            cpu = cpu_seconds(proc.pid) - cpu0
            codes: collections.Counter[str] = collections.Counter()
            for answer in answers:
                codes.update(answer["codes"])
                for code, detail in answer["details"].items():
                    print(f"# {code}: {detail}", file=sys.stderr)
            took = max(a["last"] for a in answers) - go
            status = asyncio.run(admin_call(home, address, "status", second.round_id))
            stored = sum(1 for p in status.practices if p.state == "submitted")
            rss_peak = proc_status(proc.pid, "VmHWM")
            ask(conns, "close")
        finally:
            for p in procs:
                p.join(10)
                if p.is_alive():
                    p.kill()
            stop_coordinator(proc)
            if pg_name:
                drop_postgres_database(pg_name)
    return {
        "agents": n,
        "db": db,
        "enrol_s": enrol_s,
        "connect_s": connect_s,
        "rss_idle_mib": rss_idle / 1024,
        "rss_held_mib": rss_held / 1024,
        "rss_peak_mib": rss_peak / 1024,
        "idle_cpu": idle_cpu,
        "announce_s": announce_s,
        "submit_s": took,
        "per_s": n / took,
        "stored": stored,
        "codes": dict(codes),
        "cpu_ms": 1000 * cpu / n,
    }


def main() -> None:
    """Measure each size and print a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, nargs="+", default=[100, 500, 2000, 6300])
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--workers", type=int, default=2, help="client processes")
    args = parser.parse_args()
    print(
        f"# {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()},"
        f" grpcio {grpc.__version__}, {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, db={args.db}"
    )
    print(
        "| agents | held RSS (MiB) | CPU while held | peak RSS | round reaches all |"
        " submissions/s | stored | statuses | coordinator CPU/submission |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for n in args.agents:
        r = measure(n, args.db, args.workers)
        codes = ", ".join(f"{k} {v}" for k, v in sorted(r["codes"].items()))
        print(
            f"| {n:,} | {r['rss_held_mib']:.0f} | {100 * r['idle_cpu']:.1f}% |"
            f" {r['rss_peak_mib']:.0f} |"
            f" {r['announce_s']:.2f} s | {r['per_s']:.0f} | {r['stored']:,} | {codes} |"
            f" {r['cpu_ms']:.2f} ms |",
            flush=True,
        )


if __name__ == "__main__":
    main()
