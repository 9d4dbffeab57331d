"""The agent-side machinery in the order the pipeline must use it, over a toy practice.

For each definition of a round: the reference date check, the effective policy (round
against practice), the ledger (a recorded answer is returned as it is), the differencing
check for study definitions, the privacy budget when the policy adds noise, disclosure
control (noise first), then the ledger records the release and the population. Only the
released rows ever leave; the toy engine stands in for the real one (the attacks are
about what leaves, not about computing it).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from agent.differencing import check_population
from agent.ledger import Ledger, ReleaseKey
from agent.policy_file import (
    check_reference_date,
    effective_policy,
    load_practice_policy,
    load_privacy_budget,
)
from fedpeer.canonical import canonical_release_bytes
from fedpeer.dp import cost_rho, release_with_noise
from fedpeer.measures import Breakdown, Count, IndicatorResult, Proportion
from fedpeer.policy import DisclosurePolicy
from fedpeer.release import to_rows


@dataclass(frozen=True)
class Patient:
    """One toy patient: never leaves the practice."""

    pid: str
    age: int
    sex: str
    flag: bool  # the sensitive fact a numerator counts


@dataclass(frozen=True)
class Question:
    """A declarative definition: who is in the population, and the numerator is ``flag``."""

    name: str
    min_age: int = 0
    max_age: int = 200
    sex: str | None = None
    kind: str = "proportion"  # or "age_sex" (a profile breakdown) or "list_size"

    def content_hash(self) -> str:
        return hashlib.sha256(json.dumps(self.__dict__, sort_keys=True).encode()).hexdigest()

    def population(self, patients: list[Patient]) -> list[Patient]:
        return [
            p
            for p in patients
            if self.min_age <= p.age <= self.max_age and (self.sex is None or p.sex == self.sex)
        ]

    def evaluate(self, patients: list[Patient]) -> IndicatorResult:
        pop = self.population(patients)
        if self.kind == "list_size":
            return IndicatorResult("profile.list_size", Count(len(pop)))
        if self.kind == "age_sex":
            bands = [(s, lo) for s in ("female", "male") for lo in range(0, 100, 20)]
            cells = tuple(
                (f"{s}.{lo}-{lo + 19}", sum(p.sex == s and lo <= p.age < lo + 20 for p in pop))
                for s, lo in bands
            )
            return IndicatorResult("profile.age_sex", Breakdown(cells, len(pop)))
        return IndicatorResult(self.name, Proportion(sum(p.flag for p in pop), len(pop)))


@dataclass
class Practice:
    """A practice's agent: its home, its patients, and what it answers."""

    home: Path
    patients: list[Patient]
    ledger: Ledger = field(init=False)

    def __post_init__(self) -> None:
        self.ledger = Ledger.at_home(self.home)

    def answer(
        self,
        round_id: str,
        questions: list[Question],
        as_of: date,
        round_policy: DisclosurePolicy | None = None,
        *,
        standard: bool = True,
    ) -> bytes:
        """What leaves for a round: the canonical bytes of every released row."""
        check_reference_date(as_of, standard=standard)
        policy = effective_policy(
            round_policy or DisclosurePolicy(), load_practice_policy(self.home)
        )
        rows = []
        for q in questions:
            key = ReleaseKey(q.content_hash(), as_of, policy.digest())
            recorded = self.ledger.get(key)
            if recorded is None:
                pop = q.population(self.patients)
                if not standard:
                    check_population(
                        self.ledger,
                        key.definition_hash,
                        as_of,
                        len(pop),
                        policy,
                        [p.pid for p in pop],
                    )
                raw = [q.evaluate(self.patients)]
                rho = cost_rho(raw, policy)
                if rho:
                    budget = load_privacy_budget(self.home) or 0.0
                    self.ledger.spend_budget(round_id, key.definition_hash, as_of, rho, budget)
                released = to_rows(release_with_noise(raw, policy))
                recorded = self.ledger.record(
                    key, released, round_id, manual_approval=policy.manual_approval
                )
                self.ledger.record_population(
                    key.definition_hash, as_of, len(pop), [p.pid for p in pop]
                )
            rows.extend(recorded.rows)
        return canonical_release_bytes(rows)


def town(n: int = 400) -> list[Patient]:
    """A deterministic toy list: ages 0..99, alternating sex, a flag on every seventh patient."""
    return [Patient(f"p{i}", i % 100, "female" if i % 2 else "male", i % 7 == 0) for i in range(n)]
