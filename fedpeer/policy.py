"""The disclosure policy: the numbers that decide what may leave a practice.

Defaults follow ../shared/DESIGN.md (OpenSAFELY's and NHS England's published rules).

Whose policy applies: the network's, pinned by each agent at enrolment, made stricter
only by the practice's own ``agent.toml`` (``strictest``). A round cannot set or vary
it: a per-question policy would let a coordinator binary-search a count by asking it
under one threshold after another. What "stricter" means is ``looser_keys``, once.
The rules that apply a policy live in ``fedpeer.disclosure``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from enum import StrEnum
from typing import Any

from fedpeer.errors import PolicyError

DEFAULT_THRESHOLD = 7  # counts 1..7 are suppressed
DEFAULT_ROUNDING_BASE = 5  # other counts rounded to the nearest 5
DEFAULT_MIN_MEAN_COUNT = 8  # a mean needs a count of at least 8
DEFAULT_GROUP_MINIMUM = 5  # a comparison group needs at least 5 practices


class Rounding(StrEnum):
    """How released counts are rounded."""

    NEAREST = "nearest"  # to the nearest multiple of the base, halves up
    # NHS England's midpoint-6 rounding (as in OpenSAFELY's roundmid_any(x, 6)): 0 stays 0,
    # any other count n becomes the midpoint of its band of six, 6*ceil(n/6) - 3, so 1..6
    # -> 3, 7..12 -> 9, 13..18 -> 15. The band width is always 6 (rounding_base is not
    # used). Applied after suppression of 1..threshold; see fedpeer.disclosure.
    MIDPOINT6 = "midpoint6"


MIDPOINT6_WIDTH = 6


class Noise(StrEnum):
    """Optional differential privacy: noise added to every count before rounding."""

    NONE = "none"
    DISCRETE_GAUSSIAN = "discrete_gaussian"  # zero-concentrated DP; see fedpeer.dp
    DISCRETE_LAPLACE = "discrete_laplace"  # pure epsilon-DP


@dataclass(frozen=True)
class DisclosurePolicy:
    """The parameters of disclosure control for one release."""

    threshold: int = DEFAULT_THRESHOLD
    rounding_base: int = DEFAULT_ROUNDING_BASE
    rounding: Rounding = Rounding.NEAREST
    min_mean_count: int = DEFAULT_MIN_MEAN_COUNT
    group_minimum: int = DEFAULT_GROUP_MINIMUM
    manual_approval: bool = False
    noise: Noise = Noise.NONE
    noise_scale: float = 0.0  # of the discrete Gaussian or Laplace; larger is stricter

    def __post_init__(self) -> None:
        if (self.noise == Noise.NONE) != (self.noise_scale == 0):
            raise PolicyError("noise_scale must be positive with noise, and 0 without")
        if self.noise_scale < 0:
            raise PolicyError(f"noise_scale must not be negative, not {self.noise_scale}")
        if self.threshold < DEFAULT_THRESHOLD:
            raise PolicyError(
                f"threshold {self.threshold} is below the floor of {DEFAULT_THRESHOLD}"
            )
        if self.rounding_base < 1:
            raise PolicyError(f"rounding_base must be at least 1, not {self.rounding_base}")
        if self.min_mean_count < 1:
            raise PolicyError(f"min_mean_count must be at least 1, not {self.min_mean_count}")
        if self.group_minimum < 1:
            raise PolicyError(f"group_minimum must be at least 1, not {self.group_minimum}")

    def at_least_as_strict_as(self, other: DisclosurePolicy) -> bool:
        """True when releasing under this policy discloses no more than under ``other``."""
        return not looser_keys(self, other)

    @property
    def granularity(self) -> int:
        """The width of the band of true counts that share one released value."""
        return MIDPOINT6_WIDTH if self.rounding == Rounding.MIDPOINT6 else self.rounding_base

    def to_data(self) -> dict[str, Any]:
        """The policy as plain data, as it travels inside documents."""
        # Field by field (the policy is flat): ``asdict``'s deep copy costs more, for every
        # answer of every release whose canonical bytes are made.
        data = {name: getattr(self, name) for name in self.__dataclass_fields__}
        data["rounding"], data["noise"] = self.rounding.value, self.noise.value
        return data

    @classmethod
    def from_data(cls, data: Any) -> DisclosurePolicy:
        """A policy from ``to_data``'s form; PolicyError when it is not one."""
        if not isinstance(data, dict) or set(data) != {f for f in cls.__dataclass_fields__}:
            raise PolicyError("not a disclosure policy")
        try:
            return cls(
                **{**data, "rounding": Rounding(data["rounding"]), "noise": Noise(data["noise"])}
            )
        except (TypeError, ValueError) as exc:
            raise PolicyError("not a disclosure policy") from exc


def looser_keys(asked: DisclosurePolicy, floor: DisclosurePolicy) -> list[str]:
    """The settings in which ``asked`` discloses more than ``floor`` (empty: at least as strict)."""
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
    if floor.manual_approval and not asked.manual_approval:
        looser.append("manual_approval")
    if floor.noise != Noise.NONE and (
        asked.noise != floor.noise or asked.noise_scale < floor.noise_scale
    ):
        looser.append("noise" if asked.noise != floor.noise else "noise_scale")
    return looser


def strictest(network: DisclosurePolicy, practice: DisclosurePolicy) -> DisclosurePolicy:
    """The policy to release under: the network's, tightened wherever the practice's is stricter."""
    if not looser_keys(practice, network):
        return practice
    if not looser_keys(network, practice):
        return network
    rounding = {"rounding": network.rounding, "rounding_base": network.rounding_base}
    if {"rounding", "rounding_base"} & set(looser_keys(network, practice)):
        rounding = {"rounding": practice.rounding, "rounding_base": practice.rounding_base}
        if practice.rounding == network.rounding == Rounding.NEAREST:
            # Neither base divides the other: their common multiple is as strict as both.
            base = math.lcm(practice.rounding_base, network.rounding_base)
            rounding["rounding_base"] = base
    noise = {"noise": network.noise, "noise_scale": network.noise_scale}
    if network.noise == Noise.NONE or (
        practice.noise == network.noise and practice.noise_scale > network.noise_scale
    ):
        noise = {"noise": practice.noise, "noise_scale": practice.noise_scale}
    elif practice.noise not in (Noise.NONE, network.noise):
        raise PolicyError(
            f"the practice asks for {practice.noise} noise and the network for {network.noise}; "
            "a practice may make the network's noise larger, not of another kind"
        )
    return replace(
        network,
        threshold=max(network.threshold, practice.threshold),
        min_mean_count=max(network.min_mean_count, practice.min_mean_count),
        group_minimum=max(network.group_minimum, practice.group_minimum),
        manual_approval=network.manual_approval or practice.manual_approval,
        **rounding,  # type: ignore[arg-type]
        **noise,  # type: ignore[arg-type]
    )


_ENUMS: dict[str, type[Rounding] | type[Noise]] = {"rounding": Rounding, "noise": Noise}


def policy_from_table(
    table: object, source: str, floor: DisclosurePolicy | None = None
) -> DisclosurePolicy:
    """A policy from a parsed ``[disclosure]`` TOML table, refused where looser than ``floor``.

    Every key is optional (a missing one keeps the default); an unknown key, a value of the
    wrong type, or a value looser than the floor (the defaults when None) is an error naming
    the file and the key.
    """
    if not isinstance(table, dict):
        raise PolicyError(f"{source}: [disclosure] must be a table")
    names = {f.name: type(getattr(DisclosurePolicy(), f.name)) for f in fields(DisclosurePolicy)}
    unknown = sorted(set(table) - set(names))
    if unknown:
        raise PolicyError(f"{source}: unknown key disclosure.{unknown[0]}")
    values: dict[str, object] = {}
    for key, value in table.items():
        if key in _ENUMS:
            enum = _ENUMS[key]
            if value not in {e.value for e in enum}:
                choices = " or ".join(e.value for e in enum)
                raise PolicyError(f"{source}: disclosure.{key} must be {choices}")
            values[key] = enum(value)
        elif key == "noise_scale" and type(value) in (int, float):
            values[key] = float(value)
        elif type(value) is not names[key]:
            raise PolicyError(f"{source}: disclosure.{key} must be {names[key].__name__}")
        else:
            values[key] = value
    try:
        policy = DisclosurePolicy(**values)  # type: ignore[arg-type]
    except PolicyError as exc:
        raise PolicyError(f"{source}: {exc}") from None
    looser = looser_keys(policy, floor or DisclosurePolicy())
    if looser:
        raise PolicyError(
            f"{source}: disclosure.{looser[0]} is looser than the default; "
            "a policy may only make disclosure control stricter"
        )
    return policy
