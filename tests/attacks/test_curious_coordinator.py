"""A curious coordinator plays against the real agent, over the real wire.

The attacker owns the coordinator: an admin certificate, and the CA key itself, so it can
sign any round it likes (``Network.forge``) and read everything stored. The practices are
real agents (``practice_agent``: enrolment, mutual TLS, ``RoundPipeline``) reading small
extracts whose every patient the test chose (``town``).

Most attacks run against twins: two practices whose extracts differ in one patient. What
the coordinator sees of each (state, reason, released rows) must be the same; then the
attack learnt nothing about that patient. Where a data-dependent answer is unavoidable
(a refusal because a set is too close to another), it is the one fixed sentence
``DECLINED``, and the monthly question budget bounds how many such answers there are.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path

import grpc
import pytest
from _coordinator_helpers import admin, start
from town import DIABETES, HBA1C, Town, town

from agent.cli_network import practice_agent
from agent.client import enrol
from agent.identity_store import AgentHome
from agent.ledger import Ledger
from coordinator.admin_client import AdminClient
from coordinator.ca import CoordinatorHome
from coordinator.rounds import isoformat_z
from coordinator.server import RunningCoordinator
from fedpeer.channel import secure_channel
from fedpeer.collection import DECLINED, DefinitionDocument, ReleaseDocument, Round
from fedpeer.dates import last_complete_month_end
from fedpeer.definitions import (
    Codelist,
    Condition,
    IndicatorDefinition,
    LatestValue,
    PatientCriteria,
    Unit,
    find_standard,
    load_round_set,
    serialize,
)
from fedpeer.definitions.model import DURATION_MINUTES, AppointmentCriteria, Comparator
from fedpeer.disclosure import check_release
from fedpeer.measures import Kind
from fedpeer.policy import DisclosurePolicy, Rounding
from fedpeer.release import ResultRow
from fedpeer.signing import sign
from fedpeer.v1 import agent_pb2, agent_pb2_grpc

AS_OF = dt.date(2026, 9, 30)
DIABETES_CODES = Codelist("study-diabetes.csv", ((DIABETES, "Type 2 diabetes mellitus"),))
HBA1C_CODES = Codelist("study-hba1c.csv", ((HBA1C, "HbA1c level"),))


# -- the questions a coordinator might ask ---------------------------------------------


def diabetics(
    ident: str,
    age_min: int = 17,
    age_max: int | None = None,
    *,
    numerator_age_max: int | None = None,
    title: str = "Diabetics with HbA1c at most 58",
    codes: Codelist = DIABETES_CODES,
) -> IndicatorDefinition:
    """Diabetics in an age range, and those whose latest HbA1c is at most 58."""
    return IndicatorDefinition(
        id=ident,
        version=1,
        title=title,
        description="A study of diabetes control.",
        kind=Kind.PROPORTION,
        unit=Unit.PATIENTS,
        denominator=PatientCriteria(
            registered=True,
            age_min=age_min,
            age_max=age_max,
            has_condition=(Condition(codes),),
        ),
        numerator=PatientCriteria(
            age_max=numerator_age_max,
            latest_value=(LatestValue(HBA1C_CODES, 12, Comparator.AT_MOST, 58.0),),
        ),
    )


def people(ident: str, age_min: int, age_max: int | None = None) -> IndicatorDefinition:
    """Registered patients in an age range."""
    return IndicatorDefinition(
        id=ident,
        version=1,
        title=f"Patients aged {age_min} to {age_max or 'any'}",
        description="A study population.",
        kind=Kind.COUNT,
        unit=Unit.PATIENTS,
        population=PatientCriteria(registered=True, age_min=age_min, age_max=age_max),
    )


def visit_minutes(ident: str) -> IndicatorDefinition:
    """The mean length of attended appointments."""
    return IndicatorDefinition(
        id=ident,
        version=1,
        title="Mean minutes of attended appointments",
        description="A study of consultation length.",
        kind=Kind.MEAN,
        unit=Unit.APPOINTMENTS,
        population=AppointmentCriteria(statuses=("attended",)),
        value=DURATION_MINUTES,
    )


def docs(*definitions: IndicatorDefinition) -> list[DefinitionDocument]:
    return [DefinitionDocument.of(d.id, serialize(d)) for d in definitions]


# -- the network: a coordinator, the attacker's tools, and practices -------------------


@dataclass(frozen=True)
class View:
    """All the coordinator learns from one practice's answer to one round."""

    state: str
    detail: str
    rows: tuple[ResultRow, ...] | None

    def without_hashes(self) -> View:
        """The view with the release's hash blanked (it differs when the rows do)."""
        return replace(self, detail="" if self.state == "submitted" else self.detail)


@dataclass
class Practice:
    practice_id: str
    home: Path
    extract: Path
    net: Network

    def settings(self, text: str) -> None:
        (self.home / "agent.toml").write_text(text, encoding="utf-8")

    def data(self, people: Town) -> None:
        people.write(self.extract, AS_OF)

    async def answer(self, round_: Round) -> View:
        """Let the real agent run once, then read what the coordinator has of its answer."""
        await practice_agent(self.home, str(self.extract)).run_once()
        return await self.net.view(self, round_)

    def ledger(self) -> Ledger:
        return Ledger.at_home(self.home)


@dataclass
class Network:
    running: RunningCoordinator
    admin: AdminClient
    root: Path

    async def practice(self, practice_id: str, people: Town) -> Practice:
        token, _ = await self.admin.invite(practice_id, f"Practice {practice_id}", "North")
        home = self.root / practice_id
        await enrol(self.running.address, self.running.enrol_port, token, home)
        practice = Practice(practice_id, home, self.root / f"{practice_id}-extract", self)
        practice.data(people)
        return practice

    async def ask(self, *definitions: IndicatorDefinition, as_of: dt.date = AS_OF) -> Round:
        """A round through the admin API, as any coordinator may start one."""
        return await self.admin.start_round(as_of, docs(*definitions))

    def forge(
        self,
        *definitions: IndicatorDefinition,
        as_of: dt.date = AS_OF,
        policy: DisclosurePolicy | None = None,
    ) -> Round:
        """A round the coordinator's own checks would not start, signed with its CA key."""
        ca = CoordinatorHome(self.running.home.root).load_ca()
        now = dt.datetime.now(dt.UTC)
        unsigned = Round(
            round_id=f"forged-{uuid.uuid4().hex[:8]}",
            as_of=as_of,
            policy=policy or DisclosurePolicy(),
            definitions=tuple(docs(*definitions)),
            created_at=isoformat_z(now),
        )
        signed = replace(unsigned, signature=sign(ca.key, unsigned.manifest()))
        self.running.store.add_round(signed, now)
        return signed

    async def view(self, practice: Practice, round_: Round) -> View:
        status = await self.admin.status(round_.round_id)
        (mine,) = [p for p in status.practices if p.practice_id == practice.practice_id]
        signed = self.running.store.signed_release(round_.round_id, practice.practice_id)
        rows = None if signed is None else ReleaseDocument.from_bytes(signed.document).rows
        return View(mine.state, mine.detail, rows)

    async def twins(self, a: Practice, b: Practice, round_: Round) -> tuple[View, View]:
        return await a.answer(round_), await b.answer(round_)


@pytest.fixture
async def net(tmp_path: Path) -> AsyncIterator[Network]:
    running = await start(tmp_path / "coordinator")
    try:
        async with admin(running) as adm:
            yield Network(running, adm, tmp_path)
    finally:
        await running.stop(0)


def no_numbers(text: str) -> bool:
    return not re.search(r"\d", text)


# -- the threshold oracle: a round may not set the policy ------------------------------


async def test_the_threshold_oracle_is_refused_the_same_way_whatever_the_count(
    net: Network,
) -> None:
    """The attack: with threshold m-1 and rounding base m, a count is released exactly
    when it is at least m; a binary search over m gives it exactly. The twins' diabetic
    counts are 19 and 18. Every forged policy is refused, before any data is read, with
    the same words for both; under the network's policy both release 20."""
    a = await net.practice("TWIN_A", town())
    b = await net.practice("TWIN_B", town().without("a01"))
    question = diabetics("study.dm_control")
    for m in (8, 12, 16, 18, 19, 20):
        forged = net.forge(question, policy=DisclosurePolicy(threshold=m - 1, rounding_base=m))
        view_a, view_b = await net.twins(a, b, forged)
        assert view_a == view_b and view_a.state == "refused"
        assert "policy" in view_a.detail and no_numbers(view_a.detail)
    # Raising min_mean_count asks the same of the count behind a mean: refused alike.
    forged = net.forge(visit_minutes("study.minutes"), policy=DisclosurePolicy(min_mean_count=3))
    view_a, view_b = await net.twins(a, b, forged)
    assert view_a == view_b and view_a.state == "refused"
    # Under the network's policy the twins' answers cannot be told apart.
    fair = await net.ask(question)
    view_a, view_b = await net.twins(a, b, fair)
    assert view_a.without_hashes() == view_b.without_hashes()
    assert view_a.state == "submitted" and view_a.rows is not None
    (row,) = view_a.rows
    assert row.denominator == 20  # 19 and 18 both round to 20
    # Nothing of a refused round was asked: the study questions budget is untouched by them.
    ledger = a.ledger()
    assert ledger.questions_asked(dt.date.today().strftime("%Y-%m")) == 1
    ledger.close()


async def test_a_stricter_practice_policy_is_applied_and_changing_it_gives_no_fresh_draw(
    net: Network,
) -> None:
    a = await net.practice("P1", town())
    a.settings("[disclosure]\nrounding = 'midpoint6'\nthreshold = 10\n")
    question = diabetics("study.dm_control")
    first = await a.answer(await net.ask(question))
    assert first.state == "submitted" and first.rows is not None
    strict = DisclosurePolicy(threshold=10, rounding=Rounding.MIDPOINT6)
    assert check_release(list(first.rows), strict) == []
    # The practice loosens agent.toml again: the question already answered keeps its answer.
    a.settings("")
    again = await a.answer(await net.ask(question))
    assert again.rows == first.rows


# -- rewording: the ledger knows a question by its meaning -----------------------------


async def test_a_reworded_question_gets_the_recorded_answer(net: Network) -> None:
    """Renamed id, new title, the codelist under another name: the same question. After
    late coding changes a patient's HbA1c, the reworded question still gets the recorded
    numbers, under its own id, and is not counted against the budget again."""
    a = await net.practice("P1", town())
    first = await a.answer(await net.ask(diabetics("study.dm_control")))
    assert first.state == "submitted" and first.rows is not None
    a.data(town().changed("a10", hba1c=50.0).changed("a11", hba1c=50.0))
    reworded = diabetics(
        "study.dm_control_v2",
        title="HbA1c control among people with diabetes",
        codes=replace(DIABETES_CODES, name="t2dm-2026.csv"),
    )
    again = await a.answer(await net.ask(reworded))
    assert again.state == "submitted" and again.rows is not None
    assert [replace(r, indicator="study.dm_control") for r in again.rows] == list(first.rows)
    ledger = a.ledger()
    assert ledger.questions_asked(dt.date.today().strftime("%Y-%m")) == 1
    ledger.close()


# -- refusals: data-dependent ones say one fixed thing ---------------------------------


async def test_a_data_dependent_refusal_is_the_one_fixed_sentence(net: Network) -> None:
    """The refusal oracle: "diabetics 17+" then "diabetics 17..92", in a practice whose
    only patient aged 93 is diabetic. The sets differ by that one patient, so the second
    is declined; the coordinator hears DECLINED and nothing of why. The practice's ledger
    has the reason, which names no patient."""
    a = await net.practice("P1", town())
    assert (await a.answer(await net.ask(diabetics("study.dm_17_plus")))).state == "submitted"
    attack = await net.ask(diabetics("study.dm_17_to_92", age_max=92))
    view = await a.answer(attack)
    assert (view.state, view.detail, view.rows) == ("refused", DECLINED, None)
    ledger = a.ledger()
    why = ledger.declined_why(attack.round_id) or ""
    assert re.search(r"differs by [1-7] ", why) and "x" not in why.split()
    ledger.close()
    # Asking it again, reworded, reveals nothing new: the same sentence.
    again = await a.answer(
        await net.ask(diabetics("study.again", age_max=92, title="Diabetics under 93"))
    )
    assert (again.state, again.detail) == ("refused", DECLINED)


async def test_a_same_size_swap_is_caught_by_membership(net: Network) -> None:
    """Patients aged 30..59 and 31..60 are both 30 people: sizes alike, one patient out
    and another in. Comparing sizes passed it; membership differs by two: declined."""
    a = await net.practice("P1", town())
    assert (await a.answer(await net.ask(people("study.p30_59", 30, 59)))).state == "submitted"
    view = await a.answer(await net.ask(people("study.p31_60", 31, 60)))
    assert (view.state, view.detail) == ("refused", DECLINED)


async def test_a_target_placed_in_a_numerator_is_caught(net: Network) -> None:
    """Same denominator, and a numerator that leaves out only the patient aged 93: the
    populations are identical, the numerators differ by one. Declined at the numerator."""
    a = await net.practice("P1", town())
    assert (await a.answer(await net.ask(diabetics("study.dm")))).state == "submitted"
    view = await a.answer(await net.ask(diabetics("study.dm_num", numerator_age_max=92)))
    assert (view.state, view.detail) == ("refused", DECLINED)


async def test_sets_are_compared_across_reference_dates(net: Network) -> None:
    """A diabetic registers in September: the study for August and for September differ
    by that one patient. Differencing across dates would reveal them; declined."""
    a = await net.practice("P1", town())
    people_now = town()
    people_now.people.append(
        replace(people_now.people[-1], pid="new", age=50, registered_from=dt.date(2026, 9, 10))
    )
    a.data(people_now)
    august = dt.date(2026, 8, 31)
    assert (await a.answer(await net.ask(diabetics("study.dm"), as_of=august))).state == (
        "submitted"
    )
    view = await a.answer(await net.ask(diabetics("study.dm")))
    assert (view.state, view.detail) == ("refused", DECLINED)


async def test_the_question_budget_bounds_the_yes_no_answers(net: Network) -> None:
    """Each study question is one chance at a data-dependent yes/no. With a budget of
    three a month, the fourth question is refused for a reason the coordinator could
    compute itself, the same for twins, whatever their data; standard questions are free."""
    a = await net.practice("TWIN_A", town())
    b = await net.practice("TWIN_B", town().without("x"))
    for p in (a, b):
        p.settings("[questions]\nper_month = 3\n")
    standard = await net.ask(*load_round_set())
    view_a, view_b = await net.twins(a, b, standard)
    assert view_a.state == view_b.state == "submitted"
    for k, age_max in enumerate((50, 60, 70)):
        await net.twins(a, b, await net.ask(people(f"study.q{k}", 30, age_max)))
    over = await net.ask(diabetics("study.dm_17_to_92", age_max=92))
    view_a, view_b = await net.twins(a, b, over)
    assert view_a == view_b and view_a.state == "refused"
    assert "budget" in view_a.detail


# -- dates: every round at a past month end --------------------------------------------


async def test_every_round_is_dated_at_a_complete_month_end(net: Network) -> None:
    """A day's shift differences one day's deaths and registrations; a future date is
    not yet in the extract. Forged rounds for those dates are refused by the agent, with
    the same reason for both twins; the coordinator will not even start them."""
    a = await net.practice("TWIN_A", town())
    b = await net.practice("TWIN_B", town().without("x"))
    latest = last_complete_month_end(dt.date.today())
    next_month_end = last_complete_month_end(latest + dt.timedelta(days=40))
    for as_of in (dt.date(2026, 9, 29), next_month_end):
        for question in (find_standard("flu_vacc_65"), people("study.all", 0)):
            view_a, view_b = await net.twins(a, b, net.forge(question, as_of=as_of))
            assert view_a == view_b and view_a.state == "refused"
            assert "reference date" in view_a.detail
        with pytest.raises(Exception, match="reference date"):
            await net.ask(people("study.all", 0), as_of=as_of)


async def test_standard_is_decided_by_the_catalogue_not_by_the_round(net: Network) -> None:
    """A standard definition, quietly changed (66+ for 65+) under its own id and title,
    is a study question: it counts against the budget and is checked for differencing."""
    a = await net.practice("P1", town())
    a.settings("[questions]\nper_month = 1\n")
    flu = find_standard("flu_vacc_65")
    assert (await a.answer(await net.ask(flu))).state == "submitted"
    ledger = a.ledger()
    month = dt.date.today().strftime("%Y-%m")
    assert ledger.questions_asked(month) == 0
    ledger.close()
    assert flu.denominator is not None
    tampered = replace(flu, denominator=replace(flu.denominator, age_min=66))
    await a.answer(await net.ask(tampered))
    ledger = a.ledger()
    assert ledger.questions_asked(month) == 1
    ledger.close()


# -- noise: sums and counts noised, gates on true values -------------------------------


async def test_a_noisy_mean_over_three_appointments_is_not_released(net: Network) -> None:
    a = await net.practice("P1", town())
    a.settings(
        "[disclosure]\nnoise = 'discrete_gaussian'\nnoise_scale = 2.0\n[privacy]\nbudget_rho = 5\n"
    )
    view = await a.answer(await net.ask(visit_minutes("study.minutes")))
    assert view.state == "submitted" and view.rows is not None
    (row,) = view.rows
    assert row.mean is None and row.value is None and row.count is None
    ledger = a.ledger()
    assert ledger.budget_spent() == pytest.approx(2 / (2 * 2.0**2))  # a count and a sum
    ledger.close()


# -- replay: a release is the practice's, signed by it ---------------------------------


async def test_a_release_replayed_over_another_practices_channel_is_refused(
    net: Network,
) -> None:
    a = await net.practice("PA", town())
    b = await net.practice("PB", town().without("x"))
    round_ = await net.ask(diabetics("study.dm"))
    assert (await a.answer(round_)).state == "submitted"
    entry = practice_agent(a.home, str(a.extract)).outbox.get(round_.round_id)
    assert entry is not None
    request = agent_pb2.SubmitRequest.FromString(entry.payload)
    identity = AgentHome(b.home).load()
    async with secure_channel(
        identity.coordinator, identity.ca_pem, identity.key_pem, identity.cert_pem
    ) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await agent_pb2_grpc.AgentStub(channel).Submit(request)
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "signature does not verify" in (caught.value.details() or "")
    assert net.running.store.signed_release(round_.round_id, "PB") is None


# -- the earlier attacks ---------------------------------------------------------------


async def test_a_standard_round_keeps_breakdown_cells_from_being_subtracted(
    net: Network,
) -> None:
    """The age-sex profile is released beside the list size: a lone withheld cell would
    be the total less the rest. Every equation has none or at least two withheld."""
    a = await net.practice("P1", town())
    view = await a.answer(await net.ask(*load_round_set()))
    assert view.state == "submitted" and view.rows is not None
    assert check_release(list(view.rows), DisclosurePolicy()) == []
    cells = [r for r in view.rows if r.indicator == "profile.age_sex" and r.category != "total"]
    assert sum(r.count is None for r in cells) != 1
