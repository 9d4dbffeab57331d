"""Where a practice stands among practices (S14) and q-values across a round (S15)."""

from __future__ import annotations

import math

import numpy as np


def mid_rank_percentiles(values: np.ndarray) -> np.ndarray:
    """100 x (number below + number equal / 2) / N, each value counting itself (S14)."""
    v = np.asarray(values, dtype=float)
    ordered = np.sort(v)
    below = np.searchsorted(ordered, v, side="left")
    equal = np.searchsorted(ordered, v, side="right") - below
    return 100.0 * (below + equal / 2) / len(v)


def deciles(percentiles: np.ndarray) -> np.ndarray:
    """min(floor(percentile / 10) + 1, 10), from the unrounded percentile (S14)."""
    return np.minimum(np.floor(np.asarray(percentiles, dtype=float) / 10) + 1, 10).astype(int)


def shown_percentile(percentile: float) -> int:
    """A percentile as published: rounded half up to a whole number, kept within 1..99."""
    return min(99, max(1, math.floor(percentile + 0.5)))


def benjamini_hochberg(p_values: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg q-values: min over j >= i of m p_(j) / j, at most 1 (S15)."""
    p = np.asarray(p_values, dtype=float)
    m = len(p)
    if m == 0:
        return p.copy()
    order = np.argsort(p, kind="stable")
    scaled = p[order] * m / np.arange(1, m + 1)
    q_sorted = np.minimum(np.minimum.accumulate(scaled[::-1])[::-1], 1.0)
    q = np.empty(m)
    q[order] = q_sorted
    return q
