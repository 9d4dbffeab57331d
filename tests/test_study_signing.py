"""Studies signed by the signing key over the real wire, with the CA key offline or locked.

A real coordinator on 127.0.0.1, real agents over mutual TLS, SQLite and PostgreSQL. A
study is created, joined, aggregated and published while the coordinator runs without
its CA key (moved away, or encrypted and not unlocked): only the signing key signs it.
The forgeries are what someone who can write the coordinator's database, but holds
neither its signing key nor its CA key, could plant: a study signed by their own key
under a self-made certificate, a certificate from another CA, or the coordinator's own
TLS certificate. An agent before 0.3.0 is sent CA signatures, or told to upgrade.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import uuid
from pathlib import Path

import grpc
import pytest
from _coordinator_helpers import admin
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from test_signing_key import _self_made_signer, old_agent
from test_signing_key_passphrase import PASSPHRASE
from test_studies import AS_OF, OWNER, STEP_SECONDS, Network, _network

from coordinator.ca import CA_PASSPHRASE_ENV, CoordinatorHome
from coordinator.server import CoordinatorConfig, RunningCoordinator, start_coordinator
from coordinator.tables import studies
from fedpeer.collection import DefinitionDocument
from fedpeer.definitions import find_standard, serialize
from fedpeer.errors import IdentityError
from fedpeer.identity import CertificateAuthority, key_from_pem, key_to_pem
from fedpeer.signing import sign_bytes, verify_bytes, verify_signed
from fedpeer.studies import Study, StudyState
from fedpeer.v1 import agent_pb2

FLU = [find_standard("flu_vacc_65")]


async def _restart(net: Network, db_url: str | None) -> None:
    """The coordinator started again on the ports its agents recorded at enrolment."""
    old = net.running
    await net.admin.close()
    await old.stop(0)
    config = CoordinatorConfig(
        home=old.home.root,
        db_url=db_url,
        port=old.port,
        enrol_port=old.enrol_port,
        announce_poll_seconds=0.2,
        study_step_seconds=STEP_SECONDS,
        study_tick_seconds=0.1,
    )
    net.running = await start_coordinator(config)
    net.admin = admin(net.running)


def _lock_away(home: CoordinatorHome, how: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The CA key moved off the machine, or encrypted and not unlocked."""
    monkeypatch.delenv(CA_PASSPHRASE_ENV, raising=False)  # and pytest's stdin is no terminal
    if how == "offline":
        home.ca_key.rename(home.root.parent / "ca.key.offline")
    else:
        key = key_from_pem(home.ca_key.read_bytes())
        home.ca_key.write_bytes(key_to_pem(key, PASSPHRASE))


@pytest.mark.parametrize("how", ["offline", "encrypted"])
async def test_a_study_is_created_and_published_with_the_ca_key_offline(
    tmp_path: Path, db_url: str | None, how: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    net = await _network(tmp_path, practices=4, step_seconds=STEP_SECONDS, db_url=db_url)
    try:
        _lock_away(net.running.home, how, monkeypatch)
        await _restart(net, db_url)
        assert net.running.ca.authority is None  # serving without the CA key
        study_id = await net.study(FLU, min_practices=3)
        summary = await net.admin.study(study_id)
        signer = net.running.ca.signer
        assert summary.signer_certificate == signer.certificate_der
        ca_cert = net.running.ca.cert
        verify_signed(ca_cert, summary.study, summary.signature, summary.signer_certificate)
        with pytest.raises(IdentityError):  # by the signing key, not the CA key
            verify_bytes(ca_cert, summary.study, summary.signature, "the CA")

        await net.poll()
        joined = [m.practice_id for m in (await net.admin.study(study_id)).members]
        assert joined == [s.practice_id for s in net.sites]
        for site in net.sites:  # each agent checked the signer and kept the study
            local = site.local(study_id)
            assert local is not None and local.study.to_bytes() == summary.study
        await net.admin.close_study(study_id)
        state, _, detail = await net.until(study_id, {"published", "failed"})
        assert state == "published", detail
        assert (await net.admin.study_results(study_id)).practices == 4
    finally:
        await net.admin.close()
        await net.running.stop(0)


def _plant(running: RunningCoordinator, key: object, cert: x509.Certificate | None) -> str:
    """An open study signed by ``key``, its certificate ``cert`` (None: none sent)."""
    study = Study(
        study_id=f"study-{AS_OF.isoformat()}-{uuid.uuid4().hex[:8]}",
        owner=OWNER,
        title="Flu vaccination",
        purpose="To compare flu vaccination across practices.",
        as_of=AS_OF,
        min_practices=3,
        definitions=tuple(DefinitionDocument.of(d.id, serialize(d)) for d in FLU),
        created_at=dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    )
    document = study.to_bytes()
    with running.store.engine.begin() as conn:
        conn.execute(
            studies.insert().values(
                study_id=study.study_id,
                owner=study.owner,
                document=document,
                signature=sign_bytes(key, document),  # type: ignore[arg-type]
                signer_certificate=b"" if cert is None else cert.public_bytes(Encoding.DER),
                state=StudyState.OPEN.value,
                stage="",
                created_at=dt.datetime.now(dt.UTC),
            )
        )
    return study.study_id


async def test_the_agent_takes_part_only_in_studies_its_coordinators_signer_signed(
    tmp_path: Path, db_url: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    net = await _network(tmp_path, practices=1, step_seconds=STEP_SECONDS, db_url=db_url)
    try:
        running = net.running
        ca = CoordinatorHome(running.home.root).load_ca()
        signer = running.ca.signer
        server_key = key_from_pem(running.home.server_key.read_bytes())
        server_cert = x509.load_pem_x509_certificate(running.home.server_cert.read_bytes())
        foreign = CertificateAuthority.create().issue_signer()
        self_made = _self_made_signer()
        forged = {
            _plant(running, self_made.key, self_made.cert): "not issued by this coordinator's CA",
            _plant(running, foreign.key, foreign.cert): "not issued by this coordinator's CA",
            _plant(running, server_key, server_cert): "not marked as the fedpeer round-and-receipt",
            _plant(running, self_made.key, signer.cert): "signing key's signature does not verify",
            _plant(running, ca.key, signer.cert): "signing key's signature does not verify",
            _plant(running, self_made.key, None): "the coordinator's signature does not verify",
        }
        genuine = _plant(running, signer.key, signer.cert)
        by_ca = _plant(running, ca.key, None)  # a coordinator before signing keys
        caplog.set_level(logging.WARNING, logger="fedpeer.agent")
        [site] = net.sites
        await site.run()

        refused = {
            m.group(1): m.group(2)
            for r in caplog.records
            if (m := re.match(r"event=study_refused study=(\S+) reason=(.*)", r.getMessage()))
        }
        assert set(refused) == set(forged)
        for study_id, reason in forged.items():
            assert reason in refused[study_id]
            assert site.local(study_id) is None  # never shown to the practice, never joined
        members = {
            Study.from_bytes(s.study).study_id: [m.practice_id for m in s.members]
            for s in await net.admin.studies()
        }
        assert all(members[study_id] == [] for study_id in forged)
        for study_id in (genuine, by_ca):
            assert site.local(study_id) is not None
            assert members[study_id] == [site.practice_id]  # agent.toml accepts the owner
    finally:
        await net.admin.close()
        await net.running.stop(0)


async def _old_agent_list_studies(
    running: RunningCoordinator, home: Path
) -> agent_pb2.ListStudiesResponse:
    """ListStudies as an agent before 0.3.0 calls it."""
    async with old_agent(running, home) as stub:
        return await stub.ListStudies(agent_pb2.ListStudiesRequest(), timeout=30)


async def test_an_agent_before_0_3_0_gets_ca_signed_studies_or_is_told_to_upgrade(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    net = await _network(tmp_path, practices=1, step_seconds=STEP_SECONDS)
    try:
        [site] = net.sites
        study_id = await net.study(FLU, min_practices=3)
        ca_cert = net.running.ca.cert
        # With the CA key at hand: the study as the old agent checks it, by the CA key.
        [listing] = (await _old_agent_list_studies(net.running, site.home)).studies
        assert Study.from_bytes(listing.study).study_id == study_id
        assert listing.signer_certificate == b""
        verify_bytes(ca_cert, listing.study, listing.signature, "the coordinator")
        stored = await net.admin.study(study_id)  # stored as the signing key signed it
        assert stored.signer_certificate == net.running.ca.signer.certificate_der

        _lock_away(net.running.home, "offline", monkeypatch)
        await _restart(net, None)
        with pytest.raises(grpc.aio.AioRpcError) as old:
            await _old_agent_list_studies(net.running, site.home)
        assert old.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "upgrade the agent (fedpeer 0.3.0 or newer)" in (old.value.details() or "")
        await site.run()  # today's agent checks the signer: it takes part
        assert [m.practice_id for m in (await net.admin.study(study_id)).members] == [
            site.practice_id
        ]
    finally:
        await net.admin.close()
        await net.running.stop(0)
