"""The agent says which fedpeer it is on every call; the coordinator refuses one too old."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc
import pytest
from _coordinator_helpers import AS_OF, DEFINITIONS, admin, fixed_prepare, start

from agent.client import Agent, enrol
from agent.identity_store import AgentHome
from coordinator.server import RunningCoordinator
from coordinator.services import version
from coordinator.services.version import VersionInterceptor, refusal, release
from fedpeer import __version__
from fedpeer.channel import VERSION_HEADER, channel_options
from fedpeer.collection import DefinitionDocument
from fedpeer.definitions import find_standard, serialize
from fedpeer.errors import VersionError
from fedpeer.v1 import agent_pb2, agent_pb2_grpc


def test_versions_compare_by_release() -> None:
    assert release("0.2.0") == (0, 2, 0)
    assert release("1.10") == (1, 10, 0)
    assert release("0.3.0rc1") == (0, 3, 0)
    assert release("0.2.0.dev4+g1234") == (0, 2, 0)
    assert release("latest") is None
    assert refusal("0.2.0", "0.2.0") is None
    assert refusal("0.10.0", "0.9.1") is None
    assert refusal("0.2.0", "0.10.0") == (
        "this agent is fedpeer 0.2.0; the coordinator needs at least 0.10.0: upgrade the agent"
    )
    assert refusal(None, "0.1.0") is None  # before 0.2.0 agents did not say
    assert "0.1.0 or older (it does not say)" in (refusal(None, "0.2.0") or "")
    assert "'latest', which is not one" in (refusal("latest", "0.1.0") or "")
    assert release(version.MINIMUM_AGENT_VERSION) <= release(__version__)


def standard_document(name: str) -> DefinitionDocument:
    """A standard definition as a round carries it."""
    return DefinitionDocument.of(name, serialize(find_standard(name)))


async def _enrolled(tmp_path: Path) -> tuple[RunningCoordinator, Path]:
    running = await start(tmp_path / "coord")
    async with admin(running) as adm:
        token, _ = await adm.invite("V1", "Vale Road", "North")
    home = tmp_path / "V1"
    await enrol(running.address, running.enrol_port, token, home)
    return running, home


async def test_a_current_agent_is_served_and_an_old_one_told_to_upgrade(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    running, home = await _enrolled(tmp_path)
    try:
        assert await Agent(home, fixed_prepare("V1")).run_once() == []
        # The coordinator now needs a newer agent than this one.
        monkeypatch.setattr(version, "MINIMUM_AGENT_VERSION", "99.0")
        with pytest.raises(VersionError) as refused:
            await Agent(home, fixed_prepare("V1"), max_attempts=1).run_once()
        assert str(refused.value) == (
            f"this agent is fedpeer {__version__}; the coordinator needs at least 99.0: "
            "upgrade the agent"
        )
        # So is a new enrolment from it, and the round subscription.
        async with admin(running) as adm:
            token, _ = await adm.invite("V2", "Vale Road 2", "North")
        with pytest.raises(VersionError):
            await enrol(running.address, running.enrol_port, token, tmp_path / "V2")
        with pytest.raises(VersionError):
            await Agent(home, fixed_prepare("V1"), max_attempts=1).run_forever()
    finally:
        await running.stop(0)


async def bare_call(
    running: RunningCoordinator,
    home: Path,
    call: Callable[[agent_pb2_grpc.AgentStub], Awaitable[object]],
) -> tuple[grpc.StatusCode, str]:
    """One Agent call on a bare channel, as agents before 0.2.0 made it: no version header
    unless the call gives one; its status and details."""
    identity = AgentHome(home).load()
    credentials = grpc.ssl_channel_credentials(identity.ca_pem, identity.key_pem, identity.cert_pem)
    async with grpc.aio.secure_channel(
        running.address, credentials, options=channel_options()
    ) as channel:
        try:
            await call(agent_pb2_grpc.AgentStub(channel))
        except grpc.aio.AioRpcError as exc:
            return exc.code(), exc.details() or ""
    return grpc.StatusCode.OK, ""


async def test_an_agent_that_does_not_say_is_taken_as_0_1_0(tmp_path: Path) -> None:
    running, home = await _enrolled(tmp_path)
    try:

        async def list_rounds(metadata: tuple[tuple[str, str], ...]) -> grpc.StatusCode:
            code, details = await bare_call(
                running,
                home,
                lambda stub: stub.ListOpenRounds(
                    agent_pb2.ListOpenRoundsRequest(), metadata=metadata, timeout=10
                ),
            )
            assert code == grpc.StatusCode.OK or details.endswith("upgrade the agent")
            return code

        assert await list_rounds(()) == grpc.StatusCode.OK
        assert await list_rounds(((VERSION_HEADER, "0.0.9"),)) == (
            grpc.StatusCode.FAILED_PRECONDITION
        )
        assert await list_rounds(((VERSION_HEADER, "garbled"),)) == (
            grpc.StatusCode.FAILED_PRECONDITION
        )
    finally:
        await running.stop(0)


def test_the_interceptor_checks_only_what_agents_call() -> None:
    assert VersionInterceptor().minimum == version.MINIMUM_AGENT_VERSION
    assert VersionInterceptor("0.5").minimum == "0.5"
    assert version.CHECKED_PREFIXES == ("/fedpeer.v1.Agent/", "/fedpeer.v1.Enrolment/")


async def test_a_round_that_standardises_tells_an_agent_before_0_4_0_to_upgrade(
    tmp_path: Path,
) -> None:
    # Agents before 0.4.0 cannot read a definition's ``standardise`` key: rather than
    # leave such an agent failing on its own, the coordinator says why when it asks.
    running, home = await _enrolled(tmp_path)
    try:
        plain = DEFINITIONS
        standardised = (*DEFINITIONS, standard_document("antibiotic_items_per_1000"))
        async with admin(running) as adm:
            ordinary = await adm.start_round(AS_OF, plain)
            asks = await adm.start_round(AS_OF, standardised)

        async def get_round(round_id: str, version_said: str) -> tuple[grpc.StatusCode, str]:
            return await bare_call(
                running,
                home,
                lambda stub: stub.GetRound(
                    agent_pb2.GetRoundRequest(round_id=round_id),
                    metadata=((VERSION_HEADER, version_said),),
                    timeout=10,
                ),
            )

        assert await get_round(ordinary.round_id, "0.3.0") == (grpc.StatusCode.OK, "")
        assert await get_round(asks.round_id, "0.4.0") == (grpc.StatusCode.OK, "")
        code, details = await get_round(asks.round_id, "0.3.0")
        assert code == grpc.StatusCode.FAILED_PRECONDITION
        assert details == (
            "this round has definitions that need fedpeer-agent 0.4.0 or newer: upgrade the agent"
        )
        assert release(__version__) >= release(version.STANDARDISE_AGENT_VERSION)
    finally:
        await running.stop(0)
