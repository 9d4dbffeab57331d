"""When the coordinator fails, the practice's release is kept, and nothing leaks in the error.

The coordinator's release check is a seam (``start_coordinator(document_check=...)``):
here it fails the way a store does (locked, restarting: ``OperationalError``) or the way
a bug does (any other exception, whose text may hold SQL and the database's host). The
agents and their outboxes are the real ones, over mutual TLS. A real 15 s outage of each
store, with twenty agents following a round, is in tests/test_outage.py.
"""

from __future__ import annotations

import asyncio
import errno
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import grpc
import pytest
import sqlalchemy as sa
from _coordinator_helpers import AS_OF, DEFINITIONS, admin, fixed_prepare, rows_for, signed_request

from agent.client import Agent, enrol
from agent.outbox import Delivery
from coordinator.ca import init_home
from coordinator.rounds import DocumentCheck
from coordinator.server import CoordinatorConfig, RunningCoordinator, start_coordinator
from fedpeer.channel import secure_channel
from fedpeer.collection import ReleaseDocument, Round
from fedpeer.errors import CoordinatorUnreachable
from fedpeer.v1 import agent_pb2_grpc

SECRET_SQL = "INSERT INTO submissions VALUES (...) -- host=db.internal.example dbname=fedpeer"


class Failing:
    """A release check that fails ``times`` times with ``error``, then lets releases in."""

    def __init__(self, error: Callable[[], Exception], times: int) -> None:
        self.error, self.left = error, times

    def __call__(self, document: ReleaseDocument, round_: Round) -> None:
        if self.left > 0:
            self.left -= 1
            raise self.error()


def _locked() -> Exception:
    return sa.exc.OperationalError(SECRET_SQL, {}, Exception("database is locked"))


def _out_of_files() -> Exception:
    return OSError(errno.EMFILE, "Too many open files")


def _bug() -> Exception:
    return RuntimeError(SECRET_SQL)


async def _coordinator(tmp_path: Path, check: DocumentCheck) -> RunningCoordinator:
    init_home(tmp_path / "coord")
    config = CoordinatorConfig(home=tmp_path / "coord", announce_poll_seconds=0.2)
    return await start_coordinator(config, document_check=check)


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[Callable[..., object]]:
    started: list[RunningCoordinator] = []

    async def make(check: DocumentCheck) -> tuple[RunningCoordinator, Agent, Round]:
        running = await _coordinator(tmp_path, check)
        started.append(running)
        async with admin(running) as adm:
            token, _ = await adm.invite("F1", "Failing Lane", "West")
            round_ = await adm.start_round(AS_OF, DEFINITIONS)
        await enrol(running.address, running.enrol_port, token, tmp_path / "F1")
        agent = Agent(tmp_path / "F1", fixed_prepare("F1"), max_attempts=2, backoff_seconds=0.01)
        return running, agent, round_

    yield make
    for running in started:
        await running.stop(0)


@pytest.mark.parametrize("failure", [_locked, _out_of_files], ids=["store-down", "no-file-handles"])
async def test_a_store_that_is_down_for_a_while_loses_nothing(site, failure) -> None:  # type: ignore[no-untyped-def]
    """The store fails three times (down, or the process is out of file handles): the
    agent's two tries in its first run both hear UNAVAILABLE (one plain line), the
    release stays in the outbox, and the next run stores it once."""
    running, agent, round_ = await site(Failing(failure, times=3))
    with pytest.raises(CoordinatorUnreachable, match="store is unavailable") as caught:
        await agent.run_once()
    assert SECRET_SQL not in str(caught.value)
    (pending,) = agent.outbox.entries("pending")
    assert pending.round_id == round_.round_id
    outcomes = await agent.run_once()
    assert [o.status for o in outcomes] == ["submitted", "already"]
    assert agent.outbox.get(round_.round_id).state == Delivery.ACKNOWLEDGED  # type: ignore[union-attr]
    assert running.store.signed_release(round_.round_id, "F1") is not None


async def test_an_internal_error_names_a_reference_not_the_sql_and_keeps_the_release(
    site, caplog: pytest.LogCaptureFixture
) -> None:  # type: ignore[no-untyped-def]
    running, agent, round_ = await site(Failing(_bug, times=2))
    identity = agent.identity
    async with secure_channel(
        identity.coordinator, identity.ca_pem, identity.key_pem, identity.cert_pem
    ) as channel:
        request = signed_request(identity, round_, rows_for("F1"))
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await agent_pb2_grpc.AgentStub(channel).Submit(request)
    assert caught.value.code() == grpc.StatusCode.INTERNAL
    details = caught.value.details() or ""
    assert "reference" in details and "db.internal" not in details and "INSERT" not in details
    reference = details.split("reference ")[1].split()[0]
    assert any(reference in r.getMessage() for r in caplog.records)  # the log has the details

    # The agent is not told its release is wrong, so it keeps it and sends it again.
    (outcome,) = await agent.run_once()
    assert outcome.status == "failed" and "INSERT" not in outcome.detail
    assert agent.outbox.get(round_.round_id).state == "pending"  # type: ignore[union-attr]
    outcomes = await agent.run_once()
    assert outcomes[0].status == "submitted"
    assert running.store.signed_release(round_.round_id, "F1") is not None


async def test_fedpeer_agent_outbox_shows_and_resends_what_is_pending(site) -> None:  # type: ignore[no-untyped-def]
    """The store is down for the agent's run; `fedpeer-agent outbox` shows the answer
    pending, and `outbox --resend` sends it once the store is back."""
    import typer
    from typer.testing import CliRunner

    from agent.cli_airlock import register

    running, agent, round_ = await site(Failing(_locked, times=2))
    with pytest.raises(CoordinatorUnreachable):
        await agent.run_once()
    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        """Airlock."""

    register(app)
    home = str(agent.home.root)
    runner = CliRunner()
    shown = await asyncio.to_thread(
        runner.invoke, app, ["outbox", "--home", home], terminal_width=200
    )
    assert shown.exit_code == 0 and "pending" in shown.output, shown.output
    resent = await asyncio.to_thread(
        runner.invoke, app, ["outbox", "--resend", "--home", home], terminal_width=200
    )
    assert resent.exit_code == 0, resent.output
    assert f"round {round_.round_id}: submitted" in resent.output
    assert running.store.signed_release(round_.round_id, "F1") is not None
