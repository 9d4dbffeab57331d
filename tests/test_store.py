"""The coordinator store on SQLite and PostgreSQL: the same behaviour on both."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from coordinator import rounds
from coordinator.ca import create_token, enrol, token_sha256
from coordinator.store import FRAME_COLUMNS, Store
from fedpeer.collection import (
    Answer,
    DefinitionDocument,
    ReleaseDocument,
    Round,
    RoundClosed,
    SignedRelease,
    SubmissionConflict,
    UnknownRound,
)
from fedpeer.definitions import find_standard, serialize
from fedpeer.errors import EnrolmentError, IdentityError, RoundError
from fedpeer.identity import CertificateAuthority, fingerprint, generate_key, make_csr
from fedpeer.policy import DisclosurePolicy
from fedpeer.release import ResultRow
from fedpeer.signing import sign_bytes

AS_OF = dt.date(2026, 6, 30)
# Real definitions: every submission is checked against them for plain sense (issue 10).
DEFS = tuple(
    DefinitionDocument.of(name, serialize(find_standard(name)))
    for name in ("dna_rate", "skill_mix", "gp_f2f_minutes")
)
NOW = dt.datetime(2026, 7, 1, 9, 0, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return CertificateAuthority.create()


Keyed = tuple[ec.EllipticCurvePrivateKey, x509.Certificate]


def _enrol(store: Store, ca: CertificateAuthority, pid: str, locality: str = "North") -> Keyed:
    token, _ = create_token(store, ca.cert, pid, f"Practice {pid}", locality, now=NOW)
    key = generate_key()
    _, cert = enrol(store, ca, token, make_csr(key).decode(), now=NOW)
    return key, cert


def _submit(
    store: Store, ca: CertificateAuthority, pid: str, keyed: Keyed, round_: Round, n: int
) -> object:
    """Sign a release of ``_rows(n)`` as practice ``pid`` and submit it (no round check)."""
    key, cert = keyed
    rows = _rows(n)
    answers = tuple(
        Answer(d.content_hash, d.id, round_.policy, tuple(r for r in rows if r.indicator == d.id))
        for d in round_.definitions
    )
    data = ReleaseDocument(pid, round_.round_id, round_.as_of, answers).to_bytes()
    signed = SignedRelease(data, sign_bytes(key, data))
    return rounds.submit(store, ca.issue_signer(), pid, cert, round_.round_id, signed, check=None)


def _rows(n: int) -> tuple[ResultRow, ...]:
    return (
        ResultRow("dna_rate", numerator=n, denominator=n * 10, value=0.1),
        ResultRow("skill_mix", "gp", count=None, suppressed=True),
        ResultRow("gp_f2f_minutes", count=120, mean=41.5, value=41.5),
    )


def test_sqlite_uses_wal(tmp_path: Path) -> None:
    s = Store(tmp_path / "wal.sqlite")
    with s.engine.connect() as conn:
        assert conn.execute(sa.text("PRAGMA journal_mode")).scalar() == "wal"
    s.close()


def test_tokens_are_hashed_single_use_and_expire(store: Store, ca: CertificateAuthority) -> None:
    token, expires = create_token(store, ca.cert, "P1", "One", "North", now=NOW)
    with store.engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT token_sha256 FROM enrolment_tokens")).scalars().all()
    assert stored == [token_sha256(token)] and token not in stored
    csr = make_csr(generate_key()).decode()
    pid, cert = enrol(store, ca, token, csr, now=NOW)
    assert pid == "P1"
    assert store.practice("P1").cert_fingerprint == fingerprint(cert)
    with pytest.raises(EnrolmentError, match="already been used"):
        enrol(store, ca, token, csr, now=NOW)
    late, _ = create_token(store, ca.cert, "P2", "Two", "South", now=NOW)
    with pytest.raises(EnrolmentError, match="expired"):
        enrol(store, ca, late, csr, now=expires + dt.timedelta(days=8))
    assert store.practice("P2").cert_fingerprint is None
    with pytest.raises(EnrolmentError, match="not known"):
        enrol(store, ca, token[:-3] + "abc", csr, now=NOW)
    other = CertificateAuthority.create()
    foreign, _ = create_token(store, other.cert, "P3", "Three", "East", now=NOW)
    with pytest.raises(EnrolmentError, match="another coordinator"):
        enrol(store, ca, foreign, csr, now=NOW)


def test_round_round_trips_with_definitions(store: Store, ca: CertificateAuthority) -> None:
    policy = DisclosurePolicy(threshold=10, rounding_base=10)
    started = rounds.start_round(store, ca.issue_signer(), AS_OF, DEFS, policy)
    loaded = store.round(started.round_id)
    assert loaded == started
    assert store.open_round_ids() == [(started.round_id, AS_OF)]
    with pytest.raises(RoundError, match="month end"):
        rounds.start_round(store, ca.issue_signer(), dt.date(2026, 6, 15), DEFS)
    with pytest.raises(RoundError, match="not before the current month"):
        rounds.start_round(store, ca.issue_signer(), dt.date(2099, 6, 30), DEFS)
    with pytest.raises(UnknownRound):
        store.round("nope")


def test_submissions_idempotent_conflicting_closed(store: Store, ca: CertificateAuthority) -> None:
    p1 = _enrol(store, ca, "P1")
    p2 = _enrol(store, ca, "P2", "South")
    round_ = rounds.start_round(store, ca.issue_signer(), AS_OF, DEFS)
    first = _submit(store, ca, "P1", p1, round_, 40)
    assert _submit(store, ca, "P1", p1, round_, 40) == first
    with pytest.raises(SubmissionConflict):
        _submit(store, ca, "P1", p1, round_, 45)
    with pytest.raises(SubmissionConflict):
        rounds.refuse(store, "P1", round_.round_id, "changed my mind")
    rounds.close_round(store, round_.round_id)
    with pytest.raises(RoundClosed):
        _submit(store, ca, "P2", p2, round_, 45)
    # A resend after the close still gets its receipt: it was stored before.
    assert _submit(store, ca, "P1", p1, round_, 40) == first
    status = store.round_status(round_.round_id)
    assert status.state == "closed"
    assert [(p.practice_id, p.state) for p in status.practices] == [
        ("P1", "submitted"),
        ("P2", "pending"),
    ]


def test_a_release_signed_by_another_practice_is_refused(
    store: Store, ca: CertificateAuthority
) -> None:
    p1 = _enrol(store, ca, "P1")
    p2 = _enrol(store, ca, "P2")
    round_ = rounds.start_round(store, ca.issue_signer(), AS_OF, DEFS)
    # P1's key and document, arriving on P2's channel (P2's certificate).
    with pytest.raises(IdentityError, match="signature does not verify"):
        _submit(store, ca, "P2", (p1[0], p2[1]), round_, 40)
    # P2 signing a document that names P1.
    with pytest.raises(IdentityError, match="another practice"):
        _submit_named(store, ca, "P1", "P2", p2, round_)
    assert store.round_status(round_.round_id).practices[0].state == "pending"


def _submit_named(
    store: Store, ca: CertificateAuthority, named: str, sender: str, keyed: Keyed, round_: Round
) -> object:
    key, cert = keyed
    data = ReleaseDocument(named, round_.round_id, round_.as_of, ()).to_bytes()
    signed = SignedRelease(data, sign_bytes(key, data))
    return rounds.submit(
        store, ca.issue_signer(), sender, cert, round_.round_id, signed, check=None
    )


def test_released_rows_frame(store: Store, ca: CertificateAuthority) -> None:
    keys = {pid: _enrol(store, ca, pid, loc) for pid, loc in (("P1", "North"), ("P2", "South"))}
    _enrol(store, ca, "P3", "South")
    round_ = rounds.start_round(store, ca.issue_signer(), AS_OF, DEFS)
    for pid, n in (("P2", 50), ("P1", 40)):
        _submit(store, ca, pid, keys[pid], round_, n)
    rounds.refuse(store, "P3", round_.round_id, "no extract this month")
    frame = store.released_rows_frame(round_.round_id)
    assert tuple(frame.columns) == FRAME_COLUMNS
    assert list(frame.practice_id) == ["P1"] * 3 + ["P2"] * 3
    assert list(frame.locality) == ["North"] * 3 + ["South"] * 3
    p1 = frame[frame.practice_id == "P1"].set_index("indicator", drop=False)
    first = p1.loc["dna_rate"]
    assert (first.indicator, first.category, first.numerator, first.denominator) == (
        "dna_rate",
        "",
        40,
        400,
    )
    suppressed = p1.loc["skill_mix"]
    assert suppressed.suppressed and pd.isna(suppressed["count"]) and pd.isna(suppressed.value)
    assert p1.loc["gp_f2f_minutes"]["mean"] == 41.5
    assert str(frame["numerator"].dtype) == "Int64"
    assert frame["suppressed"].dtype == bool
    status = {p.practice_id: p.state for p in store.round_status(round_.round_id).practices}
    assert status == {"P1": "submitted", "P2": "submitted", "P3": "refused"}


def test_revoked_practices_leave_the_pending_list(store: Store, ca: CertificateAuthority) -> None:
    _enrol(store, ca, "P1")
    _enrol(store, ca, "P2")
    store.revoke_practice("P2")
    assert [p.revoked for p in store.list_practices()] == [False, True]
    round_ = rounds.start_round(store, ca.issue_signer(), AS_OF, DEFS)
    assert [p.practice_id for p in store.round_status(round_.round_id).practices] == ["P1"]


def test_migrations_build_exactly_the_declared_schema(store: Store) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from coordinator.tables import metadata

    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
        version = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
    assert diff == []
    assert version == "0011"


def test_a_store_of_the_first_schema_upgrades_with_its_rounds(tmp_path: Path) -> None:
    from coordinator.store import upgrade

    target = tmp_path / "old.sqlite"
    engine = sa.create_engine(f"sqlite:///{target}")
    upgrade(engine, "0001")
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO rounds (round_id, as_of, standard, state, policy_json, signature,"
                " created_at_text, created_at) VALUES ('r1', '2026-06-30', 1, 'open', :p, x'00',"
                " '2026-07-01T00:00:00Z', '2026-07-01 00:00:00')"
            ),
            {
                "p": '{"group_minimum": 5, "manual_approval": false, "min_mean_count": 8, '
                '"noise": "none", "noise_scale": 0.0, "rounding": "nearest", "rounding_base": 5, '
                '"threshold": 7}'
            },
        )
        conn.execute(
            sa.text("INSERT INTO round_definitions VALUES ('r1', 0, 'dna_rate', :h, x'00')"),
            {"h": "0" * 64},
        )
    engine.dispose()
    store = Store(target)
    try:
        assert store.open_round_ids() == [("r1", dt.date(2026, 6, 30))]
        assert store.round_state("r1") == "open"
    finally:
        store.close()
