"""Revocation and a new signing key take effect at once, in every coordinator process.

Real ``fedpeer-coordinator serve`` processes sharing one PostgreSQL database (the
harness of tests/test_multi_coordinator.py: both poll only every 60 s, so nothing but a
notification can act within a second), real agents' certificates over mutual TLS, the
real command line. And one process on SQLite, where the rotating command and the serving
process meet only in the home's files.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import time
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path

import grpc
import pytest
import sqlalchemy as sa
from _coordinator_helpers import AS_OF, DEFINITIONS, admin, fixed_prepare, start
from _processes import Served
from cryptography.hazmat.primitives.serialization import Encoding
from test_metrics import http_get, parse_exposition, value
from test_multi_coordinator import _admin, _two_processes
from typer.testing import CliRunner

from agent.client import Agent, enrol
from agent.identity_store import AgentIdentity
from coordinator.admin_client import AdminClient
from coordinator.ca import CoordinatorHome, init_home
from coordinator.cli import app
from coordinator.server import CoordinatorConfig, RunningCoordinator, start_coordinator
from coordinator.services.auth import ENROLMENT_FRESH_SECONDS
from coordinator.store import Store
from coordinator.tables import practices
from fedpeer import wire
from fedpeer.channel import secure_channel
from fedpeer.collection import Receipt
from fedpeer.errors import IdentityError
from fedpeer.identity import cert_from_pem, cert_to_pem, key_to_pem
from fedpeer.signing import verify_receipt, verify_round
from fedpeer.v1 import agent_pb2, agent_pb2_grpc, common_pb2

runner = CliRunner()
AT_ONCE = 1.0  # the brief's bound; a notification takes milliseconds
BYSTANDERS = 12
METRICS = re.compile(r"event=started .* metrics=127\.0\.0\.1:(\d+)")


async def _cli(*args: str) -> str:
    """A ``fedpeer-coordinator`` command, run as an operator runs it; its output."""
    result = await asyncio.to_thread(runner.invoke, app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


async def _enrol(adm: AdminClient, served_address: str, enrol_port: int, pid: str, root: Path):
    token, _ = await adm.invite(pid, f"Practice {pid}", "East")
    return await enrol(served_address, enrol_port, token, root / pid)


@contextlib.asynccontextmanager
async def _watching(identity: AgentIdentity, address: str) -> AsyncIterator[grpc.aio.Call]:
    """A round stream opened to ``address`` with the practice's own certificate."""
    i = identity
    async with secure_channel(address, i.ca_pem, i.key_pem, i.cert_pem, i.server_name) as channel:
        yield agent_pb2_grpc.AgentStub(channel).WatchRounds(agent_pb2.WatchRoundsRequest())


async def _wakeups(port: int) -> dict[str, float]:
    """``fedpeer_stream_wakeups_total`` by reason, from the process's own /metrics."""
    _, samples = parse_exposition((await http_get(port, "/metrics"))[2])
    name = "fedpeer_stream_wakeups_total"
    return {r: value(samples, name, reason=r) for r in ("rounds", "not_served")}


def _metrics_port(served: Served) -> int:
    found = METRICS.search(served.output())
    assert found, served.output()
    return int(found.group(1))


async def _refused(read: Awaitable[object], seconds: float) -> grpc.aio.AioRpcError:
    """The PERMISSION_DENIED that ``read`` ends with within ``seconds``."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await asyncio.wait_for(read, seconds)
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    return caught.value


@pytest.mark.postgres
@pytest.mark.slow
async def test_a_practice_revoked_through_one_process_is_cut_off_by_another_at_once(
    tmp_path: Path, postgres_database_url: str
) -> None:
    with _two_processes(tmp_path, postgres_database_url, "--metrics-port", "0") as (a, b):
        names = ["V0", *(f"W{k}" for k in range(BYSTANDERS))]
        async with _admin(a) as adm:
            ids = {p: await _enrol(adm, b.address, b.enrol_port, p, tmp_path) for p in names}
        async with contextlib.AsyncExitStack() as streams:
            opened = {
                p: await streams.enter_async_context(_watching(ids[p], b.address)) for p in ids
            }
            async with _admin(a) as adm:
                first = await adm.start_round(AS_OF, DEFINITIONS)
            for stream in opened.values():  # every stream open on B, and announced to
                assert (await asyncio.wait_for(stream.read(), 10)).round_id == first.round_id
            before = await _wakeups(_metrics_port(b))

            read = asyncio.ensure_future(opened["V0"].read())
            await _cli("practice", "revoke", "--id", "V0", "--home", str(a.home),
                       "--coordinator", a.address)  # fmt: skip
            revoked_at = time.monotonic()
            refused = await _refused(read, AT_ONCE)
            took = time.monotonic() - revoked_at
            assert took < AT_ONCE and "revoked" in (refused.details() or "")
            print(f"the stream on B closed {took * 1000:.0f} ms after the revoke on A returned")

            # Only that practice's stream was woken on B: none of the others.
            after = await _wakeups(_metrics_port(b))
            assert after == {"rounds": before["rounds"], "not_served": before["not_served"] + 1}
            # It cannot come back, on B or A: neither a stream nor a call.
            for process in (b, a):
                async with _watching(ids["V0"], process.address) as again:
                    await _refused(again.read(), 10)
            # The others' streams stay open and hear the next round.
            async with _admin(a) as adm:
                second = await adm.start_round(AS_OF, DEFINITIONS)
            for p in names[1:]:
                assert (await asyncio.wait_for(opened[p].read(), 10)).round_id == second.round_id


@pytest.mark.postgres
@pytest.mark.slow
async def test_an_admin_revoked_through_one_process_is_refused_by_another_at_its_next_call(
    tmp_path: Path, postgres_database_url: str
) -> None:
    with _two_processes(tmp_path, postgres_database_url) as (a, b):
        deputy = tmp_path / "deputy"
        await _cli("admin", "add", "deputy", "--out", str(deputy), "--home", str(a.home))
        async with AdminClient(b.address, CoordinatorHome(deputy)) as on_b:
            assert await on_b.practices() == []  # served by B, and recorded
            await _cli("admin", "revoke", "deputy", "--home", str(a.home),
                       "--coordinator", a.address)  # fmt: skip
            # The same open channel to B, the very next call, no wait: refused.
            with pytest.raises(IdentityError, match="revoked"):
                await on_b.practices()


async def test_revoking_one_practice_wakes_only_its_stream_and_reads_no_store_per_stream(
    tmp_path: Path, db_url: str | None
) -> None:
    home = init_home(tmp_path / "coord").root
    config = CoordinatorConfig(home=home, db_url=db_url, announce_poll_seconds=60, metrics_port=0)
    running = await start_coordinator(config)
    try:
        names = ["V0", *(f"W{k}" for k in range(BYSTANDERS))]
        async with admin(running) as adm:
            ids = {
                p: await _enrol(adm, running.address, running.enrol_port, p, tmp_path)
                for p in names
            }
            async with contextlib.AsyncExitStack() as streams:
                opened = {
                    p: await streams.enter_async_context(_watching(ids[p], running.address))
                    for p in names
                }
                first = await adm.start_round(AS_OF, DEFINITIONS)
                for stream in opened.values():
                    assert (await asyncio.wait_for(stream.read(), 10)).round_id == first.round_id
                assert running.metrics_port is not None
                before = await _wakeups(running.metrics_port)

                statements: list[str] = []

                def seen(_conn: object, _cursor: object, statement: str, *_: object) -> None:
                    statements.append(statement)

                # Every statement this process sends to its store while the revocation acts.
                sa.event.listen(running.store.engine, "before_cursor_execute", seen)
                try:
                    read = asyncio.ensure_future(opened["V0"].read())
                    await adm.revoke("V0")
                    await _refused(read, AT_ONCE)
                    await asyncio.sleep(0.3)  # the process's own notification, where it has one
                finally:
                    sa.event.remove(running.store.engine, "before_cursor_execute", seen)
                after = await _wakeups(running.metrics_port)
                assert after == {
                    "rounds": before["rounds"],
                    "not_served": before["not_served"] + 1,
                }
                # The revoking call's own read of the practice (and, on PostgreSQL, the
                # notification's when it finds a stream still there): no read per stream.
                reads = [s for s in statements if "FROM practices" in s]
                assert 1 <= len(reads) <= 2 < BYSTANDERS, reads
                second = await adm.start_round(AS_OF, DEFINITIONS)
                for p in names[1:]:
                    assert (await asyncio.wait_for(opened[p].read(), 10)).round_id == (
                        second.round_id
                    )
    finally:
        await running.stop(0)


@contextlib.asynccontextmanager
async def _coordinator(
    tmp_path: Path, db_url: str | None, poll: float
) -> AsyncIterator[RunningCoordinator]:
    """A coordinator in a new home, polling every ``poll`` seconds, until the block ends."""
    home = init_home(tmp_path / "coord").root
    config = CoordinatorConfig(home=home, db_url=db_url, announce_poll_seconds=poll)
    running = await start_coordinator(config)
    try:
        yield running
    finally:
        await running.stop(0)


@contextlib.asynccontextmanager
async def _following_a_round(
    running: RunningCoordinator, adm: AdminClient, pid: str, root: Path
) -> AsyncIterator[tuple[AgentIdentity, str, asyncio.Future[object]]]:
    """A practice enrolled, its stream open and told of a round: its identity, the
    round, and the stream's next read (pending)."""
    identity = await _enrol(adm, running.address, running.enrol_port, pid, root)
    async with _watching(identity, running.address) as stream:
        first = await adm.start_round(AS_OF, DEFINITIONS)
        assert (await asyncio.wait_for(stream.read(), 10)).round_id == first.round_id
        yield identity, first.round_id, asyncio.ensure_future(stream.read())


async def test_enrolling_a_practice_again_closes_the_old_certificates_stream_at_once(
    tmp_path: Path, db_url: str | None
) -> None:
    async with _coordinator(tmp_path, db_url, 60) as running, admin(running) as adm:
        async with _following_a_round(running, adm, "M1", tmp_path) as (_, round_id, read):
            moved = await adm.invitation("M1", "Practice M1", "East", replace=True)
            new = await enrol(running.address, running.enrol_port, moved.token, tmp_path / "M2")
            refused = await _refused(read, AT_ONCE)
            assert "not the one enrolled" in (refused.details() or "")
        async with _watching(new, running.address) as stream:  # the new machine's
            assert (await asyncio.wait_for(stream.read(), 10)).round_id == round_id


async def test_a_revocation_no_process_was_told_of_closes_the_stream_within_the_poll(
    tmp_path: Path, db_url: str | None
) -> None:
    """The fallback (docs/scaling.md): a revocation written to the store with no
    notification (as while a process's listener reconnects) closes the stream within
    ``announce_poll_seconds`` + the enrolment cache's 2 s."""
    poll = 0.5
    async with (
        _coordinator(tmp_path, db_url, poll) as running,
        admin(running) as adm,
        _following_a_round(running, adm, "F1", tmp_path) as (_, _, read),
    ):
        elsewhere = Store(db_url or running.home.database)  # another writer, no NOTIFY
        try:
            with elsewhere.engine.begin() as conn:  # the revocation, and nothing more
                conn.execute(
                    practices.update().where(practices.c.practice_id == "F1").values(revoked=True)
                )
        finally:
            elsewhere.close()
        bound = poll + ENROLMENT_FRESH_SECONDS
        started = time.monotonic()
        await _refused(read, bound + 3.0)  # slack for a loaded machine
        took = time.monotonic() - started
        print(f"closed by the poll {took:.2f} s after the revocation (bound {bound} s)")


def _der(path: Path) -> bytes:
    """The DER bytes of a PEM certificate file (what rounds and receipts carry)."""
    return cert_from_pem(path.read_bytes()).public_bytes(Encoding.DER)


def _put_signer(home: Path, source: Path, *names: str) -> None:
    """Copy signing files from ``source`` into ``home`` as an operator should: each whole."""
    for name in names:
        fresh = home / f"{name}.copy"
        fresh.write_bytes((source / name).read_bytes())
        os.chmod(fresh, 0o600)
        os.replace(fresh, home / name)


def _receipt(agent: Agent, round_id: str) -> Receipt:
    """The receipt the agent holds for a round."""
    entry = agent.outbox.get(round_id)
    assert entry is not None and entry.receipt
    return wire.receipt_from_proto(common_pb2.Receipt.FromString(entry.receipt))


@pytest.mark.postgres
@pytest.mark.slow
async def test_a_rotated_signing_key_signs_the_next_round_on_every_process(
    tmp_path: Path, postgres_database_url: str
) -> None:
    with _two_processes(tmp_path, postgres_database_url) as (a, b):
        agents: dict[str, Agent] = {}
        async with _admin(a) as adm:
            for pid, process in (("KA", a), ("KB", b)):
                await _enrol(adm, process.address, process.enrol_port, pid, tmp_path)
                agents[pid] = Agent(tmp_path / pid, fixed_prepare(pid))
            before = await adm.start_round(AS_OF, DEFINITIONS)
        for agent in agents.values():
            [outcome] = await agent.run_once()
            assert outcome.status == "submitted"
        old = {p: _receipt(agents[p], before.round_id) for p in agents}

        await _cli("signing-key", "rotate", "--home", str(a.home))
        _put_signer(b.home, a.home, "signing.key", "signing.crt")  # to the second host
        new_cert = _der(a.home / "signing.crt")
        assert new_cert != before.signer_certificate

        async with _admin(a) as adm:
            await adm.close_round(before.round_id)
        for process, as_of in ((b, AS_OF), (a, AS_OF)):
            async with _admin(process) as adm:
                round_ = await adm.start_round(as_of, DEFINITIONS)
                assert round_.signer_certificate == new_cert  # neither process restarted
            for pid, agent in agents.items():
                [outcome] = await agent.run_once()  # the agent verifies the round first
                assert outcome.status == "submitted" and outcome.receipt is not None
                assert outcome.receipt.signer_certificate == new_cert
                verify_receipt(agent.identity.ca_cert, outcome.receipt)
                verify_round(agent.identity.ca_cert, round_)
                verify_receipt(agent.identity.ca_cert, old[pid])  # signed before: still good
            async with _admin(process) as adm:
                await adm.close_round(round_.round_id)
        for process in (a, b):
            assert "event=signing_key_taken" in process.output()


async def test_one_process_on_sqlite_signs_with_a_rotated_key_from_its_next_round(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    running = await start(tmp_path / "coord")
    home = running.home.root
    try:
        async with admin(running) as adm:
            await _enrol(adm, running.address, running.enrol_port, "S1", tmp_path)
            agent = Agent(tmp_path / "S1", fixed_prepare("S1"))
            first = await adm.start_round(AS_OF, DEFINITIONS)
            [outcome] = await agent.run_once()
            assert outcome.receipt is not None
            old_cert = first.signer_certificate

            # A new pair arriving one file at a time: the key alone is not taken.
            staged = tmp_path / "staged"
            staged.mkdir()
            fresh = running.home.load_ca().issue_signer()
            (staged / "signing.key").write_bytes(key_to_pem(fresh.key))
            (staged / "signing.crt").write_bytes(cert_to_pem(fresh.cert))
            await adm.close_round(first.round_id)
            _put_signer(home, staged, "signing.key")
            half = await adm.start_round(AS_OF, DEFINITIONS)
            assert half.signer_certificate == old_cert
            assert "event=signing_key_not_taken" in caplog.text
            _put_signer(home, staged, "signing.crt")
            whole = await adm.start_round(AS_OF, DEFINITIONS)
            assert whole.signer_certificate == fresh.certificate_der

            # The command itself, while the process serves: the next round and receipt.
            await adm.close_round(half.round_id)
            await adm.close_round(whole.round_id)
            await _cli("signing-key", "rotate", "--home", str(home))
            rotated = _der(home / "signing.crt")
            assert rotated not in (old_cert, fresh.certificate_der)
            third = await adm.start_round(AS_OF, DEFINITIONS)
            assert third.signer_certificate == rotated
            [answer] = await agent.run_once()
            assert answer.receipt is not None and answer.receipt.signer_certificate == rotated
            verify_receipt(agent.identity.ca_cert, answer.receipt)
            verify_receipt(agent.identity.ca_cert, outcome.receipt)  # signed before: still good
    finally:
        await running.stop(0)
