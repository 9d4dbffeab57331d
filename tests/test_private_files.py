"""What must not be read by others is private, and the open port takes only small messages.

The agent's ledger (true population sizes, salted fingerprints), outbox (signed
releases), audit log and study book (study keys), and the coordinator's SQLite store,
are created readable by their owner only, even under a permissive umask. The enrolment
port, which needs no certificate, refuses a message larger than an enrolment needs.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import grpc
import pandas as pd
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


# -- issue 10: whatever the umask, never through a link --------------------------------


@pytest.fixture
def no_umask() -> Iterator[None]:
    previous = os.umask(0o000)  # the worst case: everything made world-writable
    try:
        yield
    finally:
        os.umask(previous)


PUBLIC = {"ca.crt", "server.crt", "admin.crt", "agent.crt", "agent.json", "address"}


def _private_tree(root: Path) -> list[str]:
    """Every file under ``root`` that holds something private, each checked 0600; dirs 0700."""
    seen = []
    for path in [root, *root.rglob("*")]:
        if path.is_dir():
            assert _mode(path) == 0o700, path
        elif path.name not in PUBLIC:
            assert _mode(path) == 0o600, path
            seen.append(path.name)
    return seen


async def test_every_private_file_is_the_owners_under_umask_000(
    tmp_path: Path, no_umask: None
) -> None:
    from _coordinator_helpers import AS_OF, DEFINITIONS, admin, fixed_prepare, start

    from agent.client import Agent, enrol
    from coordinator.backup import backup
    from coordinator.comparisons import build_comparison
    from coordinator.reports import write_round_reports
    from fedpeer.release import write_rows_file

    coordinator_home = tmp_path / "nested" / "coordinator"
    running = await start(coordinator_home)
    try:
        async with admin(running) as adm:
            token, _ = await adm.invite("U1", "Umask Lane", "North")
            round_ = await adm.start_round(AS_OF, DEFINITIONS)
        agent_home = tmp_path / "agents" / "U1"
        await enrol(running.address, running.enrol_port, token, agent_home)
        agent = Agent(agent_home, fixed_prepare("U1"), max_attempts=1)
        await agent.run_once()
        Ledger.at_home(agent_home).close()
        StudyBook.at_home(agent_home).close()
        AuditLog.at_home(agent_home).append(
            round_id=round_.round_id,
            definitions=["h"],
            as_of=AS_OF.isoformat(),
            release_sha256="a" * 64,
            to="coordinator",
            receipt="k1",
        )
        frame = running.store.released_rows_frame(round_.round_id)
        out = tmp_path / "outputs" / "reports"
        write_round_reports(build_comparison(frame), out, pdf=False)
        backup(running.home, None, tmp_path / "outputs" / "backup.tar.gz", with_keys=True)
        write_rows_file([], tmp_path / "outputs" / "rows.csv")
    finally:
        await running.stop(0)
    assert _mode(tmp_path / "nested") == 0o700  # a missing parent too: not world-writable
    coordinator_files = set(_private_tree(coordinator_home))
    assert {"ca.key", "server.key", "admin.key", "coordinator.sqlite"} <= coordinator_files
    agent_files = set(_private_tree(agent_home))
    assert {"agent.key", "ledger.sqlite", "outbox.sqlite", "audit.jsonl"} <= agent_files
    assert "studies.sqlite" in agent_files
    outputs = set(_private_tree(tmp_path / "outputs"))
    reports = {"practice-U1.html", "locality-North.html", "commissioners.html"}
    assert reports | {"backup.tar.gz", "rows.csv"} <= outputs


def _planted(path: Path, tmp_path: Path) -> Path:
    """A link at ``path`` to a file another user could read; returns that file."""
    elsewhere = tmp_path / f"elsewhere-{path.name}"
    elsewhere.write_text("")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(elsewhere)
    return elsewhere


def test_a_link_planted_in_place_of_a_key_or_store_is_refused(tmp_path: Path) -> None:
    from coordinator.ca import init_home
    from coordinator.comparisons import FRAME_COLUMNS, build_comparison
    from coordinator.reports import write_round_reports
    from fedpeer.errors import UnsafeFile
    from fedpeer.release import write_rows_file

    cases = {
        "coordinator CA key": (
            tmp_path / "coord" / "ca.key",
            lambda: init_home(tmp_path / "coord"),
        ),
        "coordinator server key": (
            tmp_path / "coord2" / "server.key",
            lambda: init_home(tmp_path / "coord2"),
        ),
        "coordinator store": (
            tmp_path / "store" / "coordinator.sqlite",
            lambda: Store(tmp_path / "store" / "coordinator.sqlite"),
        ),
        "agent ledger": (
            tmp_path / "agent" / "ledger.sqlite",
            lambda: Ledger.at_home(tmp_path / "agent"),
        ),
        "agent outbox": (
            tmp_path / "agent" / "outbox.sqlite",
            lambda: Outbox(tmp_path / "agent" / "outbox.sqlite").entries("pending"),
        ),
        "agent audit log": (
            tmp_path / "agent" / "audit.jsonl",
            lambda: AuditLog.at_home(tmp_path / "agent").append(
                round_id="r1",
                definitions=["h"],
                as_of="2026-09-30",
                release_sha256="a" * 64,
                to="coordinator",
                receipt="k1",
            ),
        ),
        "agent studies": (
            tmp_path / "agent" / "studies.sqlite",
            lambda: StudyBook.at_home(tmp_path / "agent"),
        ),
        "rows file": (
            tmp_path / "out" / "rows.csv.tmp",
            lambda: write_rows_file([], tmp_path / "out" / "rows.csv"),
        ),
        "commissioners' summary": (
            tmp_path / "reports" / "commissioners.html",
            lambda: write_round_reports(
                build_comparison(pd.DataFrame(columns=list(FRAME_COLUMNS))),
                tmp_path / "reports",
                pdf=False,
            ),
        ),
        "a home that is a link": (
            tmp_path / "linked-home",
            lambda: Ledger.at_home(tmp_path / "linked-home"),
        ),
    }
    for name, (where, make) in cases.items():
        target = _planted(where, tmp_path)
        with _named(name), pytest.raises(UnsafeFile, match="symbolic link"):
            make()
        assert target.read_text() == "", name  # nothing written through the link


@contextlib.contextmanager
def _named(name: str) -> Iterator[None]:
    """Name the case in a failure of the block."""
    try:
        yield
    except pytest.fail.Exception as exc:
        raise AssertionError(f"{name}: {exc}") from None
