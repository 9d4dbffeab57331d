"""An independent judge of recoverability: exact linear algebra over the attacker's equations.

The attacker knows every released value exactly (worse than the truth, where they are
rounded), knows each equation's anchor (a breakdown's total, a stratified indicator's whole
practice value) when it is released, and knows an unlisted remainder unless it is small.
A sensitive quantity (a linear form over the true counts) is recoverable when it lies in
the row space of the equations restricted to the unknowns.
"""

from __future__ import annotations

from fractions import Fraction

Form = dict[str, int]


def _rank(rows: list[list[Fraction]]) -> int:
    rows = [r[:] for r in rows]
    rank, cols = 0, len(rows[0]) if rows else 0
    for c in range(cols):
        pivot = next((i for i in range(rank, len(rows)) if rows[i][c] != 0), None)
        if pivot is None:
            continue
        rows[rank], rows[pivot] = rows[pivot], rows[rank]
        for i in range(len(rows)):
            if i != rank and rows[i][c] != 0:
                f = rows[i][c] / rows[rank][c]
                rows[i] = [a - f * b for a, b in zip(rows[i], rows[rank], strict=True)]
        rank += 1
    return rank


def recoverable(equations: list[Form], unknown: set[str], form: Form) -> bool:
    """True when ``form`` is fixed by ``equations`` given every variable not in ``unknown``."""
    names = sorted(unknown)
    if not any(form.get(n, 0) for n in names):
        return True  # the form involves only known values
    a = [[Fraction(eq.get(n, 0)) for n in names] for eq in equations]
    a = [r for r in a if any(r)]
    w = [Fraction(form.get(n, 0)) for n in names]
    if not a:
        return False
    return _rank([*a, w]) == _rank(a)
