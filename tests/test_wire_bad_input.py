"""Bad input over the real wire: tokens, foreign certificates, closed rounds, resends."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from pathlib import Path

import grpc
import pytest
from _coordinator_helpers import (
    AS_OF,
    DEFINITIONS,
    admin,
    fixed_prepare,
    refusing_prepare,
    rows_for,
    signed_request,
    start,
)

from agent.client import Agent, enrol
from agent.identity_store import AgentHome, AgentIdentity
from agent.outbox import AnswerKind, Delivery
from coordinator.server import RunningCoordinator
from fedpeer import wire
from fedpeer.channel import secure_channel
from fedpeer.errors import CoordinatorUnreachable, EnrolmentError, IdentityError
from fedpeer.identity import (
    CertificateAuthority,
    cert_to_pem,
    generate_key,
    key_to_pem,
    make_csr,
)
from fedpeer.policy import DisclosurePolicy
from fedpeer.release import ResultRow
from fedpeer.v1 import admin_pb2, admin_pb2_grpc, agent_pb2, agent_pb2_grpc


@pytest.fixture
async def coordinator(tmp_path: Path):
    running = await start(tmp_path / "coord")
    yield running
    await running.stop(0)


async def _enrolled(running: RunningCoordinator, tmp_path: Path, pid: str) -> AgentIdentity:
    async with admin(running) as adm:
        token, _ = await adm.invite(pid, f"Practice {pid}", "South")
    return await enrol(running.address, running.enrol_port, token, tmp_path / pid)


def _stub(identity: AgentIdentity) -> tuple[grpc.aio.Channel, agent_pb2_grpc.AgentStub]:
    channel = secure_channel(
        identity.coordinator, identity.ca_pem, identity.key_pem, identity.cert_pem
    )
    return channel, agent_pb2_grpc.AgentStub(channel)


async def test_token_works_once(coordinator: RunningCoordinator, tmp_path: Path) -> None:
    async with admin(coordinator) as adm:
        token, _ = await adm.invite("B1", "B one", "West")
    first = await enrol(coordinator.address, coordinator.enrol_port, token, tmp_path / "b1")
    with pytest.raises(EnrolmentError, match="already been used"):
        await enrol(coordinator.address, coordinator.enrol_port, token, tmp_path / "b1-again")
    assert not AgentHome(tmp_path / "b1-again").is_enrolled()
    record = coordinator.store.practice("B1")
    assert record is not None
    from fedpeer.identity import cert_from_pem, fingerprint

    assert record.cert_fingerprint == fingerprint(cert_from_pem(first.cert_pem))


async def test_unknown_and_malformed_tokens(
    coordinator: RunningCoordinator, tmp_path: Path
) -> None:
    async with admin(coordinator) as adm:
        token, _ = await adm.invite("B2", "B two", "West")
    forged = token.rsplit(".", 1)[0] + ".not-the-secret"
    with pytest.raises(EnrolmentError, match="not known"):
        await enrol(coordinator.address, coordinator.enrol_port, forged, tmp_path / "x")
    with pytest.raises(EnrolmentError, match="not a fedpeer enrolment token"):
        await enrol(coordinator.address, coordinator.enrol_port, "hello", tmp_path / "y")
    # A token naming another CA is refused before anything is sent to this server.
    other = "fp1." + "0" * 64 + ".secret"
    with pytest.raises(EnrolmentError, match="does not hold the CA"):
        await enrol(coordinator.address, coordinator.enrol_port, other, tmp_path / "z")
    record = coordinator.store.practice("B2")
    assert record is not None and record.cert_fingerprint is None


async def test_certificate_from_another_ca_is_refused(
    coordinator: RunningCoordinator, tmp_path: Path
) -> None:
    real = await _enrolled(coordinator, tmp_path, "C1")
    rogue_ca = CertificateAuthority.create("rogue")
    key = generate_key()
    cert = rogue_ca.issue_practice(make_csr(key), "C1")
    rogue = AgentIdentity(
        practice_id="C1",
        coordinator=coordinator.address,
        key_pem=key_to_pem(key),
        cert_pem=cert_to_pem(cert),
        ca_pem=real.ca_pem,  # it trusts the real coordinator, but holds a foreign cert
    )
    AgentHome(tmp_path / "rogue").save(rogue)
    async with admin(coordinator) as adm:
        round_ = await adm.start_round(AS_OF, DEFINITIONS)
    agent = Agent(tmp_path / "rogue", fixed_prepare("C1"), max_attempts=1)
    with pytest.raises(IdentityError, match="TLS handshake"):
        await agent.run_once()
    status = coordinator.store.round_status(round_.round_id)
    assert [p.state for p in status.practices] == ["pending"]
    assert coordinator.store.released_rows_frame(round_.round_id).empty


async def test_no_client_certificate_on_the_mutual_tls_port(
    coordinator: RunningCoordinator,
) -> None:
    ca_pem = coordinator.ca.cert_pem
    async with secure_channel(coordinator.address, ca_pem) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await agent_pb2_grpc.AgentStub(channel).ListOpenRounds(
                agent_pb2.ListOpenRoundsRequest(), timeout=5
            )
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_roles_are_enforced(coordinator: RunningCoordinator, tmp_path: Path) -> None:
    identity = await _enrolled(coordinator, tmp_path, "D1")
    channel, _ = _stub(identity)
    async with channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await admin_pb2_grpc.AdminStub(channel).ListPractices(
                admin_pb2.ListPracticesRequest(), timeout=5
            )
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    home = coordinator.home
    async with secure_channel(
        coordinator.address,
        home.ca_cert.read_bytes(),
        home.admin_key.read_bytes(),
        home.admin_cert.read_bytes(),
    ) as admin_channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await agent_pb2_grpc.AgentStub(admin_channel).ListOpenRounds(
                agent_pb2.ListOpenRoundsRequest(), timeout=5
            )
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_revoked_practice_is_refused(coordinator: RunningCoordinator, tmp_path: Path) -> None:
    await _enrolled(coordinator, tmp_path, "E1")
    async with admin(coordinator) as adm:
        await adm.revoke("E1")
    agent = Agent(tmp_path / "E1", fixed_prepare("E1"), max_attempts=1)
    with pytest.raises(IdentityError, match="revoked"):
        await agent.run_once()


async def test_revoking_a_practice_closes_its_open_round_stream(
    coordinator: RunningCoordinator, tmp_path: Path
) -> None:
    """The stream an agent holds open to learn of rounds ends soon after its practice is
    revoked (the helpers' coordinator re-checks every 0.2 s), not at its next call."""
    identity = await _enrolled(coordinator, tmp_path, "E2")
    channel, stub = _stub(identity)
    async with channel:
        stream = stub.WatchRounds(agent_pb2.WatchRoundsRequest())
        async with admin(coordinator) as adm:
            round_ = await adm.start_round(AS_OF, DEFINITIONS)
            first = await asyncio.wait_for(stream.read(), 10)
            assert first.round_id == round_.round_id
            await adm.revoke("E2")
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await asyncio.wait_for(stream.read(), 10)
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "revoked" in (caught.value.details() or "")


async def test_closed_unknown_resent_and_conflicting_submissions(
    coordinator: RunningCoordinator, tmp_path: Path
) -> None:
    identity = await _enrolled(coordinator, tmp_path, "F1")
    async with admin(coordinator) as adm:
        round_ = await adm.start_round(AS_OF, DEFINITIONS)
        closed = await adm.start_round(AS_OF, DEFINITIONS)
        await adm.close_round(closed.round_id)
    rows = rows_for("F1")
    good = signed_request(identity, round_, rows)
    channel, stub = _stub(identity)
    async with channel:
        first = await stub.Submit(good)
        again = await stub.Submit(good)
        assert again == first  # the same receipt, signature and all

        other = replace(rows[0], numerator=70, denominator=90, value=70 / 90)
        changed = signed_request(identity, round_, [other, *rows[1:]])
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Submit(changed)
        assert caught.value.code() == grpc.StatusCode.ALREADY_EXISTS

        late = signed_request(identity, closed, rows)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Submit(late)
        assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "closed" in (caught.value.details() or "")

        unknown = signed_request(identity, round_, rows)
        unknown.round_id = "no-such-round"
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Submit(unknown)
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND

        # The document answers one round; the request names another: refused.
        crossed = signed_request(identity, round_, rows)
        crossed.round_id = closed.round_id
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Submit(crossed)
        assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION

        bad_key = signed_request(identity, round_, rows)
        bad_key.idempotency_key = "0" * 64
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Submit(bad_key)
        assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION

        unsigned = agent_pb2.SubmitRequest(round_id=round_.round_id, idempotency_key="0" * 64)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Submit(unsigned)
        assert "upgrade fedpeer" in (caught.value.details() or "")

    frame = coordinator.store.released_rows_frame(round_.round_id)
    assert len(frame) == len(rows)
    assert coordinator.store.released_rows_frame(closed.round_id).empty


async def test_lost_acknowledgement_is_resent_from_the_outbox(
    coordinator: RunningCoordinator, tmp_path: Path
) -> None:
    identity = await _enrolled(coordinator, tmp_path, "G1")
    async with admin(coordinator) as adm:
        round_ = await adm.start_round(AS_OF, DEFINITIONS)
    request = signed_request(identity, round_, rows_for("G1"))
    channel, stub = _stub(identity)
    async with channel:
        stored = await stub.Submit(request)  # the coordinator stored it; the ack was "lost"
    agent = Agent(tmp_path / "G1", fixed_prepare("G1"))
    agent.outbox.put(
        round_.round_id, AnswerKind.SUBMISSION, request.idempotency_key, request.SerializeToString()
    )
    outcomes = await agent.run_once()
    assert [o.status for o in outcomes] == ["submitted", "already"]
    assert outcomes[0].receipt is not None
    assert outcomes[0].receipt.submission_id == stored.submission_id
    assert agent.outbox.get(round_.round_id).state == Delivery.ACKNOWLEDGED


async def test_refusal_and_late_round(coordinator: RunningCoordinator, tmp_path: Path) -> None:
    await _enrolled(coordinator, tmp_path, "H1")
    h2 = await _enrolled(coordinator, tmp_path, "H2")
    async with admin(coordinator) as adm:
        round_ = await adm.start_round(AS_OF, DEFINITIONS)
        refuser = Agent(tmp_path / "H1", refusing_prepare("awaiting Caldicott sign-off"))
        assert [o.status for o in await refuser.run_once()] == ["refused"]
        status = await adm.status(round_.round_id)
        states = {p.practice_id: (p.state, p.detail) for p in status.practices}
        assert states == {
            "H1": ("refused", "awaiting Caldicott sign-off"),
            "H2": ("pending", ""),
        }
        # H2 prepared its answer, then the round closed before it could send.
        late = Agent(tmp_path / "H2", fixed_prepare("H2"))
        request = signed_request(h2, round_, rows_for("H2"))
        late.outbox.put(
            round_.round_id,
            AnswerKind.SUBMISSION,
            request.idempotency_key,
            request.SerializeToString(),
        )
        await adm.close_round(round_.round_id)
    outcomes = await late.run_once()
    assert [o.status for o in outcomes] == ["rejected"]
    assert late.outbox.get(round_.round_id).state == Delivery.REJECTED


async def test_unreachable_coordinator_is_a_plain_sentence(
    coordinator: RunningCoordinator, tmp_path: Path
) -> None:
    await _enrolled(coordinator, tmp_path, "J1")
    await coordinator.stop(0)
    agent = Agent(tmp_path / "J1", fixed_prepare("J1"), max_attempts=2, backoff_seconds=0.05)
    with pytest.raises(CoordinatorUnreachable) as caught:
        await agent.run_once()
    port = coordinator.port
    assert str(caught.value) == (
        f"cannot reach the coordinator at 127.0.0.1:{port}: is it running, and does the "
        f"firewall allow outbound connections to port {port}?"
    )


async def test_watching_agent_answers_a_round_as_it_opens(
    coordinator: RunningCoordinator, tmp_path: Path
) -> None:
    await _enrolled(coordinator, tmp_path, "K1")
    agent = Agent(tmp_path / "K1", fixed_prepare("K1"))
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run_forever(stop))
    try:
        await asyncio.sleep(0.3)  # subscribed, nothing open yet
        async with admin(coordinator) as adm:
            round_ = await adm.start_round(AS_OF, DEFINITIONS)
            for _ in range(100):
                status = await adm.status(round_.round_id)
                if status.practices[0].state == "submitted":
                    break
                await asyncio.sleep(0.05)
        assert status.practices[0].state == "submitted"
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)


def test_rows_keep_absent_and_zero_apart() -> None:
    row = ResultRow("x", "total", numerator=0, denominator=None, count=None, mean=0.0)
    assert wire.row_from_proto(wire.row_to_proto(row)) == row


async def test_coordinator_rechecks_disclosure(
    coordinator: RunningCoordinator, tmp_path: Path
) -> None:
    identity = await _enrolled(coordinator, tmp_path, "L1")
    async with admin(coordinator) as adm:
        round_ = await adm.start_round(AS_OF, DEFINITIONS)
    leaky = [
        ResultRow("dm_hba1c_le58", numerator=3, denominator=41, value=3 / 41),
        *rows_for("L1")[1:],
    ]
    channel, stub = _stub(identity)
    async with channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Submit(signed_request(identity, round_, leaky))
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "breaks the round's rules" in (caught.value.details() or "")
    assert "3" not in (caught.value.details() or "").replace(round_.round_id, "")
    assert coordinator.store.released_rows_frame(round_.round_id).empty


async def test_health_is_served_on_both_ports(coordinator: RunningCoordinator) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    async with secure_channel(coordinator.enrol_address, coordinator.ca.cert_pem) as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service="fedpeer.v1.Enrolment"), timeout=5
        )
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_watching_agent_reconnects_after_a_restart(tmp_path: Path) -> None:
    from coordinator.server import CoordinatorConfig, start_coordinator

    first = await start(tmp_path / "coord")
    await _enrolled(first, tmp_path, "M1")
    agent = Agent(tmp_path / "M1", fixed_prepare("M1"), backoff_seconds=0.1)
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run_forever(stop))
    await asyncio.sleep(0.3)
    await first.stop(0)
    await asyncio.sleep(0.3)  # the agent is now retrying
    config = CoordinatorConfig(home=tmp_path / "coord", port=first.port, announce_poll_seconds=0.2)
    second = await start_coordinator(config)
    try:
        async with admin(second) as adm:
            round_ = await adm.start_round(AS_OF, DEFINITIONS)
            for _ in range(200):
                status = await adm.status(round_.round_id)
                if status.practices[0].state == "submitted":
                    break
                await asyncio.sleep(0.05)
        assert status.practices[0].state == "submitted"
        assert not task.done()
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
        await second.stop(0)


async def test_prepare_failure_sends_nothing(
    coordinator: RunningCoordinator, tmp_path: Path
) -> None:
    from fedpeer.errors import ExtractError

    await _enrolled(coordinator, tmp_path, "N1")

    def broken(round_: object) -> list[ResultRow]:
        raise ExtractError("missing column", table="patients", column="sex")

    async with admin(coordinator) as adm:
        round_ = await adm.start_round(AS_OF, DEFINITIONS)
    outcomes = await Agent(tmp_path / "N1", broken).run_once()
    assert [(o.status, o.detail) for o in outcomes] == [
        ("failed", "ExtractError: table patients, column sex: missing column")
    ]
    assert Agent(tmp_path / "N1", broken).outbox.get(round_.round_id) is None
    retry = await Agent(tmp_path / "N1", fixed_prepare("N1")).run_once()
    assert [o.status for o in retry] == ["submitted"]


async def test_replicas_sharing_a_store_announce_each_others_rounds(tmp_path: Path) -> None:
    import dataclasses

    replica_a = await start(tmp_path / "coord")
    replica_b = await start(tmp_path / "coord")  # same home: same CA, same SQLite store
    try:
        identity = await _enrolled(replica_a, tmp_path, "R1")
        AgentHome(tmp_path / "R1").save(
            dataclasses.replace(identity, coordinator=replica_b.address)
        )
        agent = Agent(tmp_path / "R1", fixed_prepare("R1"))
        stop = asyncio.Event()
        task = asyncio.create_task(agent.run_forever(stop))
        await asyncio.sleep(0.3)
        async with admin(replica_a) as adm:
            round_ = await adm.start_round(AS_OF, DEFINITIONS)
            for _ in range(100):
                status = await adm.status(round_.round_id)
                if status.practices[0].state == "submitted":
                    break
                await asyncio.sleep(0.05)
        assert status.practices[0].state == "submitted"
        stop.set()
        await asyncio.wait_for(task, 5)
    finally:
        await replica_a.stop(0)
        await replica_b.stop(0)


async def test_agent_refuses_a_round_whose_signature_fails(
    coordinator: RunningCoordinator, tmp_path: Path
) -> None:
    import sqlalchemy as sa

    from coordinator.tables import rounds as rounds_table

    await _enrolled(coordinator, tmp_path, "S1")
    async with admin(coordinator) as adm:
        round_ = await adm.start_round(AS_OF, DEFINITIONS)
    # Someone with write access to the store loosens the policy without the CA key.
    with coordinator.store.engine.begin() as conn:
        conn.execute(
            sa.update(rounds_table)
            .where(rounds_table.c.round_id == round_.round_id)
            .values(policy_json=json.dumps(DisclosurePolicy(rounding_base=1).to_data()))
        )
    seen: list[object] = []
    agent = Agent(tmp_path / "S1", fixed_prepare("S1", seen))  # type: ignore[arg-type]
    with pytest.raises(IdentityError, match="signature does not verify"):
        await agent.run_once()
    assert seen == [] and agent.outbox.entries() == []


async def test_re_enrolment_replaces_the_old_certificate(
    coordinator: RunningCoordinator, tmp_path: Path
) -> None:
    old = await _enrolled(coordinator, tmp_path, "T1")
    async with admin(coordinator) as adm:
        # A token for an enrolled practice is issued only when asked to replace it.
        made = await adm.invitation("T1", "Practice T1", "South", replace=True)
    await enrol(coordinator.address, coordinator.enrol_port, made.token, tmp_path / "T1-new")
    channel, stub = _stub(old)
    async with channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.ListOpenRounds(agent_pb2.ListOpenRoundsRequest(), timeout=5)
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "not the one enrolled" in (caught.value.details() or "")
    assert await Agent(tmp_path / "T1-new", fixed_prepare("T1")).run_once() == []
