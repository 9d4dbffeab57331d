"""The release ledger: recorded once, recalled unchanged; approval states; populations."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from agent.differencing import check_population, population_difference
from agent.ledger import Ledger, ReleaseKey, State
from fedpeer.canonical import canonical_release_bytes
from fedpeer.errors import ReleaseRefused, RoundError
from fedpeer.policy import DisclosurePolicy
from fedpeer.release import ResultRow

AS_OF = date(2026, 9, 30)
KEY = ReleaseKey("def-a", AS_OF, DisclosurePolicy().digest())
ROWS = [ResultRow("flu_vacc_65", numerator=60, denominator=100, value=0.6)]


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    return Ledger.at_home(tmp_path)


def test_a_repeated_ask_returns_the_recorded_release(ledger: Ledger, tmp_path: Path) -> None:
    first = ledger.record(KEY, ROWS, "r1")
    other_rows = [ResultRow("flu_vacc_65", numerator=65, denominator=100, value=0.65)]
    again = ledger.record(KEY, other_rows, "r2")
    assert again.body == first.body == canonical_release_bytes(ROWS)
    assert again.round_id == "r1"
    ledger.close()
    assert Ledger.at_home(tmp_path).get(KEY).rows == ROWS  # type: ignore[union-attr]


def test_unknown_key_is_none(ledger: Ledger) -> None:
    assert ledger.get(KEY) is None


def test_manual_approval_holds_the_round_until_approved_then_sent(ledger: Ledger) -> None:
    ledger.record(KEY, ROWS, "r1", manual_approval=True)
    assert ledger.releasable("r1") is None
    with pytest.raises(RoundError, match="awaiting approval"):
        ledger.mark_sent("r1", "receipt-1")
    ledger.approve("r1")
    assert ledger.releasable("r1") == ROWS
    ledger.mark_sent("r1", "receipt-1")
    got = ledger.get(KEY)
    assert got is not None and got.state == State.SENT and got.receipt == "receipt-1"


def test_without_manual_approval_a_release_is_approved_at_once(ledger: Ledger) -> None:
    assert ledger.record(KEY, ROWS, "r1").state == State.APPROVED


def test_rejection_needs_a_reason_and_stops_the_round(ledger: Ledger) -> None:
    ledger.record(KEY, ROWS, "r1", manual_approval=True)
    with pytest.raises(RoundError, match="reason"):
        ledger.reject("r1", " ")
    ledger.reject("r1", "numbers look wrong this month")
    assert ledger.get(KEY).why == "numbers look wrong this month"  # type: ignore[union-attr]
    with pytest.raises(RoundError, match="rejected"):
        ledger.releasable("r1")


def test_unknown_round_is_an_error(ledger: Ledger) -> None:
    with pytest.raises(RoundError, match="nothing recorded"):
        ledger.approve("nope")


def test_same_question_under_another_policy_is_refused(ledger: Ledger) -> None:
    ledger.record(KEY, ROWS, "r1")
    other = ReleaseKey("def-a", AS_OF, DisclosurePolicy(rounding_base=10).digest())
    rounded_to_ten = [ResultRow("flu_vacc_65", numerator=60, denominator=100, value=0.6, count=0)]
    with pytest.raises(ReleaseRefused, match="different disclosure policy"):
        ledger.record(other, rounded_to_ten, "r2")
    ledger.record(ReleaseKey("def-a", date(2026, 10, 31), other.policy_digest), ROWS, "r3")
    # The same answer under a policy differing only in manual approval is no new information.
    manual = ReleaseKey("def-a", AS_OF, DisclosurePolicy(manual_approval=True).digest())
    assert ledger.record(manual, ROWS, "r4").body == canonical_release_bytes(ROWS)


def test_populations_keep_sizes_and_salted_member_hashes(ledger: Ledger) -> None:
    ledger.record_population("def-a", AS_OF, 3, ["p1", "p2", "p3"])
    (pop,) = ledger.populations(AS_OF)
    assert pop.size == 3 and pop.members is not None and len(pop.members) == 3
    assert all(b"p1" not in m for m in pop.members)
    assert ledger.populations(date(2026, 10, 31)) == []


def test_differencing_by_size_and_by_members(ledger: Ledger) -> None:
    policy = DisclosurePolicy()
    ids = [f"p{i}" for i in range(100)]
    ledger.record_population("released", AS_OF, 100, ids)
    check_population(ledger, "same-people", AS_OF, 100, policy, ids)  # identical: fine
    check_population(ledger, "far", AS_OF, 150, policy)  # 50 apart: fine
    with pytest.raises(ReleaseRefused, match="differs by only a few patients"):
        check_population(ledger, "one-more", AS_OF, 101, policy)
    swapped = [*ids[1:], "newcomer"]
    with pytest.raises(ReleaseRefused):
        check_population(ledger, "swap", AS_OF, 100, policy, swapped)
    check_population(ledger, "other-date", date(2026, 10, 31), 101, policy)


def test_population_difference_prefers_members() -> None:
    a, b = frozenset({b"1", b"2"}), frozenset({b"2", b"3"})
    assert population_difference(2, a, 2, b) == 2
    assert population_difference(2, None, 5, b) == 3


def test_privacy_budget_is_spent_and_refused_beyond_the_limit(ledger: Ledger) -> None:
    ledger.spend_budget("r1", "def-a", AS_OF, 0.4, limit=1.0)
    ledger.spend_budget("r2", "def-b", AS_OF, 0.5, limit=1.0)
    assert ledger.budget_spent() == pytest.approx(0.9)
    with pytest.raises(ReleaseRefused, match="privacy budget"):
        ledger.spend_budget("r3", "def-c", AS_OF, 0.2, limit=1.0)
    assert ledger.budget_spent() == pytest.approx(0.9)
