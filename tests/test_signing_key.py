"""The signing key over the real wire: rounds and receipts signed by it, forgeries refused.

A real coordinator on 127.0.0.1 (port 0), real agents over mutual TLS. The forgeries are
what someone who can write the coordinator's database, but holds neither its signing key
nor its CA key, could plant: a round or a receipt signed by their own key under a
self-made certificate, a certificate from another CA, or the coordinator's own TLS
certificate.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import stat
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import grpc
import pytest
import sqlalchemy as sa
from _coordinator_helpers import AS_OF, DEFINITIONS, admin, fixed_prepare, start
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from test_signing_key_passphrase import PASSPHRASE, _cli

from agent.client import Agent, enrol
from agent.identity_store import AgentHome
from coordinator.ca import (
    CA_PASSPHRASE_ENV,
    CoordinatorHome,
    init_home,
    load_keys,
    rotate_signer,
)
from coordinator.round_states import RoundState
from coordinator.rounds import isoformat_z
from coordinator.server import CoordinatorConfig, RunningCoordinator, start_coordinator
from coordinator.tables import submissions
from fedpeer import wire
from fedpeer.channel import VersionHeader, channel_options
from fedpeer.collection import Receipt, Round
from fedpeer.errors import FedpeerError, IdentityError
from fedpeer.identity import (
    SIGNER_USAGE,
    CertificateAuthority,
    SigningIdentity,
    cert_to_pem,
    key_from_pem,
    key_to_pem,
    verify_signer,
)
from fedpeer.signing import sign, verify, verify_receipt, verify_round
from fedpeer.v1 import agent_pb2, agent_pb2_grpc


async def _restart(stopped: RunningCoordinator) -> RunningCoordinator:
    """The coordinator started again on the ports its agents recorded at enrolment."""
    config = CoordinatorConfig(
        home=stopped.home.root,
        port=stopped.port,
        enrol_port=stopped.enrol_port,
        announce_poll_seconds=0.2,
    )
    return await start_coordinator(config)


def _self_made_signer() -> SigningIdentity:
    """An attacker's Ed25519 key under a self-signed certificate claiming the signer usage."""
    key = ed25519.Ed25519PrivateKey.generate()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fedpeer coordinator CA")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.ExtendedKeyUsage([SIGNER_USAGE]), critical=True)
        .sign(key, None)
    )
    return SigningIdentity(key, cert)


def test_the_signer_certificate_is_for_rounds_and_receipts_only(tmp_path: Path) -> None:
    home = init_home(tmp_path / "coord")
    for path in (home.signing_key, home.signing_cert):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    ca = home.load_ca()
    signer = CoordinatorHome(home.root)
    cert = x509.load_pem_x509_certificate(signer.signing_cert.read_bytes())
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    assert usage.critical and list(usage.value) == [SIGNER_USAGE]  # not TLS server or client
    key_usage = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert key_usage.critical and key_usage.value.digital_signature
    assert not key_usage.value.key_cert_sign and not key_usage.value.key_encipherment
    assert cert.not_valid_after_utc - cert.not_valid_before_utc < dt.timedelta(days=200)
    verify_signer(cert, ca.cert)
    # In date, this CA's, marked: each missing piece is refused in words.
    expired = ca.issue_signer(validity=-dt.timedelta(seconds=1)).cert
    with pytest.raises(IdentityError, match="expired or is not yet valid"):
        verify_signer(expired, ca.cert)
    _, server = ca.issue_server()
    with pytest.raises(IdentityError, match="not marked as the fedpeer round-and-receipt signer"):
        verify_signer(server, ca.cert)
    assert (
        ExtendedKeyUsageOID.SERVER_AUTH
        in server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    )


async def _enrolled_agent(
    running: RunningCoordinator, tmp_path: Path, pid: str, **kwargs: object
) -> Agent:
    async with admin(running) as adm:
        token, _ = await adm.invite(pid, f"Practice {pid}", "North")
    await enrol(running.address, running.enrol_port, token, tmp_path / pid)
    return Agent(tmp_path / pid, fixed_prepare(pid), **kwargs)  # type: ignore[arg-type]


async def test_rounds_and_receipts_are_signed_by_the_certified_signing_key(
    tmp_path: Path,
) -> None:
    running = await start(tmp_path / "coord")
    try:
        agent = await _enrolled_agent(running, tmp_path, "A81001")
        async with admin(running) as adm:
            round_ = await adm.start_round(AS_OF, DEFINITIONS)
        [outcome] = await agent.run_once()
        assert outcome.status == "submitted" and outcome.receipt is not None
        signer_der = running.ca.signer.certificate_der
        on_disk = x509.load_pem_x509_certificate(running.home.signing_cert.read_bytes())
        assert signer_der == on_disk.public_bytes(Encoding.DER)
        stored_round = running.store.round(round_.round_id)
        for item, document in (
            (stored_round, stored_round.manifest()),
            (outcome.receipt, outcome.receipt.document()),
        ):
            assert item.signer_certificate == signer_der
            verify(agent.identity.ca_cert, document, item.signature, item.signer_certificate)
            with pytest.raises(IdentityError):  # by the signing key, not the CA key
                verify(agent.identity.ca_cert, document, item.signature)
        verify_receipt(agent.identity.ca_cert, outcome.receipt)
    finally:
        await running.stop(0)


async def test_the_agent_refuses_forged_signers(tmp_path: Path) -> None:
    running = await start(tmp_path / "coord")
    try:
        # The acknowledgement fails once, so the submission stays pending and is sent again.
        failures = [IdentityError("audit log unavailable")]

        def acknowledged(*_: object) -> None:
            if failures:
                raise failures.pop()

        agent = await _enrolled_agent(running, tmp_path, "A81001", on_acknowledged=acknowledged)
        server_key = key_from_pem(running.home.server_key.read_bytes())
        server_cert = x509.load_pem_x509_certificate(running.home.server_cert.read_bytes())
        other_ca = CertificateAuthority.create().issue_signer()
        self_made = _self_made_signer()
        planted = [
            (self_made.key, self_made.cert, "not issued by this coordinator's CA"),
            (other_ca.key, other_ca.cert, "not issued by this coordinator's CA"),
            (server_key, server_cert, "not marked as the fedpeer round-and-receipt signer"),
            (self_made.key, running.ca.signer.cert, "signing key's signature does not verify"),
            (self_made.key, None, "the coordinator's signature does not verify"),
        ]
        for key, cert, refusal in planted:
            unsigned = Round(
                round_id=f"forged-{len(refusal)}-{os.urandom(3).hex()}",
                as_of=AS_OF,
                policy=running.home.network_policy(),
                definitions=DEFINITIONS,
                created_at=isoformat_z(dt.datetime.now(dt.UTC)),
            )
            forged = replace(
                unsigned,
                signature=sign(key, unsigned.manifest()),
                signer_certificate=b"" if cert is None else cert.public_bytes(Encoding.DER),
            )
            running.store.add_round(forged, dt.datetime.now(dt.UTC))
            with pytest.raises(IdentityError, match=refusal):
                await agent.run_once()
            running.store.set_round_state(
                forged.round_id, RoundState.CANCELLED, dt.datetime.now(dt.UTC)
            )
        assert agent.outbox.entries() == []  # nothing was answered for a forged round

        # A genuine round; its receipt is then replaced in the database by forged ones.
        async with admin(running) as adm:
            round_ = await adm.start_round(AS_OF, DEFINITIONS)
        with pytest.raises(IdentityError, match="audit log unavailable"):
            await agent.run_once()
        assert agent.outbox.entries("pending")
        for key, cert, refusal in planted[:3]:
            _replace_stored_receipt(running, round_.round_id, key, cert)
            with pytest.raises(IdentityError, match=refusal):
                await agent.resend()
            assert agent.outbox.entries("pending")  # still waiting for a receipt it trusts
    finally:
        await running.stop(0)


def _replace_stored_receipt(
    running: RunningCoordinator, round_id: str, key: object, cert: x509.Certificate
) -> None:
    with running.store.engine.begin() as conn:
        row = conn.execute(sa.select(submissions).where(submissions.c.round_id == round_id)).one()
        receipt = Receipt(
            row.submission_id,
            row.round_id,
            row.practice_id,
            row.received_at_text,
            row.content_sha256,
        )
        conn.execute(
            submissions.update()
            .where(submissions.c.submission_id == row.submission_id)
            .values(
                receipt_signature=sign(key, receipt.document()),  # type: ignore[arg-type]
                receipt_signer_certificate=cert.public_bytes(Encoding.DER),
            )
        )


@contextlib.asynccontextmanager
async def old_agent(
    running: RunningCoordinator, home: Path
) -> AsyncIterator[agent_pb2_grpc.AgentStub]:
    """The Agent service as an agent before 0.3.0 calls it: the production header, an old
    version, the enrolled practice's certificate."""
    identity = AgentHome(home).load()
    credentials = grpc.ssl_channel_credentials(identity.ca_pem, identity.key_pem, identity.cert_pem)
    async with grpc.aio.secure_channel(
        running.address,
        credentials,
        options=channel_options(),
        interceptors=[VersionHeader("0.2.0")],
    ) as channel:
        yield agent_pb2_grpc.AgentStub(channel)


async def _old_agent_get_round(running: RunningCoordinator, home: Path, round_id: str) -> Round:
    """GetRound as an agent before 0.3.0 calls it."""
    async with old_agent(running, home) as stub:
        message = await stub.GetRound(agent_pb2.GetRoundRequest(round_id=round_id), timeout=30)
        return wire.round_from_proto(message)


async def test_a_coordinator_without_its_ca_key_runs_rounds_but_not_enrolment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "coord"
    init_home(home, passphrase=PASSPHRASE)
    monkeypatch.setenv(CA_PASSPHRASE_ENV, PASSPHRASE.decode())
    running = await start(home)
    try:
        agent = await _enrolled_agent(running, tmp_path, "A81001")
        async with admin(running) as adm:
            token, _ = await adm.invite("A81002", "Practice A81002", "North")
    finally:
        await running.stop(0)

    monkeypatch.delenv(CA_PASSPHRASE_ENV)  # and pytest's stdin is no terminal: no prompt
    running = await _restart(running)
    try:
        assert running.ca.authority is None
        with pytest.raises(FedpeerError, match="enrolment needs the CA key") as refused:
            await enrol(running.address, running.enrol_port, token, tmp_path / "A81002")
        assert "\n" not in str(refused.value)
        async with admin(running) as adm:
            round_ = await adm.start_round(AS_OF, DEFINITIONS)
            [outcome] = await agent.run_once()
            assert outcome.status == "submitted" and outcome.receipt is not None
            verify_receipt(agent.identity.ca_cert, outcome.receipt)
            assert (await adm.status(round_.round_id)).practices[0].state == "submitted"
            closed = await adm.close_round(round_.round_id)
            assert closed.state == "closed"
            # Studies are signed by the signing key too (tests/test_study_signing.py).
            study = await adm.create_study(
                owner="Dr A Analyst",
                title="Diabetes control",
                purpose="To compare diabetes control across practices.",
                as_of=AS_OF,
                min_practices=5,
                definitions=list(DEFINITIONS[:1]),
            )
            assert study.signer_certificate == running.ca.signer.certificate_der
        # An agent before 0.3.0 checks against the CA key: told to upgrade, in words.
        with pytest.raises(grpc.aio.AioRpcError) as old:
            await _old_agent_get_round(running, tmp_path / "A81001", round_.round_id)
        assert old.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "upgrade the agent" in (old.value.details() or "")
    finally:
        await running.stop(0)

    # The refused call did not use the invitation up: with the CA key, it enrols.
    monkeypatch.setenv(CA_PASSPHRASE_ENV, PASSPHRASE.decode())
    running = await _restart(running)
    try:
        await enrol(running.address, running.enrol_port, token, tmp_path / "A81002")
        # ... and an agent before 0.3.0 gets the round signed by the CA key itself.
        old_round = await _old_agent_get_round(running, tmp_path / "A81001", round_.round_id)
        assert old_round.signer_certificate == b""
        verify(running.ca.cert, old_round.manifest(), old_round.signature)
    finally:
        await running.stop(0)


async def test_rotation_keeps_earlier_receipts_verifiable(tmp_path: Path) -> None:
    home = tmp_path / "coord"
    running = await start(home)
    failures = [IdentityError("audit log unavailable")]

    def acknowledged(*_: object) -> None:
        if failures:
            raise failures.pop()

    try:
        agent = await _enrolled_agent(running, tmp_path, "A81001", on_acknowledged=acknowledged)
        async with admin(running) as adm:
            first = await adm.start_round(AS_OF, DEFINITIONS)
        with pytest.raises(IdentityError, match="audit log unavailable"):
            await agent.run_once()  # stored and receipted; the agent did not record it yet
        old_signer = running.ca.signer.certificate_der
    finally:
        await running.stop(0)

    rotated = rotate_signer(CoordinatorHome(home), CoordinatorHome(home).load_ca())
    running = await _restart(running)
    try:
        assert running.ca.signer.certificate_der == rotated.certificate_der != old_signer
        [again] = await agent.resend()  # the stored receipt, signed before the rotation
        assert again.status == "submitted" and again.receipt is not None
        assert again.receipt.signer_certificate == old_signer
        verify_receipt(agent.identity.ca_cert, again.receipt)
        async with admin(running) as adm:
            await adm.close_round(first.round_id)
            second = await adm.start_round(dt.date(2026, 10, 31), DEFINITIONS)
        [outcome] = await agent.run_once()
        assert outcome.receipt is not None
        assert outcome.receipt.signer_certificate == rotated.certificate_der
        verify_round(agent.identity.ca_cert, running.store.round(second.round_id))
    finally:
        await running.stop(0)


def test_rotate_needs_the_ca_passphrase_and_says_so_in_one_line(tmp_path: Path) -> None:
    home = tmp_path / "coord"
    init_home(home, passphrase=PASSPHRASE)
    before = (home / "signing.crt").read_bytes()
    for env, said in (
        ({CA_PASSPHRASE_ENV: "wrong"}, "the passphrase does not open the private key"),
        ({CA_PASSPHRASE_ENV: ""}, CA_PASSPHRASE_ENV),
    ):
        failed = _cli(home, env, "signing-key", "rotate")
        out = (failed.stdout + failed.stderr).strip()
        assert failed.returncode == 1 and "Traceback" not in out
        assert len(out.splitlines()) == 1 and said in out
        assert (home / "signing.crt").read_bytes() == before
    ca_key = (home / "ca.key").read_bytes()
    (home / "ca.key").unlink()  # kept offline: the coordinator serves, rotation says why not
    assert load_keys(CoordinatorHome(home)).authority is None
    failed = _cli(home, {CA_PASSPHRASE_ENV: ""}, "signing-key", "rotate")
    out = (failed.stdout + failed.stderr).strip()
    assert failed.returncode == 1 and len(out.splitlines()) == 1
    assert "ca.key is not here: bring the CA key back from offline" in out
    (home / "ca.key").write_bytes(ca_key)
    done = _cli(home, {CA_PASSPHRASE_ENV: PASSPHRASE.decode()}, "signing-key", "rotate")
    assert done.returncode == 0, done.stderr
    after = x509.load_pem_x509_certificate((home / "signing.crt").read_bytes())
    assert (home / "signing.crt").read_bytes() != before
    verify_signer(after, x509.load_pem_x509_certificate((home / "ca.crt").read_bytes()))
    assert after.signature_hash_algorithm is not None
    assert isinstance(after.signature_hash_algorithm, hashes.SHA256)


def test_serve_renews_a_signer_with_the_ca_key_and_names_what_to_run_without_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = init_home(tmp_path / "coord", passphrase=PASSPHRASE)
    monkeypatch.delenv(CA_PASSPHRASE_ENV, raising=False)
    ca = home.load_ca(PASSPHRASE)

    def put(signer: SigningIdentity) -> None:
        home.signing_key.write_bytes(key_to_pem(signer.key))
        home.signing_cert.write_bytes(cert_to_pem(signer.cert))

    home.signing_key.unlink()  # a home made before signing keys
    with pytest.raises(IdentityError, match="holds no signing key: run `fedpeer-coordinator"):
        load_keys(home)
    made = load_keys(home, PASSPHRASE)
    assert made.authority is not None and home.signing_key.exists()
    verify_signer(made.signer.cert, made.cert)

    put(CertificateAuthority.create().issue_signer())  # another CA's: never used
    with pytest.raises(IdentityError, match="not issued by this coordinator's CA"):
        load_keys(home)
    put(ca.issue_signer(validity=dt.timedelta(days=10)))  # near its end
    kept = load_keys(home)  # without the CA key: kept, with a warning in the log
    near_end = kept.signer
    assert kept.authority is None and near_end.cert == x509.load_pem_x509_certificate(
        home.signing_cert.read_bytes()
    )
    renewed = load_keys(home, PASSPHRASE)
    assert renewed.signer.certificate_der != near_end.certificate_der
    assert renewed.signer.cert.not_valid_after_utc > near_end.cert.not_valid_after_utc
    # The renewal is in the home's files: a coordinator serving from it signs with it too.
    assert kept.signer.certificate_der == renewed.signer.certificate_der
