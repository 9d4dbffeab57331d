"""The practice's own disclosure policy (``<home>/agent.toml``), which may only be stricter.

The ``[disclosure]`` table of agent.toml::

    [disclosure]
    threshold = 10          # counts 1..10 suppressed (default 7; may only go up)
    rounding = "nearest"    # or "midpoint6" (NHS England's midpoint-6 rounding)
    rounding_base = 10      # a multiple of 5 (default 5)
    min_mean_count = 10     # default 8; may only go up
    group_minimum = 5       # default 5; may only go up
    manual_approval = true  # every release waits for `fedpeer-agent approve ROUND`
    noise = "discrete_gaussian"  # optional differential privacy (fedpeer.dp): none,
    noise_scale = 3.0            #   discrete_gaussian or discrete_laplace, and its scale

    [privacy]
    budget_rho = 1.0        # total zero-concentrated privacy loss this practice will spend

Every key is optional; a missing file or table means the defaults. A value looser than the
default is an error naming the key, not silently raised. Other tables belong to other
parts of the agent and are ignored here.

A round's policy is then combined with the practice's by ``effective_policy``: the round
may ask for stricter disclosure control, never for looser than the practice allows.
"""

from __future__ import annotations

import tomllib
from dataclasses import fields, replace
from datetime import date
from pathlib import Path

from fedpeer.dates import is_month_end
from fedpeer.errors import PolicyError
from fedpeer.policy import DisclosurePolicy, Noise, Rounding

AGENT_TOML = "agent.toml"
TABLE = "disclosure"
DEFAULTS = DisclosurePolicy()
_KEYS = {f.name for f in fields(DisclosurePolicy)}
_ENUMS: dict[str, type[Rounding] | type[Noise]] = {"rounding": Rounding, "noise": Noise}
PRIVACY_TABLE = "privacy"


def _looser_keys(asked: DisclosurePolicy, floor: DisclosurePolicy) -> list[str]:
    """The keys in which ``asked`` discloses more than ``floor``; manual approval aside."""
    looser = []
    if asked.threshold < floor.threshold:
        looser.append("threshold")
    if asked.granularity < floor.granularity or (
        asked.rounding == floor.rounding == Rounding.NEAREST
        and asked.rounding_base % floor.rounding_base != 0
    ):
        looser.append("rounding_base" if asked.rounding == floor.rounding else "rounding")
    if asked.min_mean_count < floor.min_mean_count:
        looser.append("min_mean_count")
    if asked.group_minimum < floor.group_minimum:
        looser.append("group_minimum")
    if floor.noise != Noise.NONE and (
        asked.noise != floor.noise or asked.noise_scale < floor.noise_scale
    ):
        looser.append("noise" if asked.noise != floor.noise else "noise_scale")
    return looser


def parse_practice_policy(data: dict[str, object], source: str = AGENT_TOML) -> DisclosurePolicy:
    """The practice policy from the parsed agent.toml; a looser or unknown key is an error."""
    table = data.get(TABLE, {})
    if not isinstance(table, dict):
        raise PolicyError(f"{source}: [{TABLE}] must be a table")
    unknown = sorted(set(table) - _KEYS)
    if unknown:
        raise PolicyError(f"{source}: unknown key {TABLE}.{unknown[0]}")
    expected = {name: type(getattr(DEFAULTS, name)) for name in _KEYS}
    values: dict[str, object] = {}
    for key, value in table.items():
        if key in _ENUMS:
            enum = _ENUMS[key]
            if value not in {e.value for e in enum}:
                choices = " or ".join(e.value for e in enum)
                raise PolicyError(f"{source}: {TABLE}.{key} must be {choices}")
            values[key] = enum(value)
        elif key == "noise_scale" and type(value) in (int, float):
            values[key] = float(value)  # type: ignore[arg-type]
        elif type(value) is not expected[key] or (expected[key] is int and isinstance(value, bool)):
            raise PolicyError(f"{source}: {TABLE}.{key} must be {expected[key].__name__}")
        else:
            values[key] = value
    try:
        policy = DisclosurePolicy(**values)  # type: ignore[arg-type]
    except PolicyError as exc:
        raise PolicyError(f"{source}: {exc}") from None
    looser = _looser_keys(policy, DEFAULTS)
    if looser:
        raise PolicyError(
            f"{source}: {TABLE}.{looser[0]} is looser than the default; "
            "a practice may only make disclosure control stricter"
        )
    return policy


def load_practice_policy(home: Path) -> DisclosurePolicy:
    """The practice policy from ``<home>/agent.toml``; the defaults when there is none."""
    path = home / AGENT_TOML
    if not path.exists():
        return DEFAULTS
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"{path}: not valid TOML ({exc})") from None
    return parse_practice_policy(data, str(path))


def load_privacy_budget(home: Path) -> float | None:
    """The practice's total privacy budget (zCDP rho) from ``[privacy] budget_rho``, if set."""
    path = home / AGENT_TOML
    if not path.exists():
        return None
    table = tomllib.loads(path.read_text(encoding="utf-8")).get(PRIVACY_TABLE, {})
    budget = table.get("budget_rho") if isinstance(table, dict) else None
    if budget is None:
        return None
    if type(budget) not in (int, float) or budget <= 0:
        raise PolicyError(f"{path}: {PRIVACY_TABLE}.budget_rho must be a positive number")
    return float(budget)


def effective_policy(
    round_policy: DisclosurePolicy, practice_policy: DisclosurePolicy
) -> DisclosurePolicy:
    """The policy to release under: the round's, refused where looser than the practice's.

    A round may be stricter than the practice in any respect and its numbers then apply
    (the coordinator checks the submission against them). Where it asks for less than the
    practice requires, the agent refuses: the message, naming the keys and no data, is
    what the agent reports to the coordinator. Manual approval is the practice's own
    process, so the stricter of the two applies without a refusal.
    """
    looser = _looser_keys(round_policy, practice_policy)
    if looser:
        raise PolicyError(
            "this practice's disclosure policy is stricter than the round asks in "
            + ", ".join(looser)
            + "; the practice will not release under a looser policy"
        )
    return replace(
        round_policy,
        manual_approval=round_policy.manual_approval or practice_policy.manual_approval,
    )


def check_reference_date(as_of: date, *, standard: bool, today: date | None = None) -> None:
    """Refuse a standard round whose reference date is not a month end, or any future date."""
    if standard and not is_month_end(as_of):
        raise PolicyError(
            "the reference date of a standard round must be a month end; "
            f"{as_of.isoformat()} is not"
        )
    if today is not None and as_of > today:
        raise PolicyError(f"the reference date {as_of.isoformat()} is in the future")
