"""What must not be read by others is private, and the open port takes only small messages.

The agent's ledger (true population sizes, salted fingerprints), outbox (signed
releases), audit log and study book (study keys), and the coordinator's SQLite store,
are created readable by their owner only, even under a permissive umask. The enrolment
port, which needs no certificate, refuses a message larger than an enrolment needs.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import grpc
import pytest
from _coordinator_helpers import start

from agent.audit import AuditLog
from agent.ledger import Ledger
from agent.outbox import Outbox
from agent.studies import StudyBook
from coordinator.store import Store
from fedpeer.channel import ENROLMENT_MAX_MESSAGE_BYTES, secure_channel
from fedpeer.v1 import enrolment_pb2, enrolment_pb2_grpc


@pytest.fixture
def open_umask() -> Iterator[None]:
    previous = os.umask(0o022)  # the usual default: files readable by everyone
    try:
        yield
    finally:
        os.umask(previous)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_agents_files_are_private(tmp_path: Path, open_umask: None) -> None:
    ledger = Ledger.at_home(tmp_path)
    ledger.member_digests(["patient:1"])  # writes the salt
    ledger.close()
    Outbox(tmp_path / "outbox.sqlite").entries("pending")
    AuditLog.at_home(tmp_path).append(
        round_id="r1",
        definitions=["h"],
        as_of=date(2026, 9, 30).isoformat(),
        release_sha256="a" * 64,
        to="coordinator",
        receipt="k1",
    )
    StudyBook.at_home(tmp_path).close()
    made = [p for p in tmp_path.iterdir() if p.is_file()]
    assert {p.name for p in made} >= {"ledger.sqlite", "outbox.sqlite", "audit.jsonl"}
    for path in made:
        assert _mode(path) == 0o600, path.name


def test_the_coordinators_sqlite_store_is_private(tmp_path: Path, open_umask: None) -> None:
    store = Store(tmp_path / "coordinator.sqlite")
    store.close()
    for path in tmp_path.iterdir():
        assert _mode(path) == 0o600, path.name


async def test_the_enrolment_port_refuses_a_large_message(tmp_path: Path) -> None:
    running = await start(tmp_path / "coordinator")
    try:
        async with secure_channel(running.enrol_address, running.ca.cert_pem) as channel:
            stub = enrolment_pb2_grpc.EnrolmentStub(channel)
            huge = enrolment_pb2.EnrolRequest(token="t", csr_pem="x" * ENROLMENT_MAX_MESSAGE_BYTES)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.Enrol(huge, timeout=10)
            assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            small = enrolment_pb2.EnrolRequest(token="fp1.bogus.token", csr_pem="not a csr")
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.Enrol(small, timeout=10)
            assert caught.value.code() != grpc.StatusCode.RESOURCE_EXHAUSTED  # still serving
    finally:
        await running.stop(0)
