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

``SETTINGS`` lists every key with its default and meaning, next to the parser that reads
them: ``agent_toml_template()`` (what ``fedpeer-agent init`` writes) and
``settings_reference()`` (the table in docs/agent.md) are made from it, so neither can
drift from what is parsed.
"""

from __future__ import annotations

import json
import textwrap
import tomllib
from dataclasses import dataclass, field, fields
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


@dataclass(frozen=True)
class Setting:
    """One key of agent.toml: its table, its default (None: not set) and what it means."""

    table: str
    key: str
    default: object | None
    meaning: str
    example: object | None = None  # shown, commented out, for a key with no default

    @property
    def name(self) -> str:
        """``table.key``, as error messages name it."""
        return f"{self.table}.{self.key}"


_POLICY = DisclosurePolicy().to_data()
_DISCLOSURE_MEANINGS = {
    "threshold": "Counts from 1 up to this number are never released (suppressed); may only go up.",
    "rounding": 'How other counts are rounded: "nearest" (to a multiple of rounding_base) '
    'or "midpoint6" (NHS England\'s midpoint-6 rounding).',
    "rounding_base": 'With "nearest", counts are rounded to a multiple of this; '
    "it must be a multiple of 5 (10, 15, 20...).",
    "min_mean_count": "A mean is released only over at least this many patients (or "
    "appointments...); may only go up.",
    "group_minimum": "A comparison group needs at least this many practices; may only go up.",
    "manual_approval": "true: nothing leaves until someone runs `fedpeer-agent approve ROUND`.",
    "noise": 'Optional differential privacy on every count: "none", "discrete_gaussian" '
    'or "discrete_laplace"; needs [privacy] budget_rho.',
    "noise_scale": "The scale of that noise: 0 without noise, positive with it "
    "(larger is stricter).",
}
# Every key of [disclosure] is a field of the policy: explain each one.
assert set(_DISCLOSURE_MEANINGS) == {f.name for f in fields(DisclosurePolicy)}
# Every key agent.toml accepts, in the order the template and docs/agent.md show them.
SETTINGS: tuple[Setting, ...] = (
    *(
        Setting("disclosure", key, _POLICY[key], meaning)
        for key, meaning in _DISCLOSURE_MEANINGS.items()
    ),
    Setting(
        "questions",
        "per_month",
        DEFAULT_QUESTIONS_PER_MONTH,
        "Questions outside the standard catalogue answered a month (0: none).",
    ),
    Setting(
        "privacy",
        "budget_rho",
        None,
        "The total privacy loss (zero-concentrated DP) this practice will spend on noisy "
        "releases; not set by default, and then no noisy release is made.",
        example=1.0,
    ),
    Setting(
        "studies",
        "mode",
        StudyMode.HOLD.value,
        'A new study: "hold" it for `fedpeer-agent study approve`, "accept" it from '
        'the owners below (others are held), or "decline" it.',
    ),
    Setting(
        "studies",
        "owners",
        [],
        'With mode = "accept": the owners whose studies are joined without asking, '
        "as the study names them.",
    ),
)
TABLES = tuple(dict.fromkeys(s.table for s in SETTINGS))


def _keys(table: str) -> set[str]:
    return {s.key for s in SETTINGS if s.table == table}


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string, for the plain strings used here
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML form for {value!r}")  # pragma: no cover


_TEMPLATE_HEAD = """\
# agent.toml: this practice's own settings for its fedpeer agent.
#
# Every setting is optional: a line left commented out keeps the default it shows.
# Disclosure settings may only make disclosure control stricter than the network's,
# never looser; a looser or unknown value is an error naming the key. To change a
# setting, remove the "# " in front of it and edit the value, then check the file with
#   fedpeer-agent doctor --home <this folder>
# The settings are explained in docs/agent.md.
"""


def agent_toml_template() -> str:
    """The commented agent.toml ``fedpeer-agent init`` writes: every key at its default."""
    parts = [_TEMPLATE_HEAD]
    for table in TABLES:
        parts.append(f"\n[{table}]\n")
        for s in SETTINGS:
            if s.table != table:
                continue
            parts.extend(f"# {line}\n" for line in textwrap.wrap(s.meaning, 86))
            if s.default is None:
                example = _toml_value(s.example)
                parts.append(f"# {s.key} = {example}  # an example: there is no default\n")
            else:
                parts.append(f"# {s.key} = {_toml_value(s.default)}\n")
    return "".join(parts)


def settings_reference() -> str:
    """The Markdown table of every agent.toml key, its default and meaning (docs/agent.md)."""
    lines = ["| key | default | meaning |", "|---|---|---|"]
    for s in SETTINGS:
        default = "not set" if s.default is None else f"`{_toml_value(s.default)}`"
        lines.append(f"| `{s.name}` | {default} | {s.meaning} |")
    return "\n".join(lines) + "\n"


def _table(data: dict[str, object], name: str, source: str) -> dict[str, object]:
    table = data.get(name, {})
    if not isinstance(table, dict):
        raise PolicyError(f"{source}: [{name}] must be a table")
    return table


def parse_settings(data: dict[str, object], source: str = AGENT_TOML) -> PracticeSettings:
    """The practice's settings from parsed agent.toml; a looser or unknown key is an error."""
    policy = policy_from_table(_table(data, "disclosure", source), source)
    questions = _table(data, "questions", source)
    unknown = sorted(set(questions) - _keys("questions"))
    if unknown:
        raise PolicyError(f"{source}: unknown key questions.{unknown[0]}")
    per_month = questions.get("per_month", DEFAULT_QUESTIONS_PER_MONTH)
    if type(per_month) is not int or per_month < 0:
        raise PolicyError(f"{source}: questions.per_month must be a whole number, 0 or more")
    privacy = _table(data, "privacy", source)
    unknown = sorted(set(privacy) - _keys("privacy"))
    if unknown:
        raise PolicyError(f"{source}: unknown key privacy.{unknown[0]}")
    budget = privacy.get("budget_rho")
    if budget is not None and (type(budget) not in (int, float) or budget <= 0):
        raise PolicyError(f"{source}: privacy.budget_rho must be a positive number")
    return PracticeSettings(
        policy,
        per_month,
        None if budget is None else float(budget),
        _study_rule(_table(data, "studies", source), source),
    )


def _study_rule(table: dict[str, object], source: str) -> StudyRule:
    unknown = sorted(set(table) - _keys("studies"))
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
