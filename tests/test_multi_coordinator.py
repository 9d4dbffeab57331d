"""Two coordinator processes share one PostgreSQL store and serve agents together (issue 10).

The real thing: two ``fedpeer-coordinator serve`` processes with the same keys (the home
copied, as an operator copies it to a second host) on one fresh database; practices
enrolled at either, their real agents following rounds over mutual TLS, some connected
to A and some to B. A round started on A reaches B's agents through PostgreSQL
LISTEN/NOTIFY: both processes poll only every 60 s here, so only the notification can
make it prompt. Every submission is stored once, whichever process takes it. And when
one process dies, the agents it served reconnect through a TCP load balancer (a small
layer-4 forwarder here, as docs/scaling.md describes) to the other and carry on.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest
from _coordinator_helpers import AS_OF, DEFINITIONS, fixed_prepare, rows_for, signed_request
from _following import acknowledged, following, stored_per_practice, until
from _processes import Served, init_home, serving

from agent.client import Agent, enrol
from coordinator.admin_client import AdminClient
from coordinator.ca import CoordinatorHome
from fedpeer import wire
from fedpeer.channel import secure_channel
from fedpeer.v1 import agent_pb2, agent_pb2_grpc, common_pb2

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

POLL_SECONDS = "60"  # a poll this slow cannot announce a round within REACH_SECONDS
REACH_SECONDS = 10.0  # generous for a shared 2-core machine; measured well under 1 s
PER_PROCESS = 3


def _admin(served: Served) -> AdminClient:
    return AdminClient(served.address, CoordinatorHome(served.home))


@contextlib.contextmanager
def _two_processes(tmp_path: Path, url: str, *args: str) -> Iterator[tuple[Served, Served]]:
    """Processes A and B serving one database with the same keys, as on two hosts
    (``args`` added to both ``serve`` commands)."""
    home_a = init_home(tmp_path / "a")
    shutil.copytree(home_a, tmp_path / "b")  # the same CA and keys on the second "host"
    env = {"FEDPEER_COORDINATOR_ANNOUNCE_POLL_SECONDS": POLL_SECONDS}
    with (
        serving(home_a, "--db", url, *args, env=env) as a,
        serving(tmp_path / "b", "--db", url, *args, env=env) as b,
    ):
        yield a, b


def _watching(served: Served, practices: list[str]) -> list[str]:
    """Those of ``practices`` whose round stream ``served`` has opened (by its log)."""
    log = served.output()
    return [p for p in practices if f"event=watching practice={p}" in log]


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


@contextlib.asynccontextmanager
async def _balancer(backends: list[str]) -> AsyncIterator[str]:
    """A TCP load balancer on 127.0.0.1 (layer 4, TLS passes through): each connection
    goes to the next backend in turn that accepts it. Its HOST:PORT."""
    turn = itertools.count()

    async def handle(client_in: asyncio.StreamReader, client_out: asyncio.StreamWriter) -> None:
        first = next(turn)
        for k in range(len(backends)):
            host, port = backends[(first + k) % len(backends)].rsplit(":", 1)
            try:
                server_in, server_out = await asyncio.open_connection(host, int(port))
                break
            except OSError:
                continue  # that backend is down: the next one
        else:
            client_out.close()
            return
        await asyncio.gather(_pipe(client_in, server_out), _pipe(server_in, client_out))

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    async with server:
        yield f"127.0.0.1:{server.sockets[0].getsockname()[1]}"


async def _submit(address: str, agent: Agent, request: agent_pb2.SubmitRequest):  # type: ignore[no-untyped-def]
    """Send ``request`` as ``agent``'s practice to the process at ``address``."""
    i = agent.identity
    async with secure_channel(address, i.ca_pem, i.key_pem, i.cert_pem, i.server_name) as channel:
        message = await agent_pb2_grpc.AgentStub(channel).Submit(request, timeout=30)
    return wire.receipt_from_proto(message)


async def test_a_round_started_on_one_process_reaches_agents_on_another_and_is_stored_once(
    tmp_path: Path, postgres_database_url: str
) -> None:
    url = postgres_database_url
    with _two_processes(tmp_path, url) as (a, b):
        # Invited on A, each practice enrols at the process it will follow: one database.
        placed: dict[str, Served] = {}
        async with _admin(a) as adm:
            for k in range(2 * PER_PROCESS):
                practice_id, process = f"M{k}", (a if k % 2 == 0 else b)
                token, _ = await adm.invite(practice_id, f"Multi {k}", "West")
                await enrol(process.address, process.enrol_port, token, tmp_path / practice_id)
                placed[practice_id] = process
        agents = {
            p: Agent(tmp_path / p, fixed_prepare(p), backoff_seconds=0.2, max_backoff_seconds=1.0)
            for p in placed
        }
        # One more practice with no agent: its release is sent to both processes at once.
        async with _admin(b) as adm:
            token, _ = await adm.invite("R1", "Racing Row", "East")
        await enrol(b.address, b.enrol_port, token, tmp_path / "R1")
        racer = Agent(tmp_path / "R1", fixed_prepare("R1"))

        async with following(list(agents.values())):
            # Every agent's round stream is open before the round starts, so the round can
            # reach it only by announcement.
            await until(
                lambda: all(f"event=watching practice={p}" in placed[p].output() for p in placed),
                30,
                "the agents connect",
            )
            async with _admin(a) as adm:
                round_ = await adm.start_round(AS_OF, DEFINITIONS)

            def answered(process: Served) -> bool:
                on_it = [agents[p] for p in placed if placed[p] is process]
                return acknowledged(on_it, round_.round_id)

            # Timed from the round's start on A, as each process's agents hold receipts.
            on_a = await until(lambda: answered(a), REACH_SECONDS, "A's agents answer")
            on_b = on_a + await until(lambda: answered(b), REACH_SECONDS, "B's agents answer")
            print(f"round answered: A's agents within {on_a:.2f} s, B's within {on_b:.2f} s")
            assert "event=listening" in b.output()

        # A release taken by A, sent again to B: the same receipt, from the one record.
        first = agents["M0"]
        entry = first.outbox.get(round_.round_id)
        assert entry is not None and placed["M0"] is a
        kept = wire.receipt_from_proto(common_pb2.Receipt.FromString(entry.receipt))
        again = await _submit(b.address, first, agent_pb2.SubmitRequest.FromString(entry.payload))
        assert again == kept
        # Other content for the same round, at the other process: a conflict.
        other = signed_request(first.identity, round_, rows_for("someone else"))
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await _submit(b.address, first, other)
        assert caught.value.code() == grpc.StatusCode.ALREADY_EXISTS

        # The same release racing into both processes: one record, one receipt.
        request = signed_request(racer.identity, round_, rows_for("R1"))
        both = await asyncio.gather(
            _submit(a.address, racer, request), _submit(b.address, racer, request)
        )
        assert both[0] == both[1]

        async with _admin(b) as adm:
            status = await adm.status(round_.round_id)
        assert {p.practice_id: p.state for p in status.practices} == dict.fromkeys(
            [*placed, "R1"], "submitted"
        )
    assert stored_per_practice(url, round_.round_id) == dict.fromkeys([*placed, "R1"], 1)


async def test_when_a_process_dies_its_agents_carry_on_with_another(
    tmp_path: Path, postgres_database_url: str
) -> None:
    """Agents reach both processes through a TCP load balancer. Process A is killed; its
    agents reconnect through the balancer to B, and a round started on B reaches them
    all and is stored once."""
    url = postgres_database_url
    with _two_processes(tmp_path, url) as (a, b):
        async with _balancer([a.address, b.address]) as front:
            practices = [f"D{k}" for k in range(4)]
            agents = []
            async with _admin(a) as adm:
                for practice_id in practices:
                    token, _ = await adm.invite(practice_id, "Dying Lane", "North")
                    await enrol(front, a.enrol_port, token, tmp_path / practice_id)
                    agents.append(
                        Agent(
                            tmp_path / practice_id,
                            fixed_prepare(practice_id),
                            backoff_seconds=0.2,
                            max_backoff_seconds=1.0,
                        )
                    )
            async with following(agents):
                await until(
                    lambda: len(_watching(a, practices) + _watching(b, practices)) == 4,
                    30,
                    "the agents connect",
                )
                orphans = _watching(a, practices)
                assert orphans and len(orphans) < 4  # the balancer spread them over both
                a.kill()
                await until(
                    lambda: _watching(b, practices) == practices, 30, "A's agents move to B"
                )
                async with _admin(b) as adm:
                    round_ = await adm.start_round(AS_OF, DEFINITIONS)
                took = await until(
                    lambda: acknowledged(agents, round_.round_id), REACH_SECONDS, "all answer"
                )
                print(f"{len(orphans)} agents moved from A to B; all answered in {took:.2f} s")
    assert stored_per_practice(url, round_.round_id) == dict.fromkeys(practices, 1)
