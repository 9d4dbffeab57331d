"""Means computed exactly, so that every engine reports the same float."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from fractions import Fraction


def exact_mean(
    histogram: Iterable[tuple[float | int | Decimal | Fraction, int]],
) -> tuple[int, float | None]:
    """Count and mean of values given as (value, how many) pairs, summed in rational arithmetic.

    Floating-point sums depend on the order of addition, which a database does not fix;
    a rational sum rounded once does not, so the reference and SQL engines agree exactly.
    """
    total = Fraction(0)
    count = 0
    for value, n in histogram:
        total += Fraction(value) * n
        count += n
    return count, (float(total / count) if count else None)
