"""What may leave the practice: the disclosure-control rules, in one place.

``release`` turns raw results into released ones; ``check_release`` is the coordinator's
check of released rows. Both read the numbers from a ``DisclosurePolicy``.

The rules (DESIGN.md, "Disclosure control, the default policy"):

1. **Small counts.** A count of 1..threshold is suppressed (``None``); 0 stays 0; any
   other count is rounded (to the nearest ``rounding_base``, halves up, or NHS England's
   midpoint-6). Every value derived from counts (a proportion, a rate, a breakdown total)
   is computed from the released counts, never from the true ones.
2. **Proportions.** The numerator is also suppressed when the complement
   (denominator - numerator) is 1..threshold, in truth or in the released counts (the
   second so that the coordinator can check the rule on what it receives), and when the
   denominator is suppressed. A numerator of 0 over a tiny denominator is covered: its
   complement is the denominator. A rate's numerator follows the released-complement
   rule too, because its row looks like a proportion's to the coordinator.
3. **Means.** Released only when the true count is at least ``min_mean_count`` (else the
   count and the mean are both suppressed), rounded to ``MEAN_SIGNIFICANT_FIGURES``:
   enough to compare practices, and an exact mean times a count would otherwise give
   back an exact sum that rounding the count was meant to hide.
4. **Secondary suppression.** A breakdown (cells summing to a total, possibly with an
   unlisted remainder such as patients of unknown sex) and the strata of one indicator
   (summing to the whole-practice value) are linear equations. The total is assumed known
   (``profile.list_size`` is released beside ``profile.age_sex``). In each equation the
   number of withheld terms the coordinator can see must be 0 or at least 2, and a small
   unlisted remainder counts as a withheld term that needs a withheld partner; otherwise
   the next-smallest released cell is suppressed too (smallest true count, non-zero
   first, then the given order), until the equation holds. A released breakdown's total
   is the sum of its released cells, and withheld when any cell is.

``check_release`` checks each rule that can be seen in released rows, and also that every
``value`` is computed from the released counts (a value from the true counts would leak
them).

Limits: equations across different indicators (for example a proportion's denominator
equal to a sum of profile cells) are not modelled; rounding is what protects them. A
breakdown of a single cell, or a lone stratum sent without its whole, equals its total
less the remainder and cannot be protected by a partner cell; the whole is withheld when
it is in the same release, otherwise only the total's own suppression protects it.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from fedpeer.measures import Breakdown, Count, IndicatorResult, Mean, Measure, Proportion, Rate
from fedpeer.policy import MIDPOINT6_WIDTH, DisclosurePolicy, Rounding
from fedpeer.release import PROFILE_PREFIX, TOTAL_CATEGORY, ResultRow

MEAN_SIGNIFICANT_FIGURES = 3  # a UPC index of 0.734, a consultation of 11.3 minutes
RATIO_SCALES = (1, 1000)  # a proportion's value, a rate's per 1,000
VALUE_TOLERANCE = 1e-6  # values travel rounded to 6 decimal places


def is_small(n: int | None, policy: DisclosurePolicy) -> bool:
    """True for a count that must not be released: 1..threshold."""
    return n is not None and 1 <= n <= policy.threshold


def round_count(n: int, policy: DisclosurePolicy) -> int | None:
    """A true count as released: suppressed when small, else rounded; 0 stays 0."""
    if n < 0:
        raise ValueError("a count cannot be negative")
    if n == 0:
        return 0
    if is_small(n, policy):
        return None
    if policy.rounding == Rounding.MIDPOINT6:
        rounded = MIDPOINT6_WIDTH * math.ceil(n / MIDPOINT6_WIDTH) - MIDPOINT6_WIDTH // 2
    else:
        rounded = policy.rounding_base * ((n + policy.rounding_base // 2) // policy.rounding_base)
    # With a raised threshold, rounding can bring a count down into 1..threshold (11 -> 10
    # under a threshold of 10): such a value is suppressed too, so none is ever released.
    return None if is_small(rounded, policy) else rounded


def on_grid(n: int, policy: DisclosurePolicy) -> bool:
    """True when ``n`` is a value the rounding can produce."""
    if n == 0:
        return True
    if policy.rounding == Rounding.MIDPOINT6:
        return n % MIDPOINT6_WIDTH == MIDPOINT6_WIDTH // 2
    return n % policy.rounding_base == 0


def round_mean(mean: float) -> float:
    """A mean as released, to ``MEAN_SIGNIFICANT_FIGURES`` significant figures."""
    return float(f"{mean:.{MEAN_SIGNIFICANT_FIGURES}g}")


# -- primary suppression: one measure on its own ---------------------------------------


def _proportion_numerator(n: int, d: int, policy: DisclosurePolicy) -> int | None:
    n_out, d_out = round_count(n, policy), round_count(d, policy)
    if n_out is None or d_out is None or is_small(d - n, policy):
        return None
    if is_small(d_out - n_out, policy):
        return None
    return n_out


def _primary(m: Measure, policy: DisclosurePolicy) -> Measure:
    if isinstance(m, Count):
        return Count(round_count(_present(m.value), policy))
    if isinstance(m, Proportion):
        n, d = _present(m.numerator), _present(m.denominator)
        return Proportion(_proportion_numerator(n, d, policy), round_count(d, policy))
    if isinstance(m, Rate):
        # The coordinator cannot tell a rate's row from a proportion's, so the released
        # complement rule applies here too; the true complement means nothing for a rate.
        d_out = round_count(_present(m.denominator), policy)
        n_out = None if d_out is None else round_count(_present(m.numerator), policy)
        if n_out is not None and d_out is not None and is_small(d_out - n_out, policy):
            n_out = None
        return Rate(n_out, d_out, m.per)
    if isinstance(m, Mean):
        c = _present(m.count)
        c_out = round_count(c, policy)
        if c < policy.min_mean_count or c_out is None or m.mean is None:
            return Mean(0 if c == 0 else None, None)
        return Mean(c_out, round_mean(m.mean))
    if isinstance(m, Breakdown):
        cells = tuple((cat, round_count(_present(c), policy)) for cat, c in m.cells)
        return Breakdown(cells, None)
    raise TypeError(f"unknown measure {type(m).__name__}")  # pragma: no cover - closed union


def _present(n: int | None) -> int:
    if n is None:
        raise ValueError("a raw measure must have every count; this one is already released")
    return n


# -- secondary suppression: the equations ----------------------------------------------


@dataclass
class _Term:
    """One count in an equation: its true value and whether it is released."""

    raw: int
    released: bool
    where: tuple[int, str]  # (result index, field) in the working release
    order: int = 0  # position in the breakdown or strata, the last tie-break


@dataclass
class _Equation:
    """anchor = sum(listed) + remainder; the anchor is the total or the whole practice."""

    anchor_known: bool
    listed: list[_Term] = field(default_factory=list)
    small_remainder: bool = False
    anchor: tuple[int, str] | None = None  # where the anchor is released in this release

    def withheld(self) -> int:
        return (not self.anchor_known) + sum(not t.released for t in self.listed)

    def needs_more(self) -> bool:
        v = self.withheld()
        return v == 1 or (v == 0 and self.small_remainder)


class _Working:
    """Released measures being built, one per input result, mutable during suppression."""

    def __init__(
        self,
        results: Sequence[IndicatorResult],
        policy: DisclosurePolicy,
        values: Sequence[IndicatorResult] | None = None,
    ) -> None:
        self.raw = list(results)
        self.policy = policy
        primary = [_primary(r.measure, policy) for r in results]
        self.fields = [_fields(m) for m in primary]
        self.means = [m.mean if isinstance(m, Mean) else None for m in primary]
        if values is not None:
            self._take_values(values)

    def _take_values(self, values: Sequence[IndicatorResult]) -> None:
        """Release ``values`` (noisy) wherever the gates on the true counts let a value out.

        A value is released only where both the true count passes (threshold, minimum
        mean count, complement) and the noisy value passes on its own terms (so that
        every released row still meets the coordinator's check).
        """
        if [(v.indicator, v.stratum) for v in values] != [
            (r.indicator, r.stratum) for r in self.raw
        ]:
            raise ValueError("noisy values must match the true results one for one")
        for i, v in enumerate(values):
            noisy = _primary(v.measure, self.policy)
            fields = _fields(noisy)
            for name, value in fields.items():
                if self.fields[i][name] is not None:
                    self.fields[i][name] = value
            f = self.fields[i]
            if "den" in f and f["den"] is None:
                f["num"] = None
            if isinstance(noisy, Mean):
                gated = self.means[i] is not None and f["count"] is not None
                self.means[i] = noisy.mean if gated else None

    def suppress(self, i: int, name: str) -> None:
        f = self.fields[i]
        f[name] = None
        m = self.raw[i].measure
        if isinstance(m, Proportion | Rate) and name == "den":
            f["num"] = None
        if isinstance(m, Mean):
            f["count"] = None
            self.means[i] = None

    def measure(self, i: int) -> Measure:
        m, f = self.raw[i].measure, self.fields[i]
        if isinstance(m, Count):
            return Count(f["value"])
        if isinstance(m, Proportion):
            return Proportion(f["num"], f["den"])
        if isinstance(m, Rate):
            return Rate(f["num"], f["den"], m.per)
        if isinstance(m, Mean):
            return Mean(f["count"], self.means[i])
        assert isinstance(m, Breakdown)
        cells = tuple((cat, f[f"cell:{cat}"]) for cat, _ in m.cells)
        values = [c for _, c in cells]
        total = None if any(c is None for c in values) else sum(c for c in values if c is not None)
        return Breakdown(cells, total)


def _fields(m: Measure) -> dict[str, int | None]:
    if isinstance(m, Count):
        return {"value": m.value}
    if isinstance(m, Proportion | Rate):
        return {"num": m.numerator, "den": m.denominator}
    if isinstance(m, Mean):
        return {"count": m.count}
    assert isinstance(m, Breakdown)
    return {f"cell:{cat}": c for cat, c in m.cells}


def _raw_fields(m: Measure) -> dict[str, int]:
    if isinstance(m, Mean):
        return {"count": _present(m.count)}
    return {k: _present(v) for k, v in _fields(m).items()}


def _breakdown_equation(w: _Working, i: int) -> _Equation:
    m = w.raw[i].measure
    assert isinstance(m, Breakdown)
    listed_sum = sum(_present(c) for _, c in m.cells)
    remainder = (m.total if m.total is not None else listed_sum) - listed_sum
    if remainder < 0:
        raise ValueError(f"{w.raw[i].indicator}: breakdown total is less than its cells")
    eq = _Equation(anchor_known=True, small_remainder=is_small(remainder, w.policy))
    for k, (cat, c) in enumerate(m.cells):
        name = f"cell:{cat}"
        eq.listed.append(_Term(_present(c), w.fields[i][name] is not None, (i, name), k))
    return eq


def _strata_equations(w: _Working, members: list[int]) -> list[_Equation]:
    whole = next((i for i in members if not w.raw[i].stratum), None)
    strata = [i for i in members if w.raw[i].stratum]
    kind = type(w.raw[strata[0]].measure)
    if any(type(w.raw[i].measure) is not kind for i in members):
        raise ValueError(f"{w.raw[strata[0]].indicator}: strata of different kinds")
    names = list(_raw_fields(w.raw[strata[0]].measure))
    raw_strata = [_raw_fields(w.raw[i].measure) for i in strata]
    remainder = {name: 0 for name in names}
    if whole is not None:
        raw_whole = _raw_fields(w.raw[whole].measure)
        remainder = {n: raw_whole[n] - sum(r[n] for r in raw_strata) for n in names}
        if any(v < 0 for v in remainder.values()):
            raise ValueError(f"{w.raw[whole].indicator}: strata add up to more than the whole")
    equations = []
    for name in names:
        small = is_small(remainder[name], w.policy)
        if kind is Proportion and name == "num":
            small = small or is_small(remainder["den"] - remainder["num"], w.policy)
        if kind is Mean:
            small = 0 < remainder[name] < max(w.policy.min_mean_count, w.policy.threshold + 1)
        known = whole is None or w.fields[whole][name] is not None
        anchor = None if whole is None else (whole, name)
        eq = _Equation(anchor_known=known, small_remainder=small, anchor=anchor)
        for k, i in enumerate(strata):
            eq.listed.append(
                _Term(raw_strata[k][name], w.fields[i][name] is not None, (i, name), k)
            )
        equations.append(eq)
    return equations


def _equations(w: _Working) -> list[_Equation]:
    by_indicator: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(w.raw):
        by_indicator[r.indicator].append(i)
    equations = []
    for members in by_indicator.values():
        for i in members:
            if isinstance(w.raw[i].measure, Breakdown):
                equations.append(_breakdown_equation(w, i))
        plain = [i for i in members if not isinstance(w.raw[i].measure, Breakdown)]
        if any(w.raw[i].stratum for i in plain):
            equations.extend(_strata_equations(w, plain))
    return equations


def _next_to_suppress(eq: _Equation) -> tuple[int, str] | None:
    candidates = [t for t in eq.listed if t.released]
    if candidates:
        return min(candidates, key=lambda t: (t.raw == 0, t.raw, t.order)).where
    # A lone stratum equals the whole less a remainder: withhold the whole as well.
    if eq.anchor is not None and eq.anchor_known:
        return eq.anchor
    return None


def release(
    results: Sequence[IndicatorResult],
    policy: DisclosurePolicy,
    *,
    values: Sequence[IndicatorResult] | None = None,
) -> list[IndicatorResult]:
    """Apply disclosure control to raw results: what may leave the practice, in the same order.

    With ``values`` (the same results with noise, ``fedpeer.dp``), every gate reads the
    true ``results`` and the values released are the noisy ones.
    """
    w = _Working(results, policy, values)
    while True:
        progressed = False
        for eq in _equations(w):
            if eq.needs_more():
                target = _next_to_suppress(eq)
                if target is not None:
                    w.suppress(*target)
                    progressed = True
                    break
        if not progressed:
            break
    return [IndicatorResult(r.indicator, w.measure(i), r.stratum) for i, r in enumerate(results)]


# -- the coordinator's check of released rows ------------------------------------------


@dataclass(frozen=True)
class Violation:
    """One rule a released row breaks; names the place, never a value."""

    indicator: str
    category: str
    column: str
    rule: str

    def __str__(self) -> str:
        where = f"{self.indicator}" + (f" [{self.category}]" if self.category else "")
        return f"{where} {self.column}: {self.rule}"


def _check_row(row: ResultRow, policy: DisclosurePolicy) -> list[Violation]:
    out = []

    def flag(column: str, rule: str) -> None:
        out.append(Violation(row.indicator, row.category, column, rule))

    for column in ("numerator", "denominator", "count"):
        value = getattr(row, column)
        if value is None:
            continue
        if value < 0:
            flag(column, "negative count")
        elif is_small(value, policy):
            flag(column, "small count released")
        elif not on_grid(value, policy) and row.category != TOTAL_CATEGORY:
            flag(column, "count not rounded")  # a total is a sum of rounded cells, checked below
    if row.numerator is not None:
        if row.denominator is None:
            flag("numerator", "released over a suppressed denominator")
        elif is_small(row.denominator - row.numerator, policy):
            flag("numerator", "complement is a small count")
    smallest_mean_count = round_count(policy.min_mean_count, policy) or 0
    if row.mean is not None and (row.count is None or row.count < smallest_mean_count):
        flag("mean", "mean over too small a count")
    return out


def _value_matches(value: float | None, expected: Sequence[float]) -> bool:
    """A value must be computed from released numbers (true ones would leak through it)."""
    if value is None:
        return True
    return any(math.isclose(value, e, rel_tol=1e-9, abs_tol=VALUE_TOLERANCE) for e in expected)


def _check_value(row: ResultRow, cell_total: int | None, in_breakdown: bool) -> Violation | None:
    if row.mean is not None:
        expected = [row.mean]
    elif row.numerator is not None and row.denominator:
        expected = [scale * row.numerator / row.denominator for scale in RATIO_SCALES]
    elif in_breakdown:
        expected = [row.count / cell_total] if row.count is not None and cell_total else []
    elif row.numerator is None and row.denominator is None and row.count is not None:
        expected = [float(row.count)]
    else:
        expected = []
    if _value_matches(row.value, expected):
        return None
    return Violation(row.indicator, row.category, "value", "not computed from the released counts")


def _group_key(row: ResultRow) -> str:
    if row.indicator.startswith(PROFILE_PREFIX):
        return ".".join(row.indicator.split(".")[:2])
    return row.indicator


def _check_breakdown(key: str, rows: list[ResultRow]) -> list[Violation]:
    out = []
    cells = [r for r in rows if r.category != TOTAL_CATEGORY]
    withheld = [r for r in cells if r.count is None]
    if len(withheld) == 1:
        where = withheld[0].category or withheld[0].indicator
        out.append(
            Violation(key, where, "count", "the only suppressed cell: recoverable from the total")
        )
    for t in rows:
        released_total = t.category == TOTAL_CATEGORY and t.count is not None
        if released_total and (withheld or t.count != sum(r.count or 0 for r in cells)):
            out.append(
                Violation(key, TOTAL_CATEGORY, "count", "total is not the sum of released cells")
            )
    return out


def _check_strata(key: str, rows: list[ResultRow]) -> list[Violation]:
    out = []
    whole = next((r for r in rows if not r.category), None)
    strata = [r for r in rows if r.category]
    for column in ("numerator", "denominator", "count"):
        if all(getattr(r, column) is None for r in rows):
            continue  # not this kind's column, or withheld everywhere
        anchor_known = whole is None or getattr(whole, column) is not None
        withheld = [r for r in strata if getattr(r, column) is None]
        if (not anchor_known) + len(withheld) == 1:
            where = withheld[0].category if withheld else ""
            out.append(
                Violation(
                    key, where, column, "the only suppressed term: recoverable from the others"
                )
            )
    return out


def _check_group(key: str, rows: list[ResultRow]) -> list[Violation]:
    in_breakdown = any(r.category == TOTAL_CATEGORY for r in rows) or any(
        r.indicator != key for r in rows
    )
    cells = [r for r in rows if r.category != TOTAL_CATEGORY]
    cell_total = None
    if in_breakdown and all(r.count is not None for r in cells):
        cell_total = sum(r.count or 0 for r in cells)
    out = [v for r in cells if (v := _check_value(r, cell_total, in_breakdown)) is not None]
    if in_breakdown:
        return out + _check_breakdown(key, rows)
    if any(r.category for r in rows):
        return out + _check_strata(key, rows)
    return out


def check_release(rows: Sequence[ResultRow], policy: DisclosurePolicy) -> list[Violation]:
    """Every way released rows break the policy; empty when the release is acceptable."""
    out = [v for row in rows for v in _check_row(row, policy)]
    groups: dict[str, list[ResultRow]] = defaultdict(list)
    for row in rows:
        groups[_group_key(row)].append(row)
    for key, members in groups.items():
        out.extend(_check_group(key, members))
    return out
