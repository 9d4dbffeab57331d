"""The statistics fedpeer publishes, as pure functions over numpy arrays (STATS.md).

One implementation serves the round's comparison (``coordinator.comparisons``) and the
analysts' offline interface (``fedpeer-coordinator stats``): ``distributions`` (exact
CDFs and quantiles), ``intervals`` (a practice's 95% interval, indirect
standardisation), ``ranks`` (percentiles, deciles, Benjamini-Hochberg) and ``funnel``
(pooled target, exact and overdispersion-adjusted limits, z, p and flags). The S-numbers
in docstrings are the conventions of /work/shared/STATS.md.
"""

from __future__ import annotations

from enum import StrEnum

# S4: exact normal quantiles of 0.975 and 0.999, not 1.96 and 3.09.
Z95 = 1.959963984540054
Z998 = 3.090232306167813


class Distribution(StrEnum):
    """The chance model behind a funnel."""

    BINOMIAL = "binomial"  # proportions: numerator of denominator
    POISSON = "poisson"  # rates: events among a population


class Flag(StrEnum):
    """Where a value lies against one pair of limits (S13)."""

    HIGHER = "higher"
    LOWER = "lower"
    WITHIN = "within"
