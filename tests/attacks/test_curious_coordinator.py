"""A curious coordinator plays against the agent-side machinery. Each test says what it tries
and what it learns: nothing beyond what the disclosure policy allows.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest
from agent_side import Patient, Practice, Question, town

from fedpeer.disclosure import release
from fedpeer.errors import PolicyError, ReleaseRefused
from fedpeer.measures import IndicatorResult, Proportion
from fedpeer.policy import DisclosurePolicy, Noise

AS_OF = date(2026, 9, 30)
FLU = Question("flu_vacc_65", min_age=65)


def rows(data: bytes) -> list[dict]:
    return json.loads(data)["rows"]


def test_repeating_a_round_gets_the_recorded_answer(tmp_path: Path) -> None:
    """The attacker repeats a round, hoping a changed extract (or fresh noise) gives a
    second answer to subtract or average. They get the identical bytes back: nothing new."""
    practice = Practice(tmp_path, town())
    first = practice.answer("r1", [FLU], AS_OF)
    # A late-coded record changes the truth for that date...
    practice.patients = [
        Patient(p.pid, p.age, p.sex, not p.flag) if p.pid == "p66" else p for p in practice.patients
    ]
    # ...yet asking again, in another round, returns the recorded release byte for byte.
    assert practice.answer("r2", [FLU], AS_OF) == first


def test_shifting_the_reference_date_by_a_day_is_refused(tmp_path: Path) -> None:
    """The attacker asks a standard round for 2026-09-29 to difference it against the
    released 2026-09-30 (one day's deaths or deregistrations). Refused: not a month end."""
    practice = Practice(tmp_path, town())
    practice.answer("r1", [FLU], AS_OF)
    with pytest.raises(PolicyError, match="month end"):
        practice.answer("r2", [FLU], date(2026, 9, 29))


def _one_patient_practice() -> tuple[list[Patient], Patient]:
    """60 patients aged 40..79 (12 flagged) and one, X, aged exactly 80 who is flagged."""
    base = [Patient(f"a{i}", 40 + i % 40, "female", i < 12) for i in range(60)]
    x = Patient("x", 80, "male", True)
    young = [Patient(f"y{i}", 10 + i % 20, "male", False) for i in range(40)]
    return [*base, x, *young], x


def test_without_the_check_two_overlapping_studies_reveal_one_patient() -> None:
    """What the differencing check stops: 40..79 gives 12 of 60 (released 10 of 60); 40..80
    adds only X and gives 13 of 61 (released 15 of 60). Same denominator, numerator up:
    the attacker learns that X, the only 80-year-old, has the sensitive flag."""
    patients, x = _one_patient_practice()
    a = Question("study", 40, 79).evaluate(patients)
    b = Question("study", 40, 80).evaluate(patients)
    (ra,), (rb,) = release([a], DisclosurePolicy()), release([b], DisclosurePolicy())
    assert ra.measure == Proportion(10, 60) and rb.measure == Proportion(15, 60)
    assert x.flag  # what the subtraction revealed


def test_overlapping_study_populations_differing_by_one_patient_are_refused(tmp_path: Path) -> None:
    """The same attack through the agent: the second study is refused, in plain words and
    without counts; a swap (drop the 40-year-olds, add X) is caught by member hashes."""
    patients, _ = _one_patient_practice()
    practice = Practice(tmp_path, patients)
    practice.answer("s1", [Question("study", 40, 79)], AS_OF, standard=False)
    with pytest.raises(ReleaseRefused) as refused:
        practice.answer("s2", [Question("study", 40, 80)], AS_OF, standard=False)
    assert "differs by only a few patients" in str(refused.value)
    assert not any(ch.isdigit() for ch in str(refused.value))
    with pytest.raises(ReleaseRefused):
        practice.answer("s3", [Question("study", 41, 80)], AS_OF, standard=False)
    # A genuinely different study is answered.
    practice.answer("s4", [Question("study", 10, 29)], AS_OF, standard=False)


def test_a_breakdown_whose_total_is_released_elsewhere_keeps_its_small_cell(tmp_path: Path) -> None:
    """The attacker gets profile.list_size and profile.age_sex and subtracts the released
    cells from the list size, hoping to isolate the one small cell (3 women aged 80-99).
    Secondary suppression withholds a second cell, so the subtraction gives only the sum
    of two withheld cells (and rounding blurs even that)."""
    patients = [Patient(f"p{i}", i % 80, "female" if i % 2 else "male", False) for i in range(400)]
    patients += [Patient(f"old{i}", 85, "female", False) for i in range(3)]
    practice = Practice(tmp_path, patients)
    data = practice.answer(
        "r1", [Question("size", kind="list_size"), Question("as", kind="age_sex")], AS_OF
    )
    released = {r["indicator"]: r["count"] for r in rows(data)}
    withheld = [name for name, count in released.items() if count is None]
    assert "profile.age_sex.female.80-99" in withheld
    assert len(withheld) >= 2
    list_size = released.pop("profile.list_size")
    leftover = list_size - sum(c for c in released.values() if c is not None)
    assert leftover != 3  # what they can compute is not the small cell


def test_asking_for_a_looser_policy_is_refused(tmp_path: Path) -> None:
    """The practice's agent.toml says threshold 10; a round asks for the default 7, another
    for means over 3 patients. Both are refused, naming the rule, before any count is made."""
    (tmp_path / "agent.toml").write_text("[disclosure]\nthreshold = 10\n")
    practice = Practice(tmp_path, town())
    with pytest.raises(PolicyError, match="threshold"):
        practice.answer("r1", [FLU], AS_OF, DisclosurePolicy())
    with pytest.raises(PolicyError, match="min_mean_count"):
        practice.answer("r2", [FLU], AS_OF, DisclosurePolicy(threshold=10, min_mean_count=3))
    assert practice.ledger.populations(AS_OF) == []


def test_the_same_question_under_two_roundings_is_refused(tmp_path: Path) -> None:
    """13 rounds to 15 under base 5 (so 13..17) and to 10 under base 10 (so 5..14): the
    attacker would intersect to 13..14. The second ask, under a different policy for the
    same question and date, is refused."""
    assert release([IndicatorResult("i", Proportion(13, 100))], DisclosurePolicy())[
        0
    ].measure == Proportion(15, 100)
    patients = [Patient(f"p{i}", 70, "female", i < 13) for i in range(100)]
    practice = Practice(tmp_path, patients)
    practice.answer("r1", [FLU], AS_OF)
    with pytest.raises(ReleaseRefused, match="different disclosure policy"):
        practice.answer("r2", [FLU], AS_OF, DisclosurePolicy(rounding_base=10))
    # Turning on manual approval changes the policy but not the answer: that is allowed.
    practice.answer("r3", [FLU], AS_OF, DisclosurePolicy(manual_approval=True))


def test_strata_cannot_be_subtracted_from_the_whole(tmp_path: Path) -> None:
    """The attacker asks a proportion for the whole practice and for women and men, where
    one sex has a small complement, hoping whole minus the other stratum gives it. The
    withheld stratum is matched by a second withheld stratum."""
    results = [
        IndicatorResult("flu_vacc_65", Proportion(120, 200)),
        IndicatorResult("flu_vacc_65", Proportion(95, 100), "female.65+"),
        IndicatorResult("flu_vacc_65", Proportion(25, 100), "male.65+"),
    ]
    whole, female, male = (r.measure for r in release(results, DisclosurePolicy()))
    assert whole == Proportion(120, 200)
    assert female.numerator is None and male.numerator is None  # type: ignore[union-attr]


NOISY = (
    "[disclosure]\nnoise = 'discrete_gaussian'\nnoise_scale = 3.0\n[privacy]\nbudget_rho = 0.2\n"
)
NOISY_ROUND = DisclosurePolicy(noise=Noise.DISCRETE_GAUSSIAN, noise_scale=3.0)


def test_repeating_a_noisy_round_gets_no_fresh_noise(tmp_path: Path) -> None:
    """With differential privacy on, the attacker repeats a round many times to average the
    noise away. Every repeat returns the recorded bytes: one draw of noise, ever."""
    (tmp_path / "agent.toml").write_text(NOISY)
    practice = Practice(tmp_path, town())
    answers = {practice.answer(f"r{i}", [FLU], AS_OF, NOISY_ROUND) for i in range(5)}
    assert len(answers) == 1
    assert practice.ledger.budget_spent() == pytest.approx(1 / 18)


def test_new_questions_beyond_the_privacy_budget_are_refused(tmp_path: Path) -> None:
    """The attacker asks many different noisy questions, spending the practice's budget
    (rho 0.2; each costs 1/18). Once it would be exceeded, the agent refuses; what was
    recorded stays answerable."""
    (tmp_path / "agent.toml").write_text(NOISY)
    practice = Practice(tmp_path, town())
    for age in (0, 30, 60):
        practice.answer(
            f"r{age}", [Question(f"q{age}", min_age=age)], AS_OF, NOISY_ROUND, standard=False
        )
    with pytest.raises(ReleaseRefused, match="privacy budget"):
        practice.answer("r9", [Question("q9", min_age=45)], AS_OF, NOISY_ROUND, standard=False)
    practice.answer("r10", [Question("q0", min_age=0)], AS_OF, NOISY_ROUND, standard=False)


def test_a_noisy_practice_refuses_a_round_without_noise(tmp_path: Path) -> None:
    """The attacker asks a practice that requires noise for noise-free counts: refused."""
    (tmp_path / "agent.toml").write_text(NOISY)
    with pytest.raises(PolicyError, match="noise"):
        Practice(tmp_path, town()).answer("r1", [FLU], AS_OF, DisclosurePolicy())
