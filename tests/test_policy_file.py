"""agent.toml: practices only tighten; rounds never loosen; standard dates are month ends."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from agent.policy_file import (
    check_reference_date,
    effective_policy,
    load_practice_policy,
    parse_practice_policy,
)
from fedpeer.errors import PolicyError
from fedpeer.policy import DisclosurePolicy, Rounding


def test_no_file_means_the_defaults(tmp_path: Path) -> None:
    assert load_practice_policy(tmp_path) == DisclosurePolicy()


def test_a_stricter_file_is_read(tmp_path: Path) -> None:
    (tmp_path / "agent.toml").write_text(
        '[coordinator]\nurl = "x"\n[disclosure]\nthreshold = 10\nrounding_base = 10\n'
        "min_mean_count = 12\nmanual_approval = true\n"
    )
    assert load_practice_policy(tmp_path) == DisclosurePolicy(
        threshold=10, rounding_base=10, min_mean_count=12, manual_approval=True
    )


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("threshold = 5", "threshold"),
        ("rounding_base = 1", "rounding_base"),
        ("rounding_base = 7", "rounding_base"),
        ("min_mean_count = 3", "min_mean_count"),
        ("group_minimum = 2", "group_minimum"),
        ("colour = 3", "colour"),
        ('rounding = "none"', "rounding"),
        ('threshold = "10"', "threshold"),
    ],
)
def test_a_looser_or_unknown_value_is_an_error_naming_the_key(text: str, key: str) -> None:
    with pytest.raises(PolicyError, match=key):
        parse_practice_policy({"disclosure": dict([_kv(text)])})


def _kv(text: str) -> tuple[str, object]:
    import tomllib

    ((k, v),) = tomllib.loads(text).items()
    return k, v


def test_midpoint6_is_an_acceptable_practice_choice() -> None:
    assert parse_practice_policy({"disclosure": {"rounding": "midpoint6"}}).granularity == 6


def test_round_may_tighten_and_manual_approval_is_kept() -> None:
    practice = DisclosurePolicy(manual_approval=True)
    asked = DisclosurePolicy(threshold=10)
    assert effective_policy(asked, practice) == DisclosurePolicy(threshold=10, manual_approval=True)


def test_round_asking_looser_than_the_practice_is_refused_naming_keys() -> None:
    practice = DisclosurePolicy(threshold=10, rounding_base=10)
    with pytest.raises(PolicyError, match="threshold, rounding_base") as info:
        effective_policy(DisclosurePolicy(), practice)
    assert "10" not in str(info.value)


def test_nearest_five_is_looser_than_midpoint6_but_nearest_ten_is_not() -> None:
    practice = DisclosurePolicy(rounding=Rounding.MIDPOINT6)
    with pytest.raises(PolicyError, match="rounding"):
        effective_policy(DisclosurePolicy(), practice)
    assert effective_policy(DisclosurePolicy(rounding_base=10), practice).rounding_base == 10


def test_standard_rounds_need_a_month_end() -> None:
    check_reference_date(date(2026, 9, 30), standard=True)
    check_reference_date(date(2024, 2, 29), standard=True)
    check_reference_date(date(2026, 9, 29), standard=False)
    with pytest.raises(PolicyError, match="month end"):
        check_reference_date(date(2026, 9, 29), standard=True)
    with pytest.raises(PolicyError, match="future"):
        check_reference_date(date(2026, 12, 31), standard=True, today=date(2026, 11, 22))


def test_noise_and_privacy_budget_are_read(tmp_path: Path) -> None:
    from agent.policy_file import load_privacy_budget
    from fedpeer.policy import Noise

    (tmp_path / "agent.toml").write_text(
        '[disclosure]\nnoise = "discrete_gaussian"\nnoise_scale = 3\n[privacy]\nbudget_rho = 1\n'
    )
    policy = load_practice_policy(tmp_path)
    assert (policy.noise, policy.noise_scale) == (Noise.DISCRETE_GAUSSIAN, 3.0)
    assert load_privacy_budget(tmp_path) == 1.0
    weaker = DisclosurePolicy(noise=Noise.DISCRETE_GAUSSIAN, noise_scale=1.0)
    with pytest.raises(PolicyError, match="noise_scale"):
        effective_policy(weaker, policy)
    with pytest.raises(PolicyError, match="noise"):
        parse_practice_policy({"disclosure": {"noise": "loud", "noise_scale": 1.0}})
