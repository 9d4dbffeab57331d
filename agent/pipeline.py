"""The agent's one path from extract to release: read, evaluate, control disclosure.

    open_extract -> engine.evaluate -> disclosure.release -> rows

``compute_results`` gives raw results, which never leave the practice;
``compute_rows`` gives the rows ``fedpeer-agent compute`` writes, released by default.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from functools import cache
from pathlib import Path

from agent.audit import AuditLog
from agent.differencing import REFUSAL, check_population, population_difference
from agent.engine import evaluate
from agent.extract import DataQualitySummary, open_extract
from agent.ledger import Ledger, ReleaseKey, State
from agent.policy_file import (
    check_reference_date,
    effective_policy,
    load_practice_policy,
    load_privacy_budget,
)
from fedpeer.canonical import release_digest
from fedpeer.collection import Receipt, Refusal, Release, Round
from fedpeer.definitions import IndicatorDefinition, content_hash, deserialize, load_round_set
from fedpeer.definitions.serialise import to_data
from fedpeer.disclosure import release
from fedpeer.dp import cost_rho, release_with_noise
from fedpeer.errors import FedpeerError, PolicyError, ReleaseRefused
from fedpeer.measures import Breakdown, IndicatorResult, Mean, Proportion, Rate
from fedpeer.policy import DisclosurePolicy, Noise
from fedpeer.release import ResultRow, to_rows


class AwaitingApproval(FedpeerError):
    """A round's release waits for the practice's approval; nothing is sent meanwhile."""


def compute_results(
    location: str,
    as_of: date,
    definitions: Sequence[IndicatorDefinition] | None = None,
    *,
    engine: str = "sql",
    by_age_sex: bool = False,
) -> tuple[list[IndicatorResult], DataQualitySummary]:
    """Raw results of the definitions (the standard set and profile by default)."""
    chosen = load_round_set() if definitions is None else list(definitions)
    # Every code the definitions name, so the quality summary counts events in no codelist.
    known = {code for d in chosen for cl in to_data(d)[1].values() for code, _term in cl.entries}
    with (
        open_extract(location, as_of, known_codes=known) as extract,
        extract.connect() as connection,
    ):
        results = evaluate(chosen, connection, as_of, engine=engine, by_age_sex=by_age_sex)
        return results, extract.quality


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
    results, quality = compute_results(location, as_of, definitions, engine=engine)
    if not raw:
        results = release(results, policy or DisclosurePolicy())
    return to_rows(results), quality


# -- answering a collection round ------------------------------------------------------


def _population_size(result: IndicatorResult) -> int | None:
    """The raw size of a result's population, kept locally for the differencing check."""
    m = result.measure
    if isinstance(m, Proportion | Rate):
        return m.denominator
    if isinstance(m, Mean):
        return m.count
    if isinstance(m, Breakdown):
        return m.total if m.total is not None else sum(c or 0 for _, c in m.cells)
    return m.value


class RoundPipeline:
    """The agent's answer to rounds: verify, evaluate, control disclosure, record, audit.

    Everything that decides what leaves goes through here, in this order:
    the definitions are data checked against their hashes (nothing is executed); the
    reference date must be a month end for a standard round; the round's policy may not
    be looser than the practice's ``agent.toml``; a key already in the ledger returns its
    recorded release, never a recomputation; a study population within a few patients of
    one already released (or of another in the same round) is refused; a policy with
    noise spends the practice's privacy budget, refused when it would run out, and then
    adds noise before rounding; with manual approval nothing is releasable until
    ``fedpeer-agent approve``. The audit log is appended only once a verified receipt
    says the release left (again for a repeated round: it left again).
    """

    def __init__(self, extract: str, home: Path, *, engine: str = "sql") -> None:
        self.extract = extract
        self.home = Path(home)
        self.engine = engine

    def prepare(self, round_: Round) -> Release | Refusal:
        """What to send for a round, or why the practice declines it."""
        definitions = [deserialize(doc.body) for doc in round_.definitions]
        try:
            check_reference_date(round_.as_of, standard=round_.standard)
            policy = effective_policy(round_.policy, load_practice_policy(self.home))
        except PolicyError as exc:
            return Refusal(str(exc))
        ledger = Ledger.at_home(self.home)
        try:
            keys = [ReleaseKey(content_hash(d), round_.as_of, policy.digest()) for d in definitions]
            if any(ledger.get(key) is None for key in keys):
                try:
                    self._evaluate_and_record(ledger, round_, definitions, keys, policy)
                except ReleaseRefused as exc:
                    return Refusal(str(exc))
            else:
                for key in keys:  # a repeated round: link it to the recorded answers
                    ledger.record(key, (), round_.round_id)
            rejected = [
                r for r in ledger.round_releases(round_.round_id) if r.state == State.REJECTED
            ]
            if rejected:
                # The practice said no in `fedpeer-agent reject`: the coordinator hears why.
                return Refusal(f"the practice rejected this release: {rejected[0].why}")
            rows = ledger.releasable(round_.round_id)
            if rows is None:
                raise AwaitingApproval(
                    f"round {round_.round_id} awaits the practice's approval: "
                    f"see `fedpeer-agent preview {round_.round_id}`, then approve or reject it"
                )
            return Release(tuple(rows), policy)
        finally:
            ledger.close()

    def _evaluate_and_record(
        self,
        ledger: Ledger,
        round_: Round,
        definitions: list[IndicatorDefinition],
        keys: list[ReleaseKey],
        policy: DisclosurePolicy,
    ) -> None:
        raw, _quality = compute_results(self.extract, round_.as_of, definitions, engine=self.engine)
        # Keys already in the ledger keep their recorded answer (``Ledger.record`` never
        # replaces one), so only the new ones are checked and paid for.
        new = [i for i, key in enumerate(keys) if ledger.get(key) is None]
        sizes = [_population_size(result) for result in raw]
        self._check_differencing(ledger, round_, keys, sizes, new, policy)
        self._spend_budget(ledger, round_, keys, raw, new, policy)
        # Disclosure control sees the whole release at once: the profile's breakdowns and
        # its list size constrain each other (secondary suppression). Noise, when the
        # policy has any, comes first and rounding after (fedpeer.dp).
        released = release_with_noise(raw, policy)
        for key, size, result in zip(keys, sizes, released, strict=True):
            ledger.record(
                key, to_rows([result]), round_.round_id, manual_approval=policy.manual_approval
            )
            if size is not None:
                ledger.record_population(key.definition_hash, round_.as_of, size)

    @staticmethod
    def _check_differencing(
        ledger: Ledger,
        round_: Round,
        keys: list[ReleaseKey],
        sizes: list[int | None],
        new: list[int],
        policy: DisclosurePolicy,
    ) -> None:
        """Refuse a study population a few patients from a released one or a round-mate."""
        # The round's "standard" flag is the coordinator's word: only definitions that are
        # the agent's own standard set are exempt, whatever the flag says.
        exempt = _standard_hashes() if round_.standard else frozenset()
        for i in new:
            key, size = keys[i], sizes[i]
            if size is None or key.definition_hash in exempt:
                continue
            check_population(ledger, key.definition_hash, round_.as_of, size, policy)
            # Populations of the same round would be released together, so neither is in
            # the ledger yet: compare them with each other too.
            for j in new:
                other = sizes[j]
                if other is None or keys[j].definition_hash == key.definition_hash:
                    continue
                if 1 <= population_difference(size, None, other, None) <= policy.threshold:
                    raise ReleaseRefused(REFUSAL)

    def _spend_budget(
        self,
        ledger: Ledger,
        round_: Round,
        keys: list[ReleaseKey],
        raw: list[IndicatorResult],
        new: list[int],
        policy: DisclosurePolicy,
    ) -> None:
        """Spend the privacy budget on the round's new noisy releases, all or none of them."""
        if policy.noise == Noise.NONE or not new:
            return
        limit = load_privacy_budget(self.home)
        if limit is None:
            raise ReleaseRefused(
                "this practice has set no privacy budget, so it makes no noisy releases"
            )
        costs = [(keys[i], cost_rho([raw[i]], policy)) for i in new]
        if ledger.budget_spent() + sum(rho for _, rho in costs) > limit:
            raise ReleaseRefused(
                "this practice's privacy budget would be exceeded by this release; "
                "no further noisy releases can be made"
            )
        for key, rho in costs:
            ledger.spend_budget(round_.round_id, key.definition_hash, round_.as_of, rho, limit)

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
            rows = [row for r in releases for row in r.rows]
            audit.append(
                round_id=round_id,
                definitions=[r.key.definition_hash for r in releases],
                as_of=releases[0].key.as_of.isoformat(),
                policy_digest=releases[0].key.policy_digest,
                release_sha256=release_digest(rows),
                to=coordinator,
                receipt=receipt.submission_id,
            )
        finally:
            ledger.close()


@cache
def _standard_hashes() -> frozenset[str]:
    """Content hashes of the standard set this agent ships with."""
    return frozenset(content_hash(d) for d in load_round_set())
