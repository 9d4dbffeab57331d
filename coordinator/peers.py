"""The practices most alike: a practice profile per practice, and its nearest peers.

From the released profile rows (INDICATORS.md, "Practice profile") each practice gets
five features: the shares aged under 18, 18-24 and 65 and over, the mean deprivation
decile and the log of the list size. Features are standardised across practices (so each
counts equally) and practices are compared by Euclidean distance (STATS.md S18;
``nearest_peers`` also serves ``fedpeer-coordinator stats peers``).

Assumptions, stated where they are made:
- The 15-19 band straddles 18. We assume ages are spread evenly within it, so 3/5 of it
  counts as under 18 and 2/5 as 18-24 (with all of 20-24).
- A suppressed age-sex or deprivation cell (1..7 patients) is left out of both the
  numerator and the denominator of that share: at most 7 patients of thousands.
- The mean decile leaves out ``unknown``.
"""

from __future__ import annotations

import math
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

AGE_SEX_PREFIX = "profile.age_sex."
IMD_PREFIX = "profile.imd."
LIST_SIZE = "profile.list_size"
DEFAULT_PEER_COUNT = 7
SHARE_15_19_UNDER_18 = 3 / 5  # ages 15, 16, 17 of 15..19, assuming an even spread

FEATURES = ("share_under_18", "share_18_24", "share_65_plus", "mean_imd_decile", "log_list_size")
FEATURE_LABELS = {
    "share_under_18": "Aged under 18",
    "share_18_24": "Aged 18-24",
    "share_65_plus": "Aged 65 and over",
    "mean_imd_decile": "Mean deprivation decile (1 = most deprived)",
    "log_list_size": "List size",
}


@dataclass(frozen=True)
class PracticeProfile:
    """The features that decide which practices are alike, for one practice."""

    practice_id: str
    list_size: int | None
    share_under_18: float | None
    share_18_24: float | None
    share_65_plus: float | None
    mean_imd_decile: float | None
    # Released age-sex counts, keyed "female.40-44"; suppressed cells are absent.
    age_sex: Mapping[str, float] = field(default_factory=dict, compare=False)

    @property
    def log_list_size(self) -> float | None:
        """Log of the list size: a practice of 4,000 is as unlike 8,000 as 8,000 is 16,000."""
        return math.log(self.list_size) if self.list_size else None

    def features(self) -> tuple[float | None, ...]:
        """The feature vector, in ``FEATURES`` order."""
        return tuple(getattr(self, name) for name in FEATURES)

    @property
    def complete(self) -> bool:
        """True when every feature is known, so the practice can be matched."""
        return all(v is not None for v in self.features())


@dataclass(frozen=True)
class PeerGroup:
    """A practice's most alike peers, nearest first, with their distances."""

    practice_id: str
    peer_ids: tuple[str, ...]
    distances: tuple[float, ...]

    def label(self, peer_id: str, *, names: Mapping[str, str] | None = None) -> str:
        """How a peer appears in a report: its name if the group agreed, else ``Peer A``."""
        if names is not None:
            return names[peer_id]
        return peer_label(self.peer_ids.index(peer_id))


def peer_label(position: int) -> str:
    """``Peer A``, ``Peer B``, ... ``Peer Z``, ``Peer AA``: anonymous and stable in order."""
    letters = string.ascii_uppercase
    label = ""
    position += 1
    while position:
        position, rest = divmod(position - 1, 26)
        label = letters[rest] + label
    return f"Peer {label}"


def _band_start(band: str) -> int:
    return int(band.rstrip("+").split("-")[0])


def practice_profiles(frame: pd.DataFrame) -> dict[str, PracticeProfile]:
    """Every practice's profile from the released profile rows of a round."""
    rows = frame[frame["indicator"].str.startswith("profile.")]
    counts: dict[str, dict[str, float | None]] = {
        str(pid): {} for pid in frame["practice_id"].drop_duplicates()
    }
    for pid, indicator, count in zip(
        rows["practice_id"], rows["indicator"], rows["count"], strict=True
    ):
        counts[str(pid)][str(indicator)] = None if pd.isna(count) else float(count)
    return {pid: _profile(pid, own) for pid, own in counts.items()}


def _profile(practice_id: str, counts: Mapping[str, float | None]) -> PracticeProfile:
    list_size = counts.get(LIST_SIZE)
    under_18 = age_18_24 = over_65 = known_age = 0.0
    for name, count in counts.items():
        if not name.startswith(AGE_SEX_PREFIX) or count is None:
            continue
        start = _band_start(name.rsplit(".", 1)[1])
        known_age += count
        if start < 15:
            under_18 += count
        elif start == 15:
            under_18 += SHARE_15_19_UNDER_18 * count
            age_18_24 += (1 - SHARE_15_19_UNDER_18) * count
        elif start == 20:
            age_18_24 += count
        elif start >= 65:
            over_65 += count
    decile_sum = decile_count = 0.0
    for name, count in counts.items():
        decile = name.removeprefix(IMD_PREFIX)
        if name.startswith(IMD_PREFIX) and decile.isdigit() and count is not None:
            decile_sum += int(decile) * count
            decile_count += count

    def share(part: float) -> float | None:
        return part / known_age if known_age > 0 else None

    return PracticeProfile(
        practice_id=practice_id,
        list_size=None if list_size is None else int(list_size),
        share_under_18=share(under_18),
        share_18_24=share(age_18_24),
        share_65_plus=share(over_65),
        mean_imd_decile=decile_sum / decile_count if decile_count > 0 else None,
        age_sex={
            name.removeprefix(AGE_SEX_PREFIX): count
            for name, count in counts.items()
            if name.startswith(AGE_SEX_PREFIX) and count is not None
        },
    )


def standardise(matrix: np.ndarray) -> np.ndarray:
    """S18: each column as z-scores with its mean and population SD (ddof 0).

    A feature all practices share tells them apart not at all: it becomes 0.
    """
    matrix = np.asarray(matrix, dtype=float)
    centre = matrix.mean(axis=0)
    spread = matrix.std(axis=0, ddof=0)
    scaled = np.zeros_like(matrix)
    varies = spread > 0
    scaled[:, varies] = (matrix[:, varies] - centre[varies]) / spread[varies]
    return scaled


def nearest_peers(ids: Sequence[str], features: np.ndarray, k: int) -> dict[str, PeerGroup]:
    """S18: each practice's k nearest others by Euclidean distance of standardised features.

    ``features`` has a row per id, every feature known. Peers are ordered by (distance,
    practice id), so ties go to the smaller id and repeated runs agree; k is capped at
    the number of other practices.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, not {k}")
    if len(ids) == 0:
        return {}
    scaled = standardise(features)
    order = np.argsort(np.asarray(ids, dtype=object), kind="stable")
    names = [ids[i] for i in order]
    matrix = scaled[order]
    count = min(k, len(names) - 1)
    groups: dict[str, PeerGroup] = {}
    for i, pid in enumerate(names):
        distances = np.sqrt(((matrix - matrix[i]) ** 2).sum(axis=1))
        distances[i] = np.inf
        # A stable sort on distance over ids in order is the order (distance, id).
        nearest = np.argsort(distances, kind="stable")[:count]
        groups[pid] = PeerGroup(
            pid, tuple(names[j] for j in nearest), tuple(float(distances[j]) for j in nearest)
        )
    return groups


def most_alike(
    profiles: Mapping[str, PracticeProfile], *, k: int = DEFAULT_PEER_COUNT
) -> dict[str, PeerGroup]:
    """The ``k`` most alike peers of every practice with a complete profile."""
    complete = {pid: p for pid, p in profiles.items() if p.complete}
    ids = list(complete)
    features = np.array([complete[pid].features() for pid in ids], dtype=float)
    return nearest_peers(ids, features.reshape(len(ids), len(FEATURES)), k)
