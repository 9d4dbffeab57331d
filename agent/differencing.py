"""Refusal of a study set that differs from a released set by only a few units.

The attack: release a count over set A, then over A plus one patient; subtract, and the
difference is that patient (in a numerator, their diagnosis or result). Rounding only
blurs this once; asked with care, or often enough, it reveals the patient. So a question
outside the standard catalogue is declined when any of its sets (population, numerator,
breakdown cells) has a symmetric difference of 1..threshold units with a set this
practice has released, at any reference date, or with another set of the same round.

Sets are compared by membership, never by size alone: the ledger keeps salted, truncated
hashes of the unit ids (``Ledger.member_digests``; the salt never leaves the ledger), so a
same-size swap (one patient out, another in) differs by two and is caught, and a target
placed in a numerator is caught at the numerator.

Three refinements, all safe: sets whose sizes differ by more than the threshold cannot
be that close and are never loaded (``Ledger.sets_near``); two sets that are both at or
below the threshold are not compared, because each is released as 0 or suppressed, so
their difference cannot be read from what was released; and the parts of one question
are compared with each other's only across dates, part for part, since within one
release disclosure control already protects their differences (a numerator and its
complement, a breakdown's cells and its total).

A decline depends on the data, so the coordinator hears only ``collection.DECLINED``;
the reason returned here is for the practice, and names no patient.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from agent.ledger import Ledger


@dataclass(frozen=True)
class CandidateSets:
    """A question's fingerprinted sets, and whether the check applies to it."""

    meaning: str
    indicator: str
    sets: Mapping[str, frozenset[bytes]]
    study: bool  # outside the standard catalogue: checked; standard sets are only recorded


def _close(a: frozenset[bytes], b: frozenset[bytes], threshold: int) -> int | None:
    if abs(len(a) - len(b)) > threshold or max(len(a), len(b)) <= threshold:
        return None
    difference = len(a ^ b)
    return difference if 1 <= difference <= threshold else None


@dataclass(frozen=True)
class Decline:
    """A study question to decline, and why, in words for the practice only."""

    meaning: str
    why: str


def _comparable(meaning: str, part: str, other_meaning: str, other_part: str) -> bool:
    return meaning != other_meaning or part == other_part


def decline_reason(
    ledger: Ledger, candidates: Sequence[CandidateSets], threshold: int
) -> Decline | None:
    """The study question a round must be declined for (differencing), or None."""
    for c in candidates:
        if not c.study:
            continue
        for part, members in c.sets.items():
            for recorded in ledger.sets_near(len(members), threshold):
                if not _comparable(c.meaning, part, recorded.meaning, recorded.part):
                    continue
                if (d := _close(members, recorded.members, threshold)) is not None:
                    return Decline(
                        c.meaning,
                        f"{c.indicator} ({part}) differs by {d} from the {recorded.part} of a "
                        f"question released for {recorded.as_of.isoformat()}",
                    )
            for other in candidates:
                for other_part, other_members in other.sets.items():
                    if other.meaning == c.meaning:
                        continue  # one release: disclosure control protects its parts
                    if (d := _close(members, other_members, threshold)) is not None:
                        return Decline(
                            c.meaning,
                            f"{c.indicator} ({part}) differs by {d} from {other.indicator} "
                            f"({other_part}) in the same round",
                        )
    return None
