"""The release ledger: keyed by meaning and date, recalled unchanged; states; sets; budgets."""

from __future__ import annotations

import sqlite3
from datetime import date
from pathlib import Path

import pytest

from agent.differencing import CandidateSets, decline_reason
from agent.ledger import Ledger, NewRelease, Question, State
from fedpeer.errors import RoundError
from fedpeer.policy import DisclosurePolicy
from fedpeer.release import ResultRow

AS_OF = date(2026, 9, 30)
FLU = Question("meaning-flu", "hash-flu", "flu_vacc_65")
ROWS = (ResultRow("flu_vacc_65", numerator=60, denominator=100, value=0.6),)
MONTH = "2026-12"


def _record(ledger: Ledger, round_id: str, rows=ROWS, *, manual: bool = False, **sets) -> None:
    release = NewRelease(FLU, rows, DisclosurePolicy(), sets)
    ledger.record_round(round_id, AS_OF, [FLU], [release], month=MONTH, manual_approval=manual)


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    return Ledger.at_home(tmp_path)


def test_a_recorded_release_is_never_replaced(ledger: Ledger, tmp_path: Path) -> None:
    _record(ledger, "r1")
    _record(ledger, "r2", (ResultRow("flu_vacc_65", numerator=65, denominator=100, value=0.65),))
    got = ledger.get("meaning-flu", AS_OF)
    assert got is not None and got.rows == ROWS and got.round_id == "r1"
    ledger.close()
    assert Ledger.at_home(tmp_path).get("meaning-flu", AS_OF).rows == ROWS  # type: ignore[union-attr]


def test_a_renamed_question_gets_the_recorded_answer_under_its_own_id(ledger: Ledger) -> None:
    _record(ledger, "r1")
    renamed = Question("meaning-flu", "hash-of-the-reworded-one", "flu_jabs_over_65")
    ledger.record_round("r2", AS_OF, [renamed], [], month=MONTH, manual_approval=False)
    (answer,) = ledger.round_document("r2", "P1").answers
    assert answer.definition_hash == "hash-of-the-reworded-one"
    assert [(r.indicator, r.numerator, r.denominator) for r in answer.rows] == [
        ("flu_jabs_over_65", 60, 100)
    ]


def test_unknown_question_is_none(ledger: Ledger) -> None:
    assert ledger.get("meaning-flu", AS_OF) is None
    assert ledger.known(["meaning-flu"], AS_OF) == {}


def test_manual_approval_holds_the_round_until_approved_then_sent(ledger: Ledger) -> None:
    _record(ledger, "r1", manual=True)
    assert ledger.round_states("r1") == {State.AWAITING_APPROVAL}
    with pytest.raises(RoundError, match="awaiting approval"):
        ledger.mark_sent("r1", "receipt-1")
    ledger.approve("r1")
    ledger.mark_sent("r1", "receipt-1")
    got = ledger.get("meaning-flu", AS_OF)
    assert got is not None and got.state == State.SENT and got.receipt == "receipt-1"
    assert ledger.sent_receipts() == {"receipt-1"}


def test_rejection_needs_a_reason_and_stops_the_round(ledger: Ledger) -> None:
    _record(ledger, "r1", manual=True)
    with pytest.raises(RoundError, match="reason"):
        ledger.reject("r1", " ")
    ledger.reject("r1", "numbers look wrong this month")
    assert ledger.declined_why("r1") == "numbers look wrong this month"
    assert ledger.round_states("r1") == {State.REJECTED}


def test_unknown_round_is_an_error(ledger: Ledger) -> None:
    with pytest.raises(RoundError, match="nothing recorded"):
        ledger.approve("nope")


def test_a_declined_question_is_recorded_with_its_local_reason(ledger: Ledger) -> None:
    study = Question("meaning-study", "hash-study", "study")
    asked = NewRelease(study, (), DisclosurePolicy(), {}, counts_against_budget=True)
    ledger.record_round(
        "s1",
        AS_OF,
        [study],
        [asked],
        month=MONTH,
        manual_approval=False,
        declined=(study, "differs by 1"),
    )
    got = ledger.get("meaning-study", AS_OF)
    assert got is not None and got.state == State.DECLINED and got.why == "differs by 1"
    assert ledger.questions_asked(MONTH) == 1
    assert list(ledger.sets_near(0, 100)) == []


def test_sets_are_salted_fingerprints_found_by_size(ledger: Ledger) -> None:
    members = ledger.member_digests(f"patient:p{i}" for i in range(100))
    assert len(members) == 100 and all(b"p1" not in m for m in members)
    _record(ledger, "r1", population=members)
    assert [s.part for s in ledger.sets_near(101, 7)] == ["population"]
    assert list(ledger.sets_near(120, 7)) == []
    blob = sqlite3.connect(ledger.path).execute("SELECT members FROM sets").fetchone()[0]
    assert b"patient" not in blob


def _candidate(ledger: Ledger, ids: list[str], study: bool = True) -> CandidateSets:
    return CandidateSets("m-new", "study", {"population": ledger.member_digests(ids)}, study)


def test_differencing_by_members_across_dates(ledger: Ledger) -> None:
    ids = [f"patient:p{i}" for i in range(100)]
    _record(ledger, "r1", population=ledger.member_digests(ids))
    assert decline_reason(ledger, [_candidate(ledger, ids)], 7) is None  # the same people
    assert decline_reason(ledger, [_candidate(ledger, ids[:50])], 7) is None  # far apart
    one_more = decline_reason(ledger, [_candidate(ledger, [*ids, "patient:x"])], 7)
    assert one_more is not None and "differs by 1" in one_more.why
    swapped = decline_reason(ledger, [_candidate(ledger, [*ids[1:], "patient:x"])], 7)
    assert swapped is not None and "differs by 2" in swapped.why
    # A standard question's sets are recorded, never checked.
    assert decline_reason(ledger, [_candidate(ledger, [*ids, "patient:x"], study=False)], 7) is None


def test_two_small_sets_are_not_compared(ledger: Ledger) -> None:
    _record(ledger, "r1", population=ledger.member_digests(["patient:a", "patient:b"]))
    assert decline_reason(ledger, [_candidate(ledger, ["patient:a"])], 7) is None


def test_an_older_ledger_is_refused_in_plain_words(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "ledger.sqlite")
    db.execute("CREATE TABLE releases (definition_hash TEXT)")
    db.commit()
    db.close()
    with pytest.raises(RoundError, match="older fedpeer agent"):
        Ledger.at_home(tmp_path)
