"""The disclosure policy: the numbers that decide what may leave a practice.

Defaults follow ../shared/DESIGN.md (OpenSAFELY's and NHS England's published rules).
A practice may only make a policy stricter; see ``DisclosurePolicy.at_least_as_strict_as``.
The rules that apply a policy live in ``fedpeer.disclosure``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from enum import StrEnum

from fedpeer.errors import PolicyError

DEFAULT_THRESHOLD = 7  # counts 1..7 are suppressed
DEFAULT_ROUNDING_BASE = 5  # other counts rounded to the nearest 5
DEFAULT_MIN_MEAN_COUNT = 8  # a mean needs a count of at least 8
DEFAULT_GROUP_MINIMUM = 5  # a comparison group needs at least 5 practices


class Rounding(StrEnum):
    """How released counts are rounded."""

    NEAREST = "nearest"  # to the nearest multiple of the base, halves up
    MIDPOINT6 = "midpoint6"  # NHS England's midpoint-6 rounding; defined in fedpeer.disclosure


@dataclass(frozen=True)
class DisclosurePolicy:
    """The parameters of disclosure control for one release."""

    threshold: int = DEFAULT_THRESHOLD
    rounding_base: int = DEFAULT_ROUNDING_BASE
    rounding: Rounding = Rounding.NEAREST
    min_mean_count: int = DEFAULT_MIN_MEAN_COUNT
    group_minimum: int = DEFAULT_GROUP_MINIMUM
    manual_approval: bool = False

    def __post_init__(self) -> None:
        if self.threshold < DEFAULT_THRESHOLD:
            raise PolicyError(f"threshold {self.threshold} is below the floor of {DEFAULT_THRESHOLD}")
        if self.rounding_base < 1:
            raise PolicyError(f"rounding_base must be at least 1, not {self.rounding_base}")
        if self.min_mean_count < 1:
            raise PolicyError(f"min_mean_count must be at least 1, not {self.min_mean_count}")
        if self.group_minimum < 1:
            raise PolicyError(f"group_minimum must be at least 1, not {self.group_minimum}")

    def at_least_as_strict_as(self, other: DisclosurePolicy) -> bool:
        """True when releasing under this policy discloses no more than under ``other``."""
        return (
            self.threshold >= other.threshold
            and self.rounding_base >= other.rounding_base
            and self.rounding_base % other.rounding_base == 0
            and self.min_mean_count >= other.min_mean_count
            and self.group_minimum >= other.group_minimum
            and (self.manual_approval or not other.manual_approval)
            and (self.rounding == other.rounding or self.rounding == Rounding.MIDPOINT6)
        )

    def digest(self) -> str:
        """A stable hash of the policy, part of every release's key."""
        canonical = json.dumps(asdict(self), sort_keys=True, default=str).encode()
        return hashlib.sha256(canonical).hexdigest()
