"""Whole rounds through the real path: coordinator, enrolled agents, synthetic extracts.

Each test starts a coordinator in-process (fresh CA, SQLite, ports chosen by the OS),
enrols a practice with a one-time token, writes a small synthetic CSV practice and lets
``practice_agent`` (the real ``RoundPipeline``) answer rounds. What the coordinator
stores is compared with what the practice's ledger, outbox and audit log say left.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pandas as pd
import pytest
import typer
from _coordinator_helpers import admin, start
from typer.testing import CliRunner

from agent.audit import AuditLog
from agent.cli_airlock import register
from agent.cli_network import practice_agent
from agent.client import Agent, Outcome, enrol
from agent.ledger import Ledger, State
from agent.pipeline import compute_rows
from agent.synth import generate_practice
from coordinator.admin_client import AdminClient
from coordinator.server import RunningCoordinator
from fedpeer.collection import DefinitionDocument, ReleaseDocument, Round
from fedpeer.definitions import load_round_set, serialize
from fedpeer.disclosure import check_release
from fedpeer.dp import cost_rho
from fedpeer.policy import DisclosurePolicy, Noise
from fedpeer.release import ResultRow
from fedpeer.v1 import agent_pb2

AS_OF = date(2026, 9, 30)
LIST_SIZE = 400
PRACTICE = "P10001"
ROUND_SET = [DefinitionDocument.of(d.id, serialize(d)) for d in load_round_set()]


@dataclass
class Site:
    """One practice: its agent's home, its extract, and the coordinator it answers."""

    home: Path
    extract: Path
    running: RunningCoordinator
    admin: AdminClient

    def agent(self) -> Agent:
        return practice_agent(self.home, str(self.extract))

    async def run_once(self) -> list[Outcome]:
        return await self.agent().run_once()

    def write_policy(self, text: str) -> None:
        (self.home / "agent.toml").write_text(text, encoding="utf-8")

    def ledger(self) -> Ledger:
        return Ledger.at_home(self.home)

    def stored(self, round_id: str) -> list[ResultRow]:
        """The rows the coordinator stored for this practice in a round."""
        return _rows(self.running.store.released_rows_frame(round_id))

    def sent(self, round_id: str) -> bytes:
        """The release document in the outbox entry for a round: what went over the wire."""
        entry = self.agent().outbox.get(round_id)
        assert entry is not None and entry.kind == "submission"
        return agent_pb2.SubmitRequest.FromString(entry.payload).release

    def document(self, round_id: str) -> bytes:
        """The release document the coordinator stored, byte for byte as the practice signed it."""
        signed = self.running.store.signed_release(round_id, PRACTICE)
        assert signed is not None
        return signed.document

    async def state(self, round_id: str) -> tuple[str, str]:
        """This practice's state in a round, and its detail, as the coordinator has it."""
        status = await self.admin.status(round_id)
        (mine,) = [p for p in status.practices if p.practice_id == PRACTICE]
        return mine.state, mine.detail


def _rows(frame: pd.DataFrame) -> list[ResultRow]:
    def plain(value: object) -> object:
        if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
            return None
        return value.item() if hasattr(value, "item") else value

    columns = ("indicator", "category", "numerator", "denominator", "count", "mean", "value")
    return [
        ResultRow(**{c: plain(r[c]) for c in columns}, suppressed=bool(r["suppressed"]))
        for _, r in frame.iterrows()
    ]


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[Site]:
    running = await start(tmp_path / "coordinator")
    try:
        async with admin(running) as adm:
            token, _ = await adm.invite(PRACTICE, "Riverside Surgery", "North")
            home = tmp_path / "agent"
            await enrol(running.address, running.enrol_port, token, home)
            extract = tmp_path / "extract"
            generate_practice(
                extract, practice_seed=11, list_size=LIST_SIZE, as_of=AS_OF, fmt="csv"
            )
            yield Site(home, extract, running, adm)
    finally:
        await running.stop(0)


def _airlock(*args: str) -> str:
    app = typer.Typer(pretty_exceptions_show_locals=False)

    @app.callback()
    def _root() -> None:
        """fedpeer-agent (the airlock commands)."""

    register(app)
    result = CliRunner().invoke(app, list(args), terminal_width=250)
    assert result.exit_code == 0, result.output
    return result.output


def _preview_bytes(output: str) -> bytes:
    """The document bytes ``preview`` printed (soft-wrapped), checked against its sha256."""
    flat = output.replace("\n", "")
    start = flat.index('{"answers":')
    data = flat[start : flat.rindex("}") + 1].encode("utf-8")
    sha = re.search(r"sha256\s*([0-9a-f]{64})", flat)
    assert sha is not None and hashlib.sha256(data).hexdigest() == sha.group(1)
    return data


def _outcome(outcomes: list[Outcome], round_: Round) -> Outcome:
    (outcome,) = [o for o in outcomes if o.round_id == round_.round_id]
    return outcome


# -- a standard round ------------------------------------------------------------------


async def test_a_standard_round_is_stored_as_the_ledger_recorded_and_audited(site: Site) -> None:
    round_ = await site.admin.start_round(AS_OF, ROUND_SET)
    outcome = _outcome(await site.run_once(), round_)
    assert outcome.status == "submitted", outcome.detail
    assert outcome.receipt is not None
    assert await site.state(round_.round_id) == ("submitted", outcome.receipt.content_sha256)

    ledger = site.ledger()
    releases = ledger.round_releases(round_.round_id)
    assert len(releases) == len(ROUND_SET)
    assert {r.state for _, r in releases} == {State.SENT}
    assert {r.receipt for _, r in releases} == {outcome.receipt.submission_id}
    recorded = ledger.round_document(round_.round_id, PRACTICE)
    ledger.close()

    # One document, one hash: what the ledger holds, what was sent, stored and receipted.
    stored = site.document(round_.round_id)
    assert stored == recorded.to_bytes() == site.sent(round_.round_id)
    digest = hashlib.sha256(stored).hexdigest()
    assert outcome.receipt.content_sha256 == recorded.digest == digest
    audit = AuditLog.at_home(site.home)
    (entry,) = audit.entries()
    assert entry["receipt"] == outcome.receipt.submission_id
    assert entry["round"] == round_.round_id
    assert entry["release_sha256"] == digest
    assert audit.verify() is None

    rows = site.stored(round_.round_id)
    assert rows == list(ReleaseDocument.from_bytes(stored).rows)
    assert check_release(rows, round_.policy) == []
    assert _airlock("audit", "verify", "--home", str(site.home)).startswith("Audit log intact")


async def test_a_release_that_left_is_audited_even_when_recording_it_failed_once(
    site: Site,
) -> None:
    """The audit log is damaged when the receipt comes back, so the agent cannot record
    that the release left. It must not forget it: once the log is repaired, the next run
    resends, gets the same receipt, and the release is in the ledger and the audit log."""
    audit_file = site.home / "audit.jsonl"
    audit_file.write_text("not an audit entry\n")
    round_ = await site.admin.start_round(AS_OF, ROUND_SET)
    with pytest.raises(ValueError, match="audit log is damaged"):
        await site.run_once()
    assert (await site.state(round_.round_id))[0] == "submitted"  # it did leave

    audit_file.unlink()
    # The outbox resends it (same content, same receipt); the open round is then "already".
    outcome, listed = await site.run_once()
    assert (outcome.status, listed.status) == ("submitted", "already")
    assert outcome.round_id == round_.round_id and outcome.receipt is not None
    (entry,) = AuditLog.at_home(site.home).entries()
    assert entry["receipt"] == outcome.receipt.submission_id
    ledger = site.ledger()
    assert {r.state for _, r in ledger.round_releases(round_.round_id)} == {State.SENT}
    ledger.close()
    assert _airlock("audit", "verify", "--home", str(site.home)).startswith("Audit log intact")


# -- the airlock: manual approval, rejection -------------------------------------------


async def test_manual_approval_sends_nothing_until_approved_then_the_previewed_bytes(
    site: Site,
) -> None:
    site.write_policy("[disclosure]\nmanual_approval = true\n")
    round_ = await site.admin.start_round(AS_OF, ROUND_SET)
    waiting = _outcome(await site.run_once(), round_)
    assert waiting.status == "awaiting approval"
    assert "awaits the practice's approval" in waiting.detail
    # The coordinator hears that it waits, and nothing else.
    assert await site.state(round_.round_id) == ("awaiting approval", "")
    assert site.stored(round_.round_id) == []
    assert site.agent().outbox.get(round_.round_id) is None

    output = _airlock("preview", round_.round_id, "--home", str(site.home))
    assert "awaiting_approval" in output and "flu_vacc_65" in output
    previewed = _preview_bytes(output)

    assert _outcome(await site.run_once(), round_).status == "awaiting approval"  # still
    _airlock("approve", round_.round_id, "--home", str(site.home))
    outcome = _outcome(await site.run_once(), round_)
    assert outcome.status == "submitted", outcome.detail
    assert site.sent(round_.round_id) == previewed
    assert site.document(round_.round_id) == previewed
    (entry,) = AuditLog.at_home(site.home).entries()
    assert entry["release_sha256"] == hashlib.sha256(previewed).hexdigest()


async def test_a_rejected_release_reaches_the_coordinator_as_a_refusal_with_the_reason(
    site: Site,
) -> None:
    site.write_policy("[disclosure]\nmanual_approval = true\n")
    round_ = await site.admin.start_round(AS_OF, ROUND_SET)
    assert _outcome(await site.run_once(), round_).status == "awaiting approval"
    why = "the extract was taken before month-end coding was finished"
    _airlock("reject", round_.round_id, "--why", why, "--home", str(site.home))

    outcome = _outcome(await site.run_once(), round_)
    assert outcome.status == "refused"
    state, detail = await site.state(round_.round_id)
    assert state == "refused" and why in detail
    assert site.stored(round_.round_id) == []
    ledger = site.ledger()
    assert {r.state for _, r in ledger.round_releases(round_.round_id)} == {State.REJECTED}
    ledger.close()
    assert AuditLog.at_home(site.home).entries() == []
    # A second run keeps the refusal; nothing of the release is sent later either.
    assert _outcome(await site.run_once(), round_).status == "already"
    assert site.stored(round_.round_id) == []


# -- the practice's policy applies, whatever the round --------------------------------


async def test_a_stricter_agent_toml_is_applied_not_a_reason_to_refuse(site: Site) -> None:
    site.write_policy("[disclosure]\nthreshold = 10\nrounding_base = 10\n")
    round_ = await site.admin.start_round(AS_OF, ROUND_SET)  # the network's: 7 and 5
    outcome = _outcome(await site.run_once(), round_)
    assert outcome.status == "submitted", outcome.detail
    strict = DisclosurePolicy(threshold=10, rounding_base=10)
    assert check_release(site.stored(round_.round_id), strict) == []
    document = ReleaseDocument.from_bytes(site.document(round_.round_id))
    assert {a.policy for a in document.answers} == {strict}


async def test_a_repeated_round_returns_the_recorded_release_not_a_recomputation(
    site: Site,
) -> None:
    first = await site.admin.start_round(AS_OF, ROUND_SET)
    assert _outcome(await site.run_once(), first).status == "submitted"
    await site.admin.close_round(first.round_id)
    released = ReleaseDocument.from_bytes(site.document(first.round_id)).rows

    # The extract changes under the agent (late coding, a re-extract): today's answer differs.
    generate_practice(
        site.extract, practice_seed=97, list_size=LIST_SIZE + 35, as_of=AS_OF, fmt="csv"
    )
    fresh, _ = compute_rows(str(site.extract), AS_OF, definitions=load_round_set())
    assert tuple(fresh) != released
    # A later, stricter agent.toml is no fresh draw for questions already answered either.
    site.write_policy("[disclosure]\nthreshold = 10\nrounding_base = 10\n")

    second = await site.admin.start_round(AS_OF, ROUND_SET)
    outcome = _outcome(await site.run_once(), second)
    assert outcome.status == "submitted", outcome.detail
    document = ReleaseDocument.from_bytes(site.document(second.round_id))
    assert document.rows == released and site.sent(second.round_id) == document.to_bytes()
    # Both rounds left the practice, so both are in the audit log.
    audit = AuditLog.at_home(site.home)
    entries = audit.entries()
    assert [e["round"] for e in entries] == [first.round_id, second.round_id]
    assert entries[1]["receipt"] == outcome.receipt.submission_id  # type: ignore[union-attr]
    assert audit.verify() is None


# -- differential privacy over the wire ------------------------------------------------

NOISY = "[disclosure]\nnoise = 'discrete_gaussian'\nnoise_scale = 3.0\n"


async def test_a_noisy_round_end_to_end_then_the_budget_runs_out(site: Site) -> None:
    # OpenDP's cost of one noisy release of the round set at 1 / (2 * 3^2) per count, a
    # mean twice (its count and its sum).
    policy = DisclosurePolicy(noise=Noise.DISCRETE_GAUSSIAN, noise_scale=3.0)
    definitions = load_round_set()
    one_round = cost_rho([d.kind for d in definitions], policy)
    means = sum(d.kind == "mean" for d in definitions)
    assert means and one_round == pytest.approx((len(ROUND_SET) + means) / 18)
    site.write_policy(NOISY + f"[privacy]\nbudget_rho = {1.5 * one_round}\n")
    round_ = await site.admin.start_round(AS_OF, ROUND_SET)
    outcome = _outcome(await site.run_once(), round_)
    assert outcome.status == "submitted", outcome.detail
    stored = site.stored(round_.round_id)
    assert check_release(stored, policy) == []
    ledger = site.ledger()
    assert ledger.budget_spent() == pytest.approx(one_round)
    ledger.close()

    # Repeating it, even under another noise scale, costs nothing and returns the recorded
    # draw of noise: a changed agent.toml is no way to a fresh draw.
    site.write_policy(
        "[disclosure]\nnoise = 'discrete_gaussian'\nnoise_scale = 4.0\n"
        f"[privacy]\nbudget_rho = {1.5 * one_round}\n"
    )
    again = await site.admin.start_round(AS_OF, ROUND_SET)
    assert _outcome(await site.run_once(), again).status == "submitted"
    assert site.stored(again.round_id) == stored

    # The next month's questions are new releases: they would take the spend past the
    # budget, so the round is refused, and nothing of it is recorded or spent.
    later = await site.admin.start_round(date(2026, 8, 31), ROUND_SET)
    outcome = _outcome(await site.run_once(), later)
    assert outcome.status == "refused"
    state, detail = await site.state(later.round_id)
    assert state == "refused" and "privacy budget" in detail
    ledger = site.ledger()
    assert ledger.budget_spent() == pytest.approx(one_round)
    assert ledger.round_releases(later.round_id) == []
    ledger.close()


async def test_a_noisy_round_without_a_budget_is_refused(site: Site) -> None:
    site.write_policy(NOISY)
    round_ = await site.admin.start_round(AS_OF, ROUND_SET)
    outcome = _outcome(await site.run_once(), round_)
    assert outcome.status == "refused"
    assert "privacy budget" in (await site.state(round_.round_id))[1]
    assert site.stored(round_.round_id) == []
