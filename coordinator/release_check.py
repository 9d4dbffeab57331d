"""The coordinator's check of a signed release, before anything of it is stored.

The agent applies disclosure control; this is the second line (DESIGN.md principle 1),
and the place where a release is tied to the round it answers:

1. the signature is the sending practice's, over exactly the bytes received, by the key
   of the certificate the call arrived with, and the document names that practice, that
   round and its reference date (so practice A's release sent over B's channel fails);
2. it answers each of the round's definitions once, under the definition's own id (and,
   in a standardised round, each standardised definition's expected count once), under a
   policy at least as strict as the network's;
3. every row is one the definition renders to, and a mean is at the released precision
   (the rows' plain sense, counts and ceilings, is ``coordinator.plausibility``'s, checked
   on every submission before this);
4. the rows of each policy pass ``fedpeer.disclosure.check_release``.

Errors name the place and the rule, never a value from the release.
"""

from __future__ import annotations

import math
from collections import defaultdict

from cryptography import x509

from coordinator.plausibility import definition_of
from fedpeer.collection import ReleaseDocument, Round, SignedRelease
from fedpeer.disclosure import check_release, round_mean
from fedpeer.errors import DisclosureViolation, IdentityError, RoundError
from fedpeer.policy import DisclosurePolicy
from fedpeer.release import ResultRow, row_keys
from fedpeer.signing import verify_bytes
from fedpeer.standardise import expected_indicator, standardisation_of

SHOWN = 5  # violations named in one error


def verified_document(
    signed: SignedRelease, sender: x509.Certificate, practice_id: str, round_: Round
) -> ReleaseDocument:
    """The release document, once its signature and addressing are the sender's and round's."""
    verify_bytes(sender, signed.document, signed.signature, "the practice")
    document = ReleaseDocument.from_bytes(signed.document)
    if document.practice_id != practice_id:
        raise IdentityError("the release is signed for another practice than the sender")
    if document.round_id != round_.round_id or document.as_of != round_.as_of:
        raise RoundError(f"round {round_.round_id}: the release answers another round")
    return document


def _row_problems(row: ResultRow) -> list[str]:
    where = f"{row.indicator}" + (f" [{row.category}]" if row.category else "")
    if row.mean is not None and math.isfinite(row.mean) and row.mean != round_mean(row.mean):
        return [f"{where} mean: not at the released precision"]
    return []


def check_document(document: ReleaseDocument, round_: Round) -> None:
    """Raise unless the release answers exactly the round's definitions, plausibly and safely."""
    # What each answer must be: a definition's rows, or a standardised definition's
    # expected count (``fedpeer.standardise``), named by the hash of its question.
    asked: dict[str, tuple[str, set[tuple[str, str]]]] = {
        d.content_hash: (d.id, set(row_keys(definition_of(d.body)))) for d in round_.definitions
    }
    standardisation = standardisation_of(round_)
    for rates in standardisation.rates if standardisation else ():
        name = expected_indicator(rates.indicator)
        asked[rates.question_hash] = (name, {(name, "")})
    answered = [a.definition_hash for a in document.answers]
    if sorted(answered) != sorted(asked):
        raise RoundError(
            f"round {round_.round_id}: the release does not answer the round's questions "
            "each exactly once"
        )
    problems: list[str] = []
    by_policy: dict[DisclosurePolicy, list[ResultRow]] = defaultdict(list)
    for answer in document.answers:
        name, expected = asked[answer.definition_hash]
        if answer.indicator != name:
            problems.append(f"{answer.indicator}: answers the round's {name}")
            continue
        if not answer.policy.at_least_as_strict_as(round_.policy):
            problems.append(f"{name}: released under a looser policy than the network's")
        keys = [(r.indicator, r.category) for r in answer.rows]
        if set(keys) != expected or len(keys) != len(expected):
            extra, missing = sorted(set(keys) - expected), sorted(expected - set(keys))
            if extra:
                problems.append(f"{extra[0][0]} [{extra[0][1]}]: not a row of {name}")
            elif missing:
                problems.append(f"{missing[0][0]} [{missing[0][1]}]: missing")
            else:
                problems.append(f"{name}: a row is sent twice")
            continue
        for row in answer.rows:
            problems.extend(_row_problems(row))
        by_policy[answer.policy].extend(answer.rows)
    if not problems:
        for policy, rows in by_policy.items():
            problems.extend(str(v) for v in check_release(rows, policy))
    if problems:
        more = f" (and {len(problems) - SHOWN} more)" if len(problems) > SHOWN else ""
        raise DisclosureViolation(
            "the release breaks the round's rules: " + "; ".join(problems[:SHOWN]) + more
        )
