"""Whether a verified release makes sense as numbers, before anything of it is stored.

One enrolled practice must not be able to break or move a round's comparisons with a
release that is signed but absurd: a count of 2^63, an indicator the round never asked,
an empty row, a numerator above its denominator, a row sent twice, more patients than
the practice has. ``check_plausible`` is the one place these rules live; the submit path
calls it for every release, whether or not the disclosure re-check is switched on.

A refusal is ``ImplausibleRelease`` (INVALID_ARGUMENT on the wire: the agent takes it as
the verdict it is and stops resending). Its message names the rule and the row, never a
value from the release.
"""

from __future__ import annotations

import math
from collections import Counter
from functools import lru_cache

from fedpeer.collection import ReleaseDocument, Round
from fedpeer.definitions import IndicatorDefinition, deserialize
from fedpeer.definitions.model import Unit
from fedpeer.errors import FedpeerError
from fedpeer.measures import Kind
from fedpeer.release import ResultRow, row_keys
from fedpeer.standardise import expected_indicator

# No practice in England has ten million of anything a round counts; a count above this is
# a broken or hostile sender, and would overflow sums in the comparisons.
COUNT_CEILING = 10_000_000
# The practice's own list size is released rounded and perhaps noised, like the counts
# checked against it: a count of patients may stand a little above it, never far.
LIST_SIZE_INDICATOR = "profile.list_size"
LIST_SIZE_SLACK = 0.05
LIST_SIZE_MARGIN = 100
VALUE_COLUMNS = ("numerator", "denominator", "count", "mean", "value")
COUNT_COLUMNS = ("numerator", "denominator", "count")
SHOWN = 5  # problems named in one error


class ImplausibleRelease(FedpeerError):
    """A signed release whose numbers cannot be true: refused, nothing of it stored."""


@lru_cache(maxsize=256)
def definition_of(body: bytes) -> IndicatorDefinition:
    """A round definition's parsed form, parsed once per distinct body."""
    return deserialize(body)


def _patient_columns(defn: IndicatorDefinition) -> tuple[str, ...]:
    """The columns of a definition's rows that count the practice's own patients."""
    if defn.unit is Unit.PATIENTS:
        return COUNT_COLUMNS
    if defn.kind is Kind.RATE:  # items per patient: the denominator is patients
        return ("denominator",)
    return ()


def _list_size(rows: list[ResultRow]) -> int | None:
    """The list size the release itself states, when it states one."""
    for row in rows:
        if row.indicator == LIST_SIZE_INDICATOR and not row.category:
            return row.count
    return None


def _row_problems(row: ResultRow, defn: IndicatorDefinition, list_size: int | None) -> list[str]:
    where = row.indicator + (f" [{row.category}]" if row.category else "")
    values = [getattr(row, column) for column in VALUE_COLUMNS]
    if all(v is None for v in values) and not row.suppressed:
        return [f"{where}: an empty row"]
    problems = []
    limit = None if list_size is None else list_size * (1 + LIST_SIZE_SLACK) + LIST_SIZE_MARGIN
    patients = _patient_columns(defn)
    for column in COUNT_COLUMNS:
        value = getattr(row, column)
        if value is None:
            continue
        if not 0 <= value <= COUNT_CEILING:
            problems.append(f"{where} {column}: not a plausible count")
        elif limit is not None and column in patients and value > limit:
            problems.append(f"{where} {column}: more patients than the practice's list")
    if (
        defn.kind is Kind.PROPORTION
        and row.numerator is not None
        and row.denominator is not None
        and row.numerator > row.denominator
    ):
        problems.append(f"{where} numerator: above the denominator")
    for column in ("mean", "value"):
        value = getattr(row, column)
        if value is not None and not math.isfinite(value):
            problems.append(f"{where} {column}: not a finite number")
    return problems


def plausibility_problems(document: ReleaseDocument, round_: Round) -> list[str]:
    """Every way the release's rows fail the round's definitions or plain sense."""
    defined = {
        key: definition_of(doc.body)
        for doc in round_.definitions
        for key in row_keys(definition_of(doc.body))
    }
    if round_.reference_rates:
        # A standardised definition's expected count: a count, at most one per person.
        for defn in {d.id: d for d in defined.values() if d.standardise}.values():
            defined[(expected_indicator(defn.id), "")] = defn
    rows = document.rows
    if defined and not rows:
        return ["the release carries no rows"]
    problems = []
    seen = Counter((r.indicator, r.category) for r in rows)
    # Only the round's own names are quoted back: an unknown one is the sender's text.
    problems.extend(
        f"{ind}" + (f" [{cat}]" if cat else "") + ": sent twice"
        for (ind, cat), n in seen.items()
        if n > 1 and (ind, cat) in defined
    )
    list_size = _list_size(rows)
    for row in rows:
        defn = defined.get((row.indicator, row.category))
        if defn is None:
            problems.append("a row the round's definitions do not have")
            continue
        if seen[(row.indicator, row.category)] > 1:
            continue
        problems.extend(_row_problems(row, defn, list_size))
    return problems


def check_plausible(document: ReleaseDocument, round_: Round) -> None:
    """Raise ImplausibleRelease unless every row is one the round asks for, and sensible."""
    problems = plausibility_problems(document, round_)
    if problems:
        more = f" (and {len(problems) - SHOWN} more)" if len(problems) > SHOWN else ""
        raise ImplausibleRelease(
            "the release's numbers are not plausible: " + "; ".join(problems[:SHOWN]) + more
        )
