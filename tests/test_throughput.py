"""Group commit keeps every submission exactly once, and a resend's answer, under concurrency.

Speed is measured by bench/load.py, not here; these tests hold the behaviour: many real
submissions at once over mutual TLS, resends of the same content and different content
racing each other, the store's batch judged item by item, and a round's close racing a
batch on each database.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import sqlalchemy as sa
from _coordinator_helpers import AS_OF, DEFINITIONS, admin, rows_for, signed_request, start

from agent.client import enrol
from agent.identity_store import AgentIdentity
from coordinator import rounds
from coordinator.ca import create_token
from coordinator.ca import enrol as ca_enrol
from coordinator.store import PendingSubmission, Store
from fedpeer import wire
from fedpeer.channel import secure_channel
from fedpeer.collection import RoundClosed, SubmissionConflict, UnknownRound
from fedpeer.identity import CertificateAuthority, generate_key, key_to_pem, make_csr
from fedpeer.release import ResultRow
from fedpeer.signing import verify_receipt
from fedpeer.v1 import agent_pb2, agent_pb2_grpc

PRACTICES = 200
RESENT = range(0, 50)  # these send the same content twice at once
CHANGED = range(50, 60)  # these send two different contents at once


def other_rows(practice_id: str) -> list[ResultRow]:
    """Rows that differ from ``rows_for`` in one count (still on the rounding grid)."""
    first, *rest = rows_for(practice_id)
    n, d = (first.numerator or 0) + 5, first.denominator or 0
    return [dataclasses.replace(first, numerator=n, value=n / d), *rest]


async def enrol_many(running, tmp_path: Path, n: int) -> list[AgentIdentity]:
    """``n`` practices enrolled through the real enrolment port, a few at a time."""
    limit = asyncio.Semaphore(8)
    async with admin(running) as adm:

        async def one(i: int) -> AgentIdentity:
            pid = f"T{i:04d}"
            async with limit:
                token, _ = await adm.invite(pid, f"Practice {pid}", "North")
                return await enrol(running.address, running.enrol_port, token, tmp_path / pid)

        return list(await asyncio.gather(*(one(i) for i in range(n))))


async def test_concurrent_submissions_stored_once(tmp_path: Path, db_url: str | None) -> None:
    running = await start(tmp_path / "coord", db_url)
    channels = []
    try:
        identities = await enrol_many(running, tmp_path, PRACTICES)
        async with admin(running) as adm:
            round_ = await adm.start_round(AS_OF, DEFINITIONS)
        calls = []
        for i, ident in enumerate(identities):
            channel = secure_channel(running.address, ident.ca_pem, ident.key_pem, ident.cert_pem)
            channels.append(channel)
            stub = agent_pb2_grpc.AgentStub(channel)
            request = signed_request(ident, round_, rows_for(ident.practice_id))
            calls.append((i, stub.Submit(request)))
            if i in RESENT:
                calls.append((i, stub.Submit(request)))
            if i in CHANGED:
                other = signed_request(ident, round_, other_rows(ident.practice_id))
                calls.append((i, stub.Submit(other)))
        answers = await asyncio.gather(*(c for _, c in calls), return_exceptions=True)

        receipts: dict[int, list] = {}
        refused: dict[int, list[grpc.StatusCode]] = {}
        for (i, _), answer in zip(calls, answers, strict=True):
            if isinstance(answer, grpc.aio.AioRpcError):
                refused.setdefault(i, []).append(answer.code())
                continue
            receipt = wire.receipt_from_proto(answer)
            verify_receipt(identities[i].ca_cert, receipt)
            assert receipt.practice_id == identities[i].practice_id
            receipts.setdefault(i, []).append(receipt)

        assert sorted(receipts) == list(range(PRACTICES))  # every practice has a receipt
        for i in RESENT:  # both sends answered with the one receipt of record
            assert len(receipts[i]) == 2 and receipts[i][0] == receipts[i][1]
        # Of two contents at once, one is stored and the other is a conflict.
        assert refused == {i: [grpc.StatusCode.ALREADY_EXISTS] for i in CHANGED}

        frame = running.store.released_rows_frame(round_.round_id)
        assert len(frame) == PRACTICES * len(rows_for("T0000"))
        assert frame.practice_id.nunique() == PRACTICES
        for i, got in receipts.items():  # what is stored is what was receipted
            stored = running.store.signed_release(round_.round_id, identities[i].practice_id)
            assert stored is not None and stored.digest == got[0].content_sha256
    finally:
        await asyncio.gather(*(c.close() for c in channels))
        await running.stop(0)


def _practices(store: Store, ca: CertificateAuthority, pids: list[str]) -> dict:
    """Enrol ``pids`` in ``store``: each one's key and certificate."""
    keys = {}
    for pid in pids:
        token, _ = create_token(store, ca.cert, pid, f"Practice {pid}", "North")
        key = generate_key()
        keys[pid] = key, ca_enrol(store, ca, token, make_csr(key).decode())[1]
    return keys


def _pending(
    ca: CertificateAuthority, keyed: tuple, pid: str, round_, rows: list[ResultRow]
) -> PendingSubmission:
    """Practice ``pid``'s signed release of ``rows``, verified, with its receipt signed."""
    key, cert = keyed
    ident = AgentIdentity(pid, "", key_to_pem(key), b"", ca.cert_pem)
    signed = wire.release_from_proto(signed_request(ident, round_, rows))
    return rounds.prepare_release(ca.issue_signer(), pid, cert, round_, signed, None)


def test_a_batch_is_judged_item_by_item(tmp_path: Path) -> None:
    """Within one transaction: a repeat, a conflict, an unknown and a closed round."""
    store, ca = Store(tmp_path / "store.sqlite"), CertificateAuthority.create()
    keys = _practices(store, ca, ["P1", "P2"])
    round_ = rounds.start_round(store, ca.issue_signer(), AS_OF, DEFINITIONS)
    closed = rounds.start_round(store, ca.issue_signer(), AS_OF, DEFINITIONS)
    rounds.close_round(store, closed.round_id)

    def pending(pid: str, rows: list[ResultRow], round_id: str | None = None):
        ready = _pending(ca, keys[pid], pid, round_, rows)
        if round_id is None:
            return ready
        return dataclasses.replace(
            ready, receipt=dataclasses.replace(ready.receipt, round_id=round_id)
        )

    first, same = pending("P1", rows_for("P1")), pending("P1", rows_for("P1"))
    other = pending("P1", other_rows("P1"))
    to_unknown = pending("P2", rows_for("P2"), "no-such-round")
    to_closed = pending("P2", rows_for("P2"), closed.round_id)
    p2 = pending("P2", rows_for("P2"))
    out = store.record_submissions([first, same, other, to_unknown, to_closed, p2])
    assert out[0] == first.receipt and out[1] == first.receipt  # the first receipt, twice
    assert isinstance(out[2], SubmissionConflict)
    assert isinstance(out[3], UnknownRound) and isinstance(out[4], RoundClosed)
    assert out[5] == p2.receipt
    # A later batch sees what the first stored; nothing was stored twice.
    again = store.record_submissions([same, other])
    assert again[0] == first.receipt and isinstance(again[1], SubmissionConflict)
    assert len(store.released_rows_frame(round_.round_id)) == 2 * len(rows_for("P1"))
    # Once the round is closed, a resend still gets its receipt of record.
    rounds.close_round(store, round_.round_id)
    late = store.record_submissions([same, other, pending("P2", rows_for("P2"))])
    assert late[0] == first.receipt and isinstance(late[1], SubmissionConflict)
    assert late[2] == p2.receipt
    store.close()


@contextlib.contextmanager
def another_writer(store: Store) -> Iterator[None]:
    """Hold what storing a submission needs after it read the round's state, as a writer in
    another transaction would: SQLite's write lock, PostgreSQL's submissions table."""
    with store.engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.begin()
            conn.execute(sa.text("LOCK TABLE submissions IN SHARE MODE"))
        try:
            yield
        finally:
            conn.rollback()


def test_a_round_closed_during_a_batch_takes_nothing_after_its_close(store: Store) -> None:
    """A close and a batch race: once the close is recorded, no submission joins the round.

    The batch starts first and waits behind another writer; the close comes while it
    waits. Either the batch is stored before the close commits (and the close's count
    includes it) or it finds the round closed; never stored after the close.
    """
    ca = CertificateAuthority.create()
    pids = ["P1", "P2", "P3"]
    keys = _practices(store, ca, pids)
    round_ = rounds.start_round(store, ca.issue_signer(), AS_OF, DEFINITIONS)
    batch = [_pending(ca, keys[pid], pid, round_, rows_for(pid)) for pid in pids]
    outcomes: list = []
    counted_at_close: list[int] = []

    def close() -> None:
        store.close_round(round_.round_id, rounds.utc_now())
        counted_at_close.append(store.round_status(round_.round_id).submitted)

    with another_writer(store):
        writer = threading.Thread(target=lambda: outcomes.extend(store.record_submissions(batch)))
        writer.start()
        time.sleep(0.3)  # the batch has read the round's state (or waits to), and waits
        closer = threading.Thread(target=close)
        closer.start()
        time.sleep(0.05)
    writer.join(30)
    closer.join(30)

    submitted = store.round_status(round_.round_id).submitted
    assert counted_at_close == [submitted]
    stored = [o for o in outcomes if not isinstance(o, RoundClosed)]
    assert stored in ([], [p.receipt for p in batch])  # the batch is all in, or all refused
    assert submitted == len(stored)


async def test_revocation_applies_at_once_though_enrolment_is_cached(tmp_path: Path) -> None:
    """The per-call enrolment check reads all practices at once and keeps them a moment;
    revoking through the coordinator forgets them, so the very next call is refused."""
    running = await start(tmp_path / "coord")
    try:
        (ident,) = await enrol_many(running, tmp_path, 1)
        async with admin(running) as adm:
            round_ = await adm.start_round(AS_OF, DEFINITIONS)
            async with secure_channel(
                running.address, ident.ca_pem, ident.key_pem, ident.cert_pem
            ) as channel:
                stub = agent_pb2_grpc.AgentStub(channel)
                request = agent_pb2.GetRoundRequest(round_id=round_.round_id)
                await stub.GetRound(request)  # served: the practices are now cached
                await adm.revoke(ident.practice_id)
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await stub.GetRound(request)
                assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
                assert "revoked" in (refused.value.details() or "")
    finally:
        await running.stop(0)
