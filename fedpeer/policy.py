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
        return (
            self.threshold >= other.threshold
            and self.granularity >= other.granularity
            and (
                self.rounding != Rounding.NEAREST
                or other.rounding != Rounding.NEAREST
                or self.rounding_base % other.rounding_base == 0
            )
            and self.min_mean_count >= other.min_mean_count
            and self.group_minimum >= other.group_minimum
            and (self.manual_approval or not other.manual_approval)
            and (
                other.noise == Noise.NONE
                or (self.noise == other.noise and self.noise_scale >= other.noise_scale)
            )
        )

    @property
    def granularity(self) -> int:
        """The width of the band of true counts that share one released value."""
        return MIDPOINT6_WIDTH if self.rounding == Rounding.MIDPOINT6 else self.rounding_base

    def digest(self) -> str:
        """A stable hash of the policy, part of every release's key."""
        fields = asdict(self)
        if self.noise == Noise.NONE:  # digests of policies without noise stay as they were
            del fields["noise"], fields["noise_scale"]
        canonical = json.dumps(fields, sort_keys=True, default=str).encode()
        return hashlib.sha256(canonical).hexdigest()
