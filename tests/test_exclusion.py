"""Excluding an accepted submission from a round's comparisons, over the real wire and CLI.

And the other half of "comparisons never crash on what was accepted": random releases
that pass the coordinator's checks, stored through the real submit path, always build.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import pytest
import sqlalchemy as sa
from _coordinator_helpers import AS_OF, DEFINITIONS, admin, document_for, signed_request, start
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from agent.client import enrol
from coordinator.admins import admin_seen, list_admins, revoke_admins
from coordinator.ca import token_sha256
from coordinator.cli import app
from coordinator.comparisons import build_comparison
from coordinator.exclusions import (
    ExclusionAction,
    exclusion_history,
    set_excluded,
    submission_list,
)
from coordinator.rounds import start_round, submit
from coordinator.server import RunningCoordinator
from coordinator.store import Store
from coordinator.tables import comparison_indicators
from fedpeer.channel import secure_channel
from fedpeer.collection import Round, SignedRelease
from fedpeer.errors import FedpeerError
from fedpeer.identity import CertificateAuthority, fingerprint, generate_key, make_csr
from fedpeer.release import ResultRow
from fedpeer.signing import sign_bytes
from fedpeer.v1 import agent_pb2_grpc

runner = CliRunner()
ACCEPTED: list[str] = []  # how many random releases were taken, across examples
PRACTICES = ("E1", "E2", "E3", "E4", "E5", "E6")


def _rows(numerator: int, denominator: int) -> list[ResultRow]:
    return [
        ResultRow(
            "dm_hba1c_le58",
            numerator=numerator,
            denominator=denominator,
            value=numerator / denominator,
        ),
        ResultRow("dna_rate", numerator=None, denominator=200, suppressed=True),
        ResultRow("profile.list_size", count=5000, value=5000.0),
    ]


@pytest.fixture
async def coordinator(tmp_path: Path):
    running = await start(tmp_path / "coord")
    yield running
    await running.stop(0)


async def _cli(running: RunningCoordinator, *args: str):  # type: ignore[no-untyped-def]
    argv = [*args, "--home", str(running.home.root), "--coordinator", running.address]
    return await asyncio.to_thread(runner.invoke, app, argv)


async def test_an_excluded_submission_leaves_the_comparison_and_comes_back(
    coordinator: RunningCoordinator, tmp_path: Path
) -> None:
    async with admin(coordinator) as adm:
        round_ = await adm.start_round(AS_OF, DEFINITIONS)
        for i, pid in enumerate(PRACTICES):
            token, _ = await adm.invite(pid, f"Practice {pid}", "South")
            identity = await enrol(
                coordinator.address, coordinator.enrol_port, token, tmp_path / pid
            )
            # E6 is an outlier the coordinator later judges to be a broken extract.
            rows = _rows(180, 200) if pid == "E6" else _rows(50 + 5 * i, 100)
            async with secure_channel(
                identity.coordinator, identity.ca_pem, identity.key_pem, identity.cert_pem
            ) as channel:
                await agent_pb2_grpc.AgentStub(channel).Submit(
                    signed_request(identity, round_, rows)
                )
    store = coordinator.store

    def overall() -> float | None:
        comparison = build_comparison(store.released_rows_frame(round_.round_id))
        return comparison.indicators["dm_hba1c_le58"].overall.value

    with_all = overall()
    result = await _cli(
        coordinator, "submission", "exclude", round_.round_id, "E6", "--why", "bad extract"
    )
    assert result.exit_code == 0, result.output
    assert "left out" in result.output
    frame = store.released_rows_frame(round_.round_id)
    assert "E6" not in set(frame["practice_id"])
    without = overall()
    assert without is not None and with_all is not None and without < with_all
    # The submission itself is kept, signed and receipted, as it was.
    assert store.signed_release(round_.round_id, "E6") is not None

    listed = await _cli(coordinator, "submission", "list", round_.round_id)
    assert listed.exit_code == 0, listed.output
    (line,) = [ln for ln in listed.output.splitlines() if "E6" in ln]
    assert "no" in line and "admin" in line and "bad extract" in line

    back = await _cli(coordinator, "submission", "include", round_.round_id, "E6", "--why", "fixed")
    assert back.exit_code == 0, back.output
    assert overall() == with_all
    history = exclusion_history(store, round_.round_id)
    assert [(p, a, who, why) for p, a, who, _, why in history] == [
        ("E6", "exclude", "admin", "bad extract"),
        ("E6", "include", "admin", "fixed"),
    ]

    # Everyday mistakes are FedpeerErrors, which the CLI prints as one line (run_app).
    for args, words in (
        (("submission", "exclude", round_.round_id, "E6", "--why", "  "), "say why"),
        (("submission", "exclude", round_.round_id, "NOPE", "--why", "x"), "no submission"),
        (("submission", "exclude", "no-such-round", "E6", "--why", "x"), "no round"),
    ):
        bad = await _cli(coordinator, *args)
        assert isinstance(bad.exception, FedpeerError), bad.output
        assert words in str(bad.exception)
    assert len(exclusion_history(store, round_.round_id)) == 2

    # A closed round's stored comparison, which reports and trends read, follows too.
    async with admin(coordinator) as adm:
        await adm.close_round(round_.round_id)

    def stored_overall() -> float | None:
        with store.engine.connect() as conn:
            return conn.execute(
                sa.select(comparison_indicators.c.overall).where(
                    comparison_indicators.c.round_id == round_.round_id,
                    comparison_indicators.c.indicator == "dm_hba1c_le58",
                )
            ).scalar()

    assert stored_overall() == pytest.approx(with_all)
    again = await _cli(coordinator, "submission", "exclude", round_.round_id, "E6", "--why", "x")
    assert again.exit_code == 0, again.output
    assert stored_overall() == pytest.approx(without)


# -- the same on each kind of store -----------------------------------------------------


def test_exclusions_and_admin_revocations_on_each_store(store: Store) -> None:
    site = Site.on(store, practices=2)
    round_ = start_round(site.store, site.ca.issue_signer(), AS_OF, DEFINITIONS)
    for practice, n in zip(site.practices, (40, 60), strict=True):
        site.send(practice, round_, _rows(n, 100))
    now = dt.datetime.now(dt.UTC)
    set_excluded(site.store, round_.round_id, "R0", ExclusionAction.EXCLUDE, "ops", "odd", now)
    assert set(site.store.released_rows_frame(round_.round_id)["practice_id"]) == {"R1"}
    entries = {e.practice_id: e for e in submission_list(site.store, round_.round_id)}
    assert entries["R0"].excluded and entries["R0"].by == "ops" and not entries["R1"].excluded
    set_excluded(site.store, round_.round_id, "R0", ExclusionAction.INCLUDE, "ops", "ok", now)
    assert set(site.store.released_rows_frame(round_.round_id)["practice_id"]) == {"R0", "R1"}

    assert not admin_seen(site.store, "a" * 64, "alice", now)
    assert not admin_seen(site.store, "a" * 64, "alice", now)  # seen twice, recorded once
    (revoked,) = revoke_admins(site.store, "alice", "b" * 64, "bob", now)
    assert revoked.revoked_by == "bob" and admin_seen(site.store, "a" * 64, "alice", now)
    assert [a.name for a in list_admins(site.store)] == ["alice"]


# -- comparisons never crash on what was accepted --------------------------------------


class Site:
    """A real store and CA, and enrolled practices with their own keys, for the property."""

    def __init__(self, root: Path, practices: int = 7) -> None:
        self._enrol(Store(root / "store.sqlite"), practices)

    @classmethod
    def on(cls, store: Store, practices: int) -> Site:
        """A site on a store already open."""
        site = cls.__new__(cls)
        site._enrol(store, practices)
        return site

    def send(self, practice: tuple, round_: Round, rows: list[ResultRow]) -> object:  # type: ignore[type-arg]
        """Sign a release of ``rows`` as the practice and submit it by the real path."""
        pid, key, cert = practice
        data = document_for(pid, round_, rows).to_bytes()
        signed = SignedRelease(data, sign_bytes(key, data))
        return submit(self.store, self.ca.issue_signer(), pid, cert, round_.round_id, signed)

    def _enrol(self, store: Store, practices: int) -> None:
        self.store = store
        self.ca = CertificateAuthority.create()
        now = dt.datetime.now(dt.UTC)
        self.practices = []
        for i in range(practices):
            pid = f"R{i}"
            key = generate_key()
            cert = self.ca.issue_practice(make_csr(key), pid)
            token = f"t-{pid}"
            self.store.add_enrolment_token(
                pid,
                pid,
                "North" if i % 2 else "South",
                token_sha256(token),
                now + dt.timedelta(1),
                now,
            )
            self.store.redeem_token(token_sha256(token), fingerprint(cert), now)
            self.practices.append((pid, key, cert))


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Site:
    return Site(tmp_path_factory.mktemp("site"))


# Released counts are multiples of the rounding base, away from the small-count rules:
# what a real agent sends, so the coordinator takes most of them.
fives = st.integers(min_value=2, max_value=2400).map(lambda k: 5 * k)
practice_rows = st.tuples(fives, fives, fives, st.integers(min_value=0, max_value=5))


def _random_rows(numbers: tuple[int, int, int, int]) -> list[ResultRow]:
    a, b, extra, blank = numbers
    den, num = a + b, a  # the complement, b, is at least ten too
    size = den + extra
    dm = ResultRow("dm_hba1c_le58", numerator=num, denominator=den, value=num / den)
    if blank == 1:
        dm = ResultRow("dm_hba1c_le58", suppressed=True)
    dna = ResultRow("dna_rate", numerator=b, denominator=a + b + extra, value=b / (a + b + extra))
    if blank == 2:
        dna = ResultRow("dna_rate", suppressed=True)
    listed = ResultRow("profile.list_size", count=size, value=float(size))
    if blank == 3:
        listed = ResultRow("profile.list_size", suppressed=True)
    return [dm, dna, listed]


@settings(
    derandomize=True,
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(st.lists(practice_rows, min_size=0, max_size=7))
def _comparisons_build_from_whatever_was_accepted(
    site: Site, answers: list[tuple[int, int, int, int]]
) -> None:
    round_ = start_round(site.store, site.ca.issue_signer(), AS_OF, DEFINITIONS)
    for practice, numbers in zip(site.practices, answers, strict=False):
        try:
            site.send(practice, round_, _random_rows(numbers))
        except FedpeerError:
            continue  # refused: nothing stored, nothing to compare
        ACCEPTED.append(practice[0])
    frame = site.store.released_rows_frame(round_.round_id)
    comparison = build_comparison(frame, policy=round_.policy)
    assert set(comparison.practices) == set(frame["practice_id"])


def test_comparisons_build_from_whatever_was_accepted(site: Site) -> None:
    """The property above, and a guard against its vacuity: most random releases pass."""
    ACCEPTED.clear()
    _comparisons_build_from_whatever_was_accepted(site)
    assert len(ACCEPTED) > 30
