"""Comparison groups: all practices, a locality, a peer set, a study pool.

One rule lives here (DESIGN.md, "Disclosure control"): a group's value is published only
when at least ``group_minimum`` practices contributed to it; otherwise it is withheld
with a note saying why. Every group value in fedpeer goes through ``group_value``.

A group's value is pooled, not averaged over practices: the sum of the numerators over
the sum of the denominators (a mean's numerator being count times mean), so a large
practice weighs as much as its patients do.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum


class Withheld(StrEnum):
    """Why a group's value is not published."""

    TOO_FEW = "too_few"  # fewer practices contributed than the group minimum
    COMPLEMENTARY = "complementary"  # published, it would give a smaller withheld group away


@dataclass(frozen=True)
class Contribution:
    """What one practice adds to a pooled value: a numerator over a denominator."""

    practice_id: str
    numerator: float
    denominator: float


@dataclass(frozen=True)
class GroupValue:
    """A comparison group's pooled value, or the reason it is withheld."""

    name: str
    contributing: int  # practices with a value for this indicator
    value: float | None  # None when withheld or when there is nothing to pool
    published: bool
    note: str = ""
    rank: int | None = None  # among published groups of the same kind, 1 = best (or highest)
    withheld: Withheld | None = None


def withheld_note(contributing: int, group_minimum: int) -> str:
    """The plain-words reason a group is withheld."""
    practices = "practice" if contributing == 1 else "practices"
    return (
        f"Withheld: {contributing} {practices} contributed, fewer than the minimum of "
        f"{group_minimum} needed to publish a group."
    )


def group_value(
    name: str,
    contributions: Sequence[Contribution],
    *,
    scale: float,
    group_minimum: int,
) -> GroupValue:
    """Pool a group's contributions, publishing only when enough practices contributed."""
    count = len({c.practice_id for c in contributions})
    if count < group_minimum:
        note = withheld_note(count, group_minimum)
        return GroupValue(name, count, None, False, note, withheld=Withheld.TOO_FEW)
    denominator = sum(c.denominator for c in contributions)
    if denominator <= 0:
        return GroupValue(name, count, None, True, "Nothing to pool: every denominator is zero.")
    value = scale * sum(c.numerator for c in contributions) / denominator
    return GroupValue(name, count, value, True)


def locality_values(
    contributions: Sequence[Contribution],
    locality_of: Mapping[str, str],
    *,
    scale: float,
    group_minimum: int,
    higher_is_better: bool | None,
) -> tuple[GroupValue, ...]:
    """Every locality's pooled value, ranked among the published ones, in name order."""
    by_locality: dict[str, list[Contribution]] = {name: [] for name in set(locality_of.values())}
    for c in contributions:
        by_locality[locality_of[c.practice_id]].append(c)
    groups = [
        group_value(name, by_locality[name], scale=scale, group_minimum=group_minimum)
        for name in sorted(by_locality)
    ]
    return rank_groups(complementary(groups, group_minimum), higher_is_better=higher_is_better)


def complementary_note(group_minimum: int) -> str:
    """The plain-words reason a group is withheld to protect another one."""
    return (
        "Withheld so that a smaller withheld locality cannot be worked out from the "
        f"all-practice value: together they reach the minimum of {group_minimum}."
    )


def complementary(groups: Sequence[GroupValue], group_minimum: int) -> list[GroupValue]:
    """Withhold the smallest published groups until the withheld ones reach the minimum.

    The all-practice value is published beside the localities, which partition it: with
    one small locality withheld, the others' values (and their published counts) give it
    away by subtraction. So groups are withheld, smallest first, until what is withheld
    together holds at least ``group_minimum`` practices (or nothing is withheld at all).
    """
    result = list(groups)
    withheld = sum(g.contributing for g in result if not g.published)
    if withheld == 0:
        return result
    published = sorted(
        (i for i, g in enumerate(result) if g.published),
        key=lambda i: (result[i].contributing, result[i].name),
    )
    for i in published:
        if withheld >= group_minimum:
            break
        g = result[i]
        result[i] = replace(
            g,
            value=None,
            published=False,
            note=complementary_note(group_minimum),
            withheld=Withheld.COMPLEMENTARY,
        )
        withheld += g.contributing
    return result


def rank_groups(
    groups: Sequence[GroupValue], *, higher_is_better: bool | None
) -> tuple[GroupValue, ...]:
    """Rank published groups: 1 is the best, or the highest when neither way is better."""
    ranked = [g for g in groups if g.published and g.value is not None]
    descending = higher_is_better is not False
    ranked.sort(key=lambda g: (-g.value if descending else g.value, g.name))  # type: ignore[operator]
    ranks = {g.name: position for position, g in enumerate(ranked, start=1)}
    return tuple(replace(g, rank=ranks.get(g.name)) for g in groups)
