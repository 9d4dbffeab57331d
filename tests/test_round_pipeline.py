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
from dataclasses import dataclass, replace
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
from agent.pipeline import compute_results, compute_rows
from agent.synth import generate_practice
from coordinator.admin_client import AdminClient
from coordinator.server import RunningCoordinator
from fedpeer.canonical import canonical_release_bytes, release_digest
from fedpeer.collection import DefinitionDocument, Round
from fedpeer.definitions import (
    IndicatorDefinition,
    PatientCriteria,
    Unit,
    find_standard,
    load_round_set,
    serialize,
)
from fedpeer.disclosure import check_release
from fedpeer.dp import cost_rho
from fedpeer.measures import Count, IndicatorResult, Kind
from fedpeer.policy import DisclosurePolicy, Noise
from fedpeer.release import ResultRow
from fedpeer.v1 import agent_pb2
from fedpeer.wire import row_from_proto

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

    def sent(self, round_id: str) -> list[ResultRow]:
        """The rows in the agent's outbox entry for a round (what went over the wire)."""
        entry = self.agent().outbox.get(round_id)
        assert entry is not None and entry.kind == "submission"
        request = agent_pb2.SubmitRequest.FromString(entry.payload)
        return [row_from_proto(r) for r in request.rows]

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
    """The canonical bytes ``preview`` printed (soft-wrapped), checked against its sha256."""
    flat = output.replace("\n", "")
    start = flat.index('{"format":')
    data = flat[start : flat.rindex("}") + 1].encode("ascii")
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
    assert {r.state for r in releases} == {State.SENT}
    assert {r.receipt for r in releases} == {outcome.receipt.submission_id}
    ledger_rows = ledger.round_rows(round_.round_id)
    ledger.close()

    audit = AuditLog.at_home(site.home)
    (entry,) = audit.entries()
    assert entry["receipt"] == outcome.receipt.submission_id
    assert entry["round"] == round_.round_id
    assert entry["release_sha256"] == release_digest(ledger_rows)
    assert audit.verify() is None

    stored = site.stored(round_.round_id)
    assert canonical_release_bytes(stored) == canonical_release_bytes(ledger_rows)
    assert check_release(stored, round_.policy) == []
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
    assert {r.state for r in ledger.round_releases(round_.round_id)} == {State.SENT}
    ledger.close()
    assert _airlock("audit", "verify", "--home", str(site.home)).startswith("Audit log intact")


# -- the airlock: manual approval, rejection -------------------------------------------


async def test_manual_approval_sends_nothing_until_approved_then_the_previewed_bytes(
    site: Site,
) -> None:
    site.write_policy("[disclosure]\nmanual_approval = true\n")
    round_ = await site.admin.start_round(AS_OF, ROUND_SET)
    waiting = _outcome(await site.run_once(), round_)
    assert waiting.status == "failed" and "awaits the practice's approval" in waiting.detail
    assert await site.state(round_.round_id) == ("pending", "")
    assert site.stored(round_.round_id) == []
    assert site.agent().outbox.get(round_.round_id) is None

    output = _airlock("preview", round_.round_id, "--home", str(site.home))
    assert "awaiting_approval" in output and "flu_vacc_65" in output
    previewed = _preview_bytes(output)

    assert _outcome(await site.run_once(), round_).status == "failed"  # still waiting
    _airlock("approve", round_.round_id, "--home", str(site.home))
    outcome = _outcome(await site.run_once(), round_)
    assert outcome.status == "submitted", outcome.detail
    assert canonical_release_bytes(site.sent(round_.round_id)) == previewed
    assert canonical_release_bytes(site.stored(round_.round_id)) == previewed
    (entry,) = AuditLog.at_home(site.home).entries()
    assert entry["release_sha256"] == hashlib.sha256(previewed).hexdigest()


async def test_a_rejected_release_reaches_the_coordinator_as_a_refusal_with_the_reason(
    site: Site,
) -> None:
    site.write_policy("[disclosure]\nmanual_approval = true\n")
    round_ = await site.admin.start_round(AS_OF, ROUND_SET)
    assert _outcome(await site.run_once(), round_).status == "failed"
    why = "the extract was taken before month-end coding was finished"
    _airlock("reject", round_.round_id, "--why", why, "--home", str(site.home))

    outcome = _outcome(await site.run_once(), round_)
    assert outcome.status == "refused"
    state, detail = await site.state(round_.round_id)
    assert state == "refused" and why in detail
    assert site.stored(round_.round_id) == []
    ledger = site.ledger()
    assert {r.state for r in ledger.round_releases(round_.round_id)} == {State.REJECTED}
    ledger.close()
    assert AuditLog.at_home(site.home).entries() == []
    # A second run keeps the refusal; nothing of the release is sent later either.
    assert _outcome(await site.run_once(), round_).status == "already"
    assert site.stored(round_.round_id) == []


# -- rounds trying to get round the practice's policy ----------------------------------


async def test_a_round_looser_than_the_practice_policy_is_refused_naming_the_keys(
    site: Site,
) -> None:
    site.write_policy("[disclosure]\nthreshold = 10\nrounding_base = 10\n")
    round_ = await site.admin.start_round(AS_OF, ROUND_SET)  # the default policy: 7 and 5
    outcome = _outcome(await site.run_once(), round_)
    assert outcome.status == "refused"
    state, detail = await site.state(round_.round_id)
    assert state == "refused"
    assert "threshold" in detail and "rounding_base" in detail
    assert not re.search(r"\d", detail)  # the keys, no numbers
    assert site.stored(round_.round_id) == []
    ledger = site.ledger()
    assert ledger.round_releases(round_.round_id) == [] and ledger.populations(AS_OF) == []
    ledger.close()

    # The same round under the practice's numbers is answered.
    strict = DisclosurePolicy(threshold=10, rounding_base=10)
    answered = await site.admin.start_round(AS_OF, ROUND_SET, policy=strict)
    assert _outcome(await site.run_once(), answered).status == "submitted"
    assert check_release(site.stored(answered.round_id), strict) == []


async def test_a_repeated_round_returns_the_recorded_release_not_a_recomputation(
    site: Site,
) -> None:
    first = await site.admin.start_round(AS_OF, ROUND_SET)
    assert _outcome(await site.run_once(), first).status == "submitted"
    await site.admin.close_round(first.round_id)
    released = canonical_release_bytes(site.stored(first.round_id))

    # The extract changes under the agent (late coding, a re-extract): today's answer differs.
    generate_practice(
        site.extract, practice_seed=97, list_size=LIST_SIZE + 35, as_of=AS_OF, fmt="csv"
    )
    fresh, _ = compute_rows(str(site.extract), AS_OF, definitions=load_round_set())
    assert canonical_release_bytes(fresh) != released

    second = await site.admin.start_round(AS_OF, ROUND_SET)
    outcome = _outcome(await site.run_once(), second)
    assert outcome.status == "submitted", outcome.detail
    assert canonical_release_bytes(site.sent(second.round_id)) == released
    assert canonical_release_bytes(site.stored(second.round_id)) == released
    # Both rounds left the practice, so both are in the audit log, with the same release.
    audit = AuditLog.at_home(site.home)
    entries = audit.entries()
    assert [e["round"] for e in entries] == [first.round_id, second.round_id]
    assert entries[0]["release_sha256"] == entries[1]["release_sha256"]
    assert entries[1]["receipt"] == outcome.receipt.submission_id  # type: ignore[union-attr]
    assert audit.verify() is None


# -- studies: populations a few patients apart -----------------------------------------


def _study(ident: str, age_min: int, age_max: int | None = None) -> IndicatorDefinition:
    """A study count of registered patients in an age range."""
    return IndicatorDefinition(
        id=ident,
        version=1,
        title=f"Registered patients aged {age_min} to {age_max or 'any'}",
        description="A study population.",
        kind=Kind.COUNT,
        unit=Unit.PATIENTS,
        population=PatientCriteria(registered=True, age_min=age_min, age_max=age_max),
    )


def _doc(defn: IndicatorDefinition) -> DefinitionDocument:
    return DefinitionDocument.of(defn.id, serialize(defn))


def _sizes(extract: Path, definitions: list[IndicatorDefinition]) -> dict[str, int]:
    """Raw population sizes, computed in the test only to choose the attack's ages."""
    results, _ = compute_results(str(extract), AS_OF, definitions)
    return {r.indicator: r.measure.value for r in results}  # type: ignore[union-attr]


def _far_from(size: int, others: list[int], threshold: int = 7) -> bool:
    return all(abs(size - o) > threshold for o in others)


async def test_a_study_population_a_few_patients_from_a_released_one_is_refused(
    site: Site,
) -> None:
    """The attacker has flu_vacc_65 (all registered 65+) from a standard round and asks a
    study for registered 65..a, a chosen so that only the oldest few patients drop out:
    subtracting would tell them about those patients. The agent refuses; a study whose
    population is well apart from everything released is answered."""
    flu = find_standard("flu_vacc_65")
    standard = await site.admin.start_round(AS_OF, [_doc(flu)])
    assert _outcome(await site.run_once(), standard).status == "submitted"
    ledger = site.ledger()
    released_sizes = [p.size for p in ledger.populations(AS_OF)]
    ledger.close()
    (over_65,) = released_sizes

    candidates = [_study(f"study.aged_65_to_{a}", 65, a) for a in range(70, 111)]
    sizes = _sizes(site.extract, candidates)
    near = next(d for d in reversed(candidates) if 1 <= over_65 - sizes[d.id] <= 7)
    far = next(d for d in candidates if _far_from(sizes[d.id], released_sizes))

    attack = await site.admin.start_round(AS_OF, [_doc(near)], standard=False)
    outcome = _outcome(await site.run_once(), attack)
    assert outcome.status == "refused"
    state, detail = await site.state(attack.round_id)
    assert state == "refused" and "differs by only a few patients" in detail
    assert not re.search(r"\d", detail)
    assert site.stored(attack.round_id) == []

    fair = await site.admin.start_round(AS_OF, [_doc(far)], standard=False)
    assert _outcome(await site.run_once(), fair).status == "submitted"


async def test_two_near_populations_in_one_round_are_refused(site: Site) -> None:
    """Neither population was released before, so each alone passes the ledger check; sent
    together in one round they differ by a few patients, and the round is refused."""
    candidates = [_study(f"study.aged_{lo}_plus", lo) for lo in range(60, 100)]
    sizes = _sizes(site.extract, candidates)
    pair = next(
        (a, b) for a in candidates for b in candidates if 1 <= sizes[a.id] - sizes[b.id] <= 7
    )
    attack = await site.admin.start_round(AS_OF, [_doc(d) for d in pair], standard=False)
    outcome = _outcome(await site.run_once(), attack)
    assert outcome.status == "refused", outcome.detail
    assert "differs by only a few patients" in (await site.state(attack.round_id))[1]
    assert site.stored(attack.round_id) == []


async def test_a_study_flagged_standard_is_still_checked_for_differencing(site: Site) -> None:
    """The coordinator labels the attack round "standard" (a month end, so it passes that
    check) hoping the agent skips the differencing check for it. It does not: only the
    agent's own standard definitions are exempt."""
    flu = find_standard("flu_vacc_65")
    first = await site.admin.start_round(AS_OF, [_doc(flu)])
    assert _outcome(await site.run_once(), first).status == "submitted"
    ledger = site.ledger()
    (over_65,) = [p.size for p in ledger.populations(AS_OF)]
    ledger.close()
    candidates = [_study(f"study.aged_65_to_{a}", 65, a) for a in range(70, 111)]
    sizes = _sizes(site.extract, candidates)
    near = next(d for d in reversed(candidates) if 1 <= over_65 - sizes[d.id] <= 7)
    attack = await site.admin.start_round(AS_OF, [_doc(near)], standard=True)
    assert _outcome(await site.run_once(), attack).status == "refused"
    assert site.stored(attack.round_id) == []


# -- differential privacy over the wire ------------------------------------------------

NOISY = DisclosurePolicy(noise=Noise.DISCRETE_GAUSSIAN, noise_scale=3.0)


async def test_a_noisy_round_end_to_end_then_the_budget_runs_out(site: Site) -> None:
    # OpenDP's cost of one noisy release of the round set: 15 indicators at 1 / (2 * 3^2).
    one_round = cost_rho([IndicatorResult(d.id, Count(0)) for d in load_round_set()], NOISY)
    assert one_round == pytest.approx(len(ROUND_SET) / 18)
    site.write_policy(f"[privacy]\nbudget_rho = {1.2 * one_round}\n")
    round_ = await site.admin.start_round(AS_OF, ROUND_SET, policy=NOISY)
    assert round_.policy == NOISY  # the noise survived the wire, and the signature verified
    outcome = _outcome(await site.run_once(), round_)
    assert outcome.status == "submitted", outcome.detail
    stored = site.stored(round_.round_id)
    assert check_release(stored, NOISY) == []
    ledger = site.ledger()
    assert ledger.budget_spent() == pytest.approx(one_round)
    recorded = ledger.round_rows(round_.round_id)
    ledger.close()
    assert canonical_release_bytes(stored) == canonical_release_bytes(recorded)
    (entry,) = AuditLog.at_home(site.home).entries()
    assert entry["policy_digest"] == NOISY.digest()

    # Repeating it costs nothing and returns the recorded draw of noise.
    again = await site.admin.start_round(AS_OF, ROUND_SET, policy=NOISY)
    assert _outcome(await site.run_once(), again).status == "submitted"
    assert canonical_release_bytes(site.stored(again.round_id)) == canonical_release_bytes(stored)

    # Asking under another noise scale, for a fresh draw, is a new release: it would take
    # the spend past the budget, so it is refused, and nothing of it is recorded or spent.
    later = await site.admin.start_round(AS_OF, ROUND_SET, policy=replace(NOISY, noise_scale=4.0))
    outcome = _outcome(await site.run_once(), later)
    assert outcome.status == "refused"
    state, detail = await site.state(later.round_id)
    assert state == "refused" and "privacy budget" in detail
    ledger = site.ledger()
    assert ledger.budget_spent() == pytest.approx(one_round)
    assert ledger.round_releases(later.round_id) == []
    ledger.close()


async def test_a_noisy_round_without_a_budget_is_refused(site: Site) -> None:
    round_ = await site.admin.start_round(AS_OF, ROUND_SET, policy=NOISY)
    outcome = _outcome(await site.run_once(), round_)
    assert outcome.status == "refused"
    assert "privacy budget" in (await site.state(round_.round_id))[1]
    assert site.stored(round_.round_id) == []


async def test_a_practice_requiring_noise_refuses_a_round_without_it(site: Site) -> None:
    site.write_policy(
        "[disclosure]\nnoise = 'discrete_gaussian'\nnoise_scale = 3.0\n[privacy]\nbudget_rho = 10\n"
    )
    plain = await site.admin.start_round(AS_OF, ROUND_SET)
    assert _outcome(await site.run_once(), plain).status == "refused"
    assert "noise" in (await site.state(plain.round_id))[1]
    noisy = await site.admin.start_round(AS_OF, ROUND_SET, policy=NOISY)
    assert _outcome(await site.run_once(), noisy).status == "submitted"
