"""Revocation takes effect at once, over the real wire: practices' open streams, admins' calls.

The coordinator here re-reads the store only every 30 s, so a stream that closes within
a few seconds of a revocation was closed by the revocation itself, not by the re-check
that catches revocations made by another process.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import grpc
import pytest
from _coordinator_helpers import AS_OF, DEFINITIONS, admin
from typer.testing import CliRunner

from agent.client import enrol
from coordinator.admin_client import AdminClient
from coordinator.ca import CoordinatorHome, init_home
from coordinator.cli import app
from coordinator.server import CoordinatorConfig, RunningCoordinator, start_coordinator
from fedpeer.channel import secure_channel
from fedpeer.errors import FedpeerError, IdentityError
from fedpeer.identity import cert_from_pem, fingerprint
from fedpeer.v1 import agent_pb2, agent_pb2_grpc

runner = CliRunner()
SLOW_RECHECK = 30.0
AT_ONCE = 3.0  # generous on a loaded 2-core machine; ten times under the re-check


@pytest.fixture
async def coordinator(tmp_path: Path):
    init_home(tmp_path / "coord")
    config = CoordinatorConfig(home=tmp_path / "coord", announce_poll_seconds=SLOW_RECHECK)
    running = await start_coordinator(config)
    yield running
    await running.stop(0)


async def _cli(running: RunningCoordinator, home: Path, *args: str):  # type: ignore[no-untyped-def]
    argv = [*args, "--home", str(home), "--coordinator", running.address]
    return await asyncio.to_thread(runner.invoke, app, argv)


async def test_revoking_a_practice_closes_its_stream_at_once(
    coordinator: RunningCoordinator, tmp_path: Path
) -> None:
    async with admin(coordinator) as adm:
        token, _ = await adm.invite("S1", "Stream Lane", "East")
        other_token, _ = await adm.invite("S2", "Other Lane", "East")
    me = await enrol(coordinator.address, coordinator.enrol_port, token, tmp_path / "S1")
    other = await enrol(coordinator.address, coordinator.enrol_port, other_token, tmp_path / "S2")
    async with (
        secure_channel(me.coordinator, me.ca_pem, me.key_pem, me.cert_pem) as mine,
        secure_channel(other.coordinator, other.ca_pem, other.key_pem, other.cert_pem) as theirs,
    ):
        stream = agent_pb2_grpc.AgentStub(mine).WatchRounds(agent_pb2.WatchRoundsRequest())
        bystander = agent_pb2_grpc.AgentStub(theirs).WatchRounds(agent_pb2.WatchRoundsRequest())
        async with admin(coordinator) as adm:
            round_ = await adm.start_round(AS_OF, DEFINITIONS)
            assert (await asyncio.wait_for(stream.read(), 10)).round_id == round_.round_id
            assert (await asyncio.wait_for(bystander.read(), 10)).round_id == round_.round_id
            await adm.revoke("S1")
            revoked_at = time.monotonic()
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await asyncio.wait_for(stream.read(), AT_ONCE)
            assert time.monotonic() - revoked_at < AT_ONCE
            assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
            assert "revoked" in (caught.value.details() or "")
            # The other practice's stream was not touched, and stays open.
            second = await adm.start_round(AS_OF, DEFINITIONS)
            assert (await asyncio.wait_for(bystander.read(), 10)).round_id == second.round_id


def _deputy(running: RunningCoordinator, root: Path, name: str = "deputy") -> tuple[Path, str]:
    """A second admin's own certificate, issued with ``admin add``; its folder, fingerprint."""
    added = runner.invoke(
        app, ["admin", "add", name, "--out", str(root), "--home", str(running.home.root)]
    )
    assert added.exit_code == 0, added.output
    assert (root / "admin.key").stat().st_mode & 0o777 == 0o600
    return root, fingerprint(cert_from_pem((root / "admin.crt").read_bytes()))


async def test_a_revoked_admin_is_refused_at_its_next_call(
    coordinator: RunningCoordinator, tmp_path: Path
) -> None:
    deputy_root, deputy_fp = _deputy(coordinator, tmp_path / "deputy")
    main_root = coordinator.home.root
    async with AdminClient(coordinator.address, CoordinatorHome(deputy_root)) as deputy:
        assert await deputy.practices() == []  # works, and is now recorded

        listed = await _cli(coordinator, main_root, "admin", "list")
        assert listed.exit_code == 0, listed.output
        assert "deputy" in listed.output and deputy_fp[:16] in listed.output

        revoked = await _cli(coordinator, main_root, "admin", "revoke", "deputy")
        assert revoked.exit_code == 0, revoked.output
        assert deputy_fp[:16] in revoked.output

        # The same open channel, the very next call: refused.
        with pytest.raises(IdentityError, match="revoked"):
            await deputy.practices()

    # The remaining admin may not lock itself out by mistake.
    self_revoke = await _cli(coordinator, main_root, "admin", "revoke", "admin")
    assert isinstance(self_revoke.exception, FedpeerError)
    assert "this command runs with" in str(self_revoke.exception)
    unknown = await _cli(coordinator, main_root, "admin", "revoke", "nobody")
    assert isinstance(unknown.exception, FedpeerError)
    async with admin(coordinator) as adm:
        names = {(a.name, bool(a.revoked_at)) for a in await adm.admins()}
    assert names == {("admin", False), ("deputy", True)}


async def test_a_lost_admin_key_is_refused_before_its_first_call(
    coordinator: RunningCoordinator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="fedpeer.coordinator")
    lost_root, lost_fp = _deputy(coordinator, tmp_path / "lost", name="laptop")
    async with admin(coordinator) as adm:
        (revoked,) = await adm.revoke_admin(lost_fp.upper())
    assert revoked.fingerprint == lost_fp and revoked.revoked_by == "admin"
    async with AdminClient(coordinator.address, CoordinatorHome(lost_root)) as lost:
        with pytest.raises(IdentityError, match="revoked"):
            await lost.practices()
    assert any("event=refused reason=admin_revoked" in r.getMessage() for r in caplog.records)
