"""The practice's own settings (``<home>/agent.toml``): disclosure only ever stricter, budgets.

::

    [disclosure]            # the practice's own policy: stricter than the network's only
    threshold = 10          # counts 1..10 suppressed (default 7; may only go up)
    rounding = "nearest"    # or "midpoint6" (NHS England's midpoint-6 rounding)
    rounding_base = 10      # a multiple of 5 (default 5)
    min_mean_count = 10     # default 8; may only go up
    group_minimum = 5       # default 5; may only go up
    manual_approval = true  # every release waits for `fedpeer-agent approve ROUND`
    noise = "discrete_gaussian"  # optional differential privacy (fedpeer.dp): none,
    noise_scale = 3.0            #   discrete_gaussian or discrete_laplace, and its scale

    [questions]
    per_month = 20          # questions outside the standard catalogue answered a month

    [privacy]
    budget_rho = 1.0        # total zero-concentrated privacy loss this practice will spend

    [studies]
    mode = "hold"           # hold every study for `fedpeer-agent study approve` (default),
                            #   "accept" studies from the owners below (others are held),
                            #   or "decline" every study
    owners = ["Dr A Analyst, University of Example"]

Every key is optional; a missing file or table means the defaults. A value looser than the
default is an error naming the key, not silently raised. The policy a release is made
under is the network's (pinned at enrolment) tightened by this one
(``fedpeer.policy.strictest``): a stricter agent.toml is applied, never a reason to refuse.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from fedpeer.errors import PolicyError
from fedpeer.policy import DisclosurePolicy, policy_from_table

AGENT_TOML = "agent.toml"
# Each question outside the catalogue can, through a decline, tell the coordinator one
# yes/no; twenty a month is room for a study or two, and a hard cap on what piles up.
DEFAULT_QUESTIONS_PER_MONTH = 20


class StudyMode(StrEnum):
    """What the agent does with a study it has not decided on."""

    HOLD = "hold"  # wait for `fedpeer-agent study approve` or `decline`
    ACCEPT = "accept"  # join studies from the named owners; hold the others
    DECLINE = "decline"  # decline every study


@dataclass(frozen=True)
class StudyRule:
    """The practice's rule for new studies."""

    mode: StudyMode = StudyMode.HOLD
    owners: tuple[str, ...] = ()

    def accepts(self, owner: str) -> bool:
        """True when a study from ``owner`` is joined without asking."""
        return self.mode is StudyMode.ACCEPT and owner in self.owners


@dataclass(frozen=True)
class PracticeSettings:
    """What the practice decides in agent.toml."""

    policy: DisclosurePolicy = field(default_factory=DisclosurePolicy)
    questions_per_month: int = DEFAULT_QUESTIONS_PER_MONTH
    budget_rho: float | None = None  # no noisy releases without one
    studies: StudyRule = field(default_factory=StudyRule)


def _table(data: dict[str, object], name: str, source: str) -> dict[str, object]:
    table = data.get(name, {})
    if not isinstance(table, dict):
        raise PolicyError(f"{source}: [{name}] must be a table")
    return table


def parse_settings(data: dict[str, object], source: str = AGENT_TOML) -> PracticeSettings:
    """The practice's settings from parsed agent.toml; a looser or unknown key is an error."""
    policy = policy_from_table(_table(data, "disclosure", source), source)
    questions = _table(data, "questions", source)
    unknown = sorted(set(questions) - {"per_month"})
    if unknown:
        raise PolicyError(f"{source}: unknown key questions.{unknown[0]}")
    per_month = questions.get("per_month", DEFAULT_QUESTIONS_PER_MONTH)
    if type(per_month) is not int or per_month < 0:
        raise PolicyError(f"{source}: questions.per_month must be a whole number, 0 or more")
    budget = _table(data, "privacy", source).get("budget_rho")
    if budget is not None and (type(budget) not in (int, float) or budget <= 0):
        raise PolicyError(f"{source}: privacy.budget_rho must be a positive number")
    return PracticeSettings(
        policy,
        per_month,
        None if budget is None else float(budget),
        _study_rule(_table(data, "studies", source), source),
    )


def _study_rule(table: dict[str, object], source: str) -> StudyRule:
    unknown = sorted(set(table) - {"mode", "owners"})
    if unknown:
        raise PolicyError(f"{source}: unknown key studies.{unknown[0]}")
    mode = table.get("mode", StudyMode.HOLD.value)
    if mode not in {m.value for m in StudyMode}:
        raise PolicyError(
            f"{source}: studies.mode must be one of {', '.join(m.value for m in StudyMode)}"
        )
    owners = table.get("owners", [])
    if not isinstance(owners, list) or not all(isinstance(o, str) and o for o in owners):
        raise PolicyError(f"{source}: studies.owners must be a list of owner names")
    if owners and mode != StudyMode.ACCEPT:
        raise PolicyError(f'{source}: studies.owners needs mode = "accept"')
    return StudyRule(StudyMode(mode), tuple(owners))


def load_settings(home: Path) -> PracticeSettings:
    """The practice's settings from ``<home>/agent.toml``; the defaults when there is none."""
    path = home / AGENT_TOML
    if not path.exists():
        return PracticeSettings()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"{path}: not valid TOML ({exc})") from None
    return parse_settings(data, str(path))
