"""Refusal of study populations that differ from a released one by only a few patients.

The attack: release a count over population A, then over A plus one patient; subtract,
and the second answer minus the first is that patient's value (in a numerator, their
diagnosis or result). Rounding only blurs this once; asked with care, or often enough,
it reveals the patient. So an ad hoc (study) definition is refused when its population
differs from one already released *at the same reference date* by 1..threshold patients.

What "differs" means, best first:

- **members**: when the engine supplies the population's patient ids, the ledger keeps
  salted hashes of them (locally; the salt never leaves the ledger) and the difference is
  the size of the symmetric difference. This catches a swap (one patient out, another
  in: same size, two patients differ) that sizes alone miss.
- **sizes**: otherwise the difference of the raw population sizes (denominators). This
  misses swaps and can refuse an unrelated population of nearly the same size; both
  errors are on the side of refusing too little and too much respectively.

Limits, in plain words: only populations released by this practice at the same
reference date are compared (a patient registering between two month ends changes a
list by one, which rounding has to protect); chains (A and B released, then A+B-C)
are not searched; populations are compared only when they are recorded, so the pipeline
must call ``Ledger.record_population`` for every released definition, standard ones
included, or a study could be aimed at a standard indicator's denominator.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date

from agent.ledger import Ledger
from fedpeer.errors import ReleaseRefused
from fedpeer.policy import DisclosurePolicy

REFUSAL = (
    "this study's population differs by only a few patients from a population already "
    "released for the same reference date; comparing the two answers could reveal "
    "those patients"
)


def population_difference(
    size: int,
    members: frozenset[bytes] | None,
    other_size: int,
    other_members: frozenset[bytes] | None,
) -> int:
    """How many patients two populations differ by: by members when both are known."""
    if members is not None and other_members is not None:
        return len(members ^ other_members)
    return abs(size - other_size)


def check_population(
    ledger: Ledger,
    definition_hash: str,
    as_of: date,
    size: int,
    policy: DisclosurePolicy,
    patient_ids: Iterable[str] | None = None,
) -> None:
    """Refuse (``ReleaseRefused``) a population within 1..threshold patients of a released one."""
    members = None if patient_ids is None else ledger.member_digests(patient_ids)
    for other in ledger.populations(as_of):
        if other.definition_hash == definition_hash:
            continue
        diff = population_difference(size, members, other.size, other.members)
        if 1 <= diff <= policy.threshold:
            raise ReleaseRefused(REFUSAL)
