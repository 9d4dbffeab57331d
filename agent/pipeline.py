"""The agent's one path from extract to release: read, evaluate, control disclosure.

    open_extract -> engine.evaluate -> disclosure.release -> rows

``compute_results`` gives raw results, which never leave the practice;
``compute_rows`` gives the rows ``fedpeer-agent compute`` writes, released by default;
``RoundPipeline`` answers a coordinator's rounds (its docstring gives the order).

The extract reader and the engines (DuckDB, SQLAlchemy) are imported where an extract is
read, not with this module: an agent waiting for rounds never loads them, and answers
each round in a child process (``agent.isolated``) that does.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import date
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from agent.audit import AuditLog
from agent.identity_store import AgentHome
from agent.isolated import run_isolated
from agent.ledger import Ledger, NewRelease, Question, State
from agent.policy_file import load_settings
from fedpeer.collection import DECLINED, Receipt, Refusal, ReleaseDocument, Round
from fedpeer.dates import reference_date_problem
from fedpeer.errors import FedpeerError
from fedpeer.measures import IndicatorResult, Kind
from fedpeer.policy import DisclosurePolicy, strictest
from fedpeer.release import ResultRow, to_rows
from fedpeer.standardise import (
    ReferenceRates,
    StandardisationError,
    expected_indicator,
    standardisation_of,
)

if TYPE_CHECKING:
    from agent.engine import Membership

    # The waiting agent imports this module for its rounds' bookkeeping (``prepare`` hands
    # the work to a child process, ``acknowledged`` writes the ledger and audit log); what
    # reads and answers questions (definitions, disclosure control, noise, differencing) is
    # imported where it is used, in the child, so the waiting agent stays small.
    from agent.extract import DataQualitySummary
    from fedpeer.definitions import IndicatorDefinition

log = logging.getLogger("fedpeer.agent")


class AwaitingApproval(FedpeerError):
    """A round's release waits for the practice's approval; nothing is sent meanwhile."""


def _codes(definitions: Sequence[IndicatorDefinition]) -> set[str]:
    from fedpeer.definitions.serialise import to_data

    # Every code the definitions name, so the quality summary counts events in no codelist.
    return {code for d in definitions for cl in to_data(d)[1].values() for code, _t in cl.entries}


def compute_results(
    location: str,
    as_of: date,
    definitions: Sequence[IndicatorDefinition] | None = None,
    *,
    engine: str = "sql",
    by_age_sex: bool = False,
) -> tuple[list[IndicatorResult], DataQualitySummary]:
    """Raw results of the definitions (the standard set and profile by default)."""
    from agent.engine import evaluate
    from agent.extract import open_extract
    from fedpeer.definitions import load_round_set

    chosen = load_round_set() if definitions is None else list(definitions)
    with (
        open_extract(location, as_of, known_codes=_codes(chosen)) as extract,
        extract.connect() as connection,
    ):
        results = evaluate(chosen, connection, as_of, engine=engine, by_age_sex=by_age_sex)
        return results, extract.quality


def evaluate_with_membership(
    location: str,
    as_of: date,
    definitions: Sequence[IndicatorDefinition],
    *,
    engine: str = "sql",
    expected: Sequence[tuple[IndicatorDefinition, ReferenceRates]] = (),
) -> tuple[list[IndicatorResult], list[Membership], list[IndicatorResult]]:
    """Raw results and the sets they count, from one reading of the extract; and for each
    (definition, reference rates) in ``expected``, its expected count (``expected_count``)."""
    from agent.engine import evaluate, membership
    from agent.extract import open_extract

    everything = [*definitions, *(d for d, _ in expected)]
    with (
        open_extract(location, as_of, known_codes=_codes(everything)) as extract,
        extract.connect() as connection,
    ):
        results = evaluate(definitions, connection, as_of, engine=engine)
        banded = evaluate(
            [d for d, _ in expected], connection, as_of, engine=engine, by_age_sex=True
        )
        counts = [expected_count(d, rates, banded) for d, rates in expected]
        return results, membership(definitions, connection, as_of), counts


def expected_count(
    definition: IndicatorDefinition, rates: ReferenceRates, banded: Sequence[IndicatorResult]
) -> IndicatorResult:
    """The raw expected count of a standardised definition (``fedpeer.standardise``):
    E = sum of its denominator in each band times the band's reference rate, as a count in
    units of the largest rate. It never leaves the practice before disclosure control."""
    from fedpeer.measures import Count

    denominators = {
        r.stratum: r.measure.denominator or 0
        for r in banded
        if r.indicator == definition.id and r.stratum
    }
    return IndicatorResult(
        expected_indicator(definition.id), Count(rates.expected_units(denominators))
    )


def compute_rows(
    location: str,
    as_of: date,
    *,
    raw: bool = False,
    engine: str = "sql",
    policy: DisclosurePolicy | None = None,
    definitions: Sequence[IndicatorDefinition] | None = None,
) -> tuple[list[ResultRow], DataQualitySummary]:
    """Rows of what would leave the practice, or with ``raw`` the unsuppressed values."""
    from fedpeer.disclosure import release

    results, quality = compute_results(location, as_of, definitions, engine=engine)
    if not raw:
        results = release(results, policy or DisclosurePolicy())
    return to_rows(results), quality


# -- answering a collection round ------------------------------------------------------


def _month(today: date) -> str:
    return today.strftime("%Y-%m")


class RoundPipeline:
    """The agent's answer to rounds, in one straight line.

    1. **Admissible?** Decided before any data is read, from the round, the catalogue,
       the policy and the record alone, so a refusal here may say why: the reference
       date (a month end, no later than the last complete month by this machine's clock);
       the round's policy (it must be the network's policy pinned at enrolment); a
       question already declined; the monthly question budget for questions outside the
       standard catalogue (asked, whatever the answer); and the privacy budget for noise.
    2. **Evaluate** only the questions the ledger has not answered for this date, and the
       sets they count.
    3. **Membership.** A question outside the catalogue whose set is within a few units
       of a released set is declined: the coordinator hears only ``DECLINED``.
    4. **Release** under the network's policy tightened by agent.toml (noise first when
       the policy has any; gates read true values), and **record** the round in one write.
    5. The answer is the release document of recorded answers, relabelled to the round's
       ids; with manual approval it waits for ``fedpeer-agent approve``.

    With ``isolated`` (the default) all of it runs in a child process started for the
    round, so the agent's memory returns to idle after it; ``today`` must then pickle.
    """

    def __init__(
        self,
        extract: str,
        home: Path,
        *,
        engine: str = "sql",
        today: Callable[[], date] = date.today,
        isolated: bool = True,
    ) -> None:
        self.extract = extract
        self.home = Path(home)
        self.engine = engine
        self._today = today
        self.isolated = isolated

    def prepare(self, round_: Round) -> ReleaseDocument | Refusal:
        """The release document for a round, or the refusal the coordinator will hear."""
        if self.isolated:
            return run_isolated(_prepare, self.extract, self.home, self.engine, self._today, round_)
        return self._prepare(round_)

    def _prepare(self, round_: Round) -> ReleaseDocument | Refusal:
        from fedpeer.definitions import deserialize, meaning_hash
        from fedpeer.dp import cost_rho

        identity = AgentHome(self.home).load()
        settings = load_settings(self.home)
        today = self._today()
        definitions = [deserialize(doc.body) for doc in round_.definitions]
        asks = [
            (Question(meaning_hash(d), doc.content_hash, doc.id), d)
            for d, doc in zip(definitions, round_.definitions, strict=True)
        ]
        # 1. Admissible, from what is known before reading any data.
        problem = reference_date_problem(round_.as_of, today)
        if problem is not None:
            return Refusal(problem)
        if round_.policy != identity.network_policy:
            return Refusal(
                "the round does not carry the network's disclosure policy this practice "
                "enrolled under; no round may set its own"
            )
        try:
            standardisation = standardisation_of(round_)
        except StandardisationError as exc:
            return Refusal(f"the round's reference rates cannot be used: {exc}")
        # A standardised definition's expected count is one more question, whose meaning
        # is the definition's and the rates' (``fedpeer.standardise``).
        rates_for: dict[str, ReferenceRates] = {}
        for rates in standardisation.rates if standardisation else ():
            d = definitions[round_.definition_hashes.index(rates.definition_hash)]
            q = Question(
                rates.meaning(meaning_hash(d)), rates.question_hash, expected_indicator(d.id)
            )
            asks.append((q, d))
            rates_for[q.meaning] = rates
        questions = [q for q, _ in asks]
        policy = strictest(identity.network_policy, settings.policy)
        ledger = Ledger.at_home(self.home)
        try:
            known = ledger.known((q.meaning for q in questions), round_.as_of)
            if any(r.state is State.DECLINED for r in known.values()):
                return self._declined(ledger, round_.round_id)
            rejected = [r for r in known.values() if r.state is State.REJECTED]
            if rejected:
                # The practice said no in `fedpeer-agent reject`: its own words, its choice.
                return Refusal(f"the practice rejected this release: {rejected[0].why}")
            new = [(q, d) for q, d in asks if q.meaning not in known]
            new = list({q.meaning: (q, d) for q, d in new}.values())  # one question asked twice
            catalogue = _catalogue()
            studies = {q.meaning for q, _ in new if q.definition_hash not in catalogue}
            if ledger.questions_asked(_month(today)) + len(studies) > settings.questions_per_month:
                return Refusal(
                    f"this practice's budget of {settings.questions_per_month} questions outside "
                    f"the standard catalogue for {_month(today)} would be exceeded"
                )
            rho = [
                cost_rho([Kind.COUNT if q.meaning in rates_for else d.kind], policy) for q, d in new
            ]
            if sum(rho):
                if settings.budget_rho is None:
                    return Refusal("this practice has set no privacy budget for noisy releases")
                if ledger.budget_spent() + sum(rho) > settings.budget_rho:
                    return Refusal("this practice's privacy budget would be exceeded")
            if new:
                # 2.-4. Evaluate, check membership, release, record: once each.
                declined = self._answer(
                    ledger, round_, questions, new, studies, rho, policy, today, rates_for
                )
                if declined is not None:
                    return declined
            else:
                ledger.record_round(
                    round_.round_id,
                    round_.as_of,
                    questions,
                    [],
                    month=_month(today),
                    manual_approval=policy.manual_approval,
                )
            if State.AWAITING_APPROVAL in ledger.round_states(round_.round_id):
                raise AwaitingApproval(
                    f"round {round_.round_id} awaits the practice's approval: "
                    f"see `fedpeer-agent preview {round_.round_id}`, then approve or reject it"
                )
            return ledger.round_document(round_.round_id, identity.practice_id)
        finally:
            ledger.close()

    def _answer(
        self,
        ledger: Ledger,
        round_: Round,
        questions: list[Question],
        new: list[tuple[Question, IndicatorDefinition]],
        studies: set[str],
        rho: list[float],
        policy: DisclosurePolicy,
        today: date,
        rates_for: Mapping[str, ReferenceRates],
    ) -> Refusal | None:
        from agent.differencing import CandidateSets, decline_reason
        from agent.engine import Membership
        from fedpeer.dp import MeanSum, release_with_noise

        plain = [d for q, d in new if q.meaning not in rates_for]
        expected = [(d, rates_for[q.meaning]) for q, d in new if q.meaning in rates_for]
        results, plain_members, counts = evaluate_with_membership(
            self.extract, round_.as_of, plain, engine=self.engine, expected=expected
        )
        # Back in the order of ``new``. An expected count adds no set of units of its own:
        # it is a weighted sum of the denominator's bands, released as a count.
        next_result, next_members, next_count = iter(results), iter(plain_members), iter(counts)
        raw, members = [], []
        for q, _ in new:
            if q.meaning in rates_for:
                raw.append(next(next_count))
                members.append(Membership({}))
            else:
                raw.append(next(next_result))
                members.append(next(next_members))
        sets = [{part: ledger.member_digests(ids) for part, ids in m.sets.items()} for m in members]
        candidates = [
            CandidateSets(q.meaning, q.indicator, s, q.meaning in studies)
            for (q, _), s in zip(new, sets, strict=True)
        ]
        decline = decline_reason(ledger, candidates, policy.threshold)
        month = _month(today)
        if decline is not None:
            asked = [
                NewRelease(q, (), policy, {}, counts_against_budget=q.meaning in studies)
                for q, _ in new
            ]
            ledger.record_round(
                round_.round_id,
                round_.as_of,
                questions,
                asked,
                month=month,
                manual_approval=False,
                declined=(next(q for q, _ in new if q.meaning == decline.meaning), decline.why),
            )
            # The reason is for the practice: its log, never the coordinator. It names a
            # question and a number of units, never a patient.
            log.warning("event=declined round=%s reason=%s", round_.round_id, decline.why)
            return Refusal(DECLINED)
        # Disclosure control sees the whole release at once (secondary suppression across
        # the profile's breakdowns and list size); noise, when the policy has any, first.
        sums = [
            MeanSum(m.clipped_sum, d.value_bound)
            if m.clipped_sum is not None and d.value_bound
            else None
            for m, (_, d) in zip(members, new, strict=True)
        ]
        released = release_with_noise(raw, policy, sums=sums)
        ledger.record_round(
            round_.round_id,
            round_.as_of,
            questions,
            [
                NewRelease(q, tuple(to_rows([r])), policy, s, cost, q.meaning in studies)
                for (q, _), r, s, cost in zip(new, released, sets, rho, strict=True)
            ],
            month=month,
            manual_approval=policy.manual_approval,
        )
        return None

    def _declined(self, ledger: Ledger, round_id: str) -> Refusal:
        log.warning("event=declined round=%s reason=asked again", round_id)
        return Refusal(DECLINED)

    def acknowledged(self, round_id: str, receipt: Receipt, coordinator: str) -> None:
        """A verified receipt came back: mark the release sent and append it to the audit log."""
        ledger = Ledger.at_home(self.home)
        try:
            releases = ledger.round_releases(round_id)
            if not releases:
                return  # a refusal: nothing of a release left
            audit = AuditLog.at_home(self.home)
            if audit.verify() is None and any(
                e.get("round") == round_id and e.get("receipt") == receipt.submission_id
                for e in audit.entries()
            ):
                return  # a resent receipt, already recorded (a damaged log fails below)
            # A repeated round resends releases already sent (state SENT under the first
            # round's receipt); they left the practice again, so they are audited again.
            ledger.mark_sent(round_id, receipt.submission_id)
            audit.append(
                round_id=round_id,
                definitions=[q.definition_hash for q, _ in releases],
                as_of=releases[0][1].as_of.isoformat(),
                release_sha256=receipt.content_sha256,
                to=coordinator,
                receipt=receipt.submission_id,
            )
        finally:
            ledger.close()


def _prepare(
    extract: str, home: Path, engine: str, today: Callable[[], date], round_: Round
) -> ReleaseDocument | Refusal:
    """``RoundPipeline.prepare`` in this process: what the child process runs."""
    return RoundPipeline(extract, home, engine=engine, today=today, isolated=False).prepare(round_)


@cache
def _catalogue() -> frozenset[str]:
    """Content hashes of the standard catalogue this agent ships with."""
    from fedpeer.definitions import content_hash, load_round_set

    return frozenset(content_hash(d) for d in load_round_set())
