"""Two coordinator processes share one PostgreSQL store and serve agents together (issue 10).

The real thing: two ``fedpeer-coordinator serve`` processes with the same keys (the home
copied, as an operator copies it to a second host) on one fresh database; practices
enrolled at either, their real agents following rounds over mutual TLS, some connected
to A and some to B. A round started on A reaches B's agents through PostgreSQL
LISTEN/NOTIFY: both processes poll only every 60 s here, so only the notification can
make it prompt. Every submission is stored once, whichever process takes it.
"""

from __future__ import annotations

import asyncio
import shutil
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
    home_a = init_home(tmp_path / "a")
    shutil.copytree(home_a, tmp_path / "b")  # the same CA and keys on the second "host"
    env = {"FEDPEER_COORDINATOR_ANNOUNCE_POLL_SECONDS": POLL_SECONDS}
    with (
        serving(home_a, "--db", url, env=env) as a,
        serving(tmp_path / "b", "--db", url, env=env) as b,
    ):
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

            on_a = await until(lambda: answered(a), REACH_SECONDS, "A's agents answer")
            on_b = await until(lambda: answered(b), REACH_SECONDS, "B's agents answer")
            print(f"round answered: A's agents {on_a:.2f} s, B's agents {on_b:.2f} s")
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
