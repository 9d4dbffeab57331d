"""agent.toml: practices only tighten; the network's policy tightened by it is what applies."""

from __future__ import annotations

import tomllib
from datetime import date
from pathlib import Path

import pytest

from agent.policy_file import DEFAULT_QUESTIONS_PER_MONTH, load_settings, parse_settings
from fedpeer.dates import last_complete_month_end, reference_date_problem
from fedpeer.errors import PolicyError
from fedpeer.policy import DisclosurePolicy, Noise, Rounding, looser_keys, strictest


def test_no_file_means_the_defaults(tmp_path: Path) -> None:
    settings = load_settings(tmp_path)
    assert settings.policy == DisclosurePolicy()
    assert settings.questions_per_month == DEFAULT_QUESTIONS_PER_MONTH
    assert settings.budget_rho is None


def test_a_stricter_file_is_read(tmp_path: Path) -> None:
    (tmp_path / "agent.toml").write_text(
        '[coordinator]\nurl = "x"\n[disclosure]\nthreshold = 10\nrounding_base = 10\n'
        "min_mean_count = 12\nmanual_approval = true\n[questions]\nper_month = 3\n"
    )
    settings = load_settings(tmp_path)
    assert settings.policy == DisclosurePolicy(
        threshold=10, rounding_base=10, min_mean_count=12, manual_approval=True
    )
    assert settings.questions_per_month == 3


def _kv(text: str) -> tuple[str, object]:
    ((k, v),) = tomllib.loads(text).items()
    return k, v


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
        parse_settings({"disclosure": dict([_kv(text)])})


@pytest.mark.parametrize(
    ("table", "key"),
    [
        ({"questions": {"per_month": -1}}, "per_month"),
        ({"questions": {"per_month": "5"}}, "per_month"),
        ({"questions": {"daily": 5}}, "daily"),
        ({"privacy": {"budget_rho": 0}}, "budget_rho"),
    ],
)
def test_bad_budgets_are_errors_naming_the_key(table: dict, key: str) -> None:
    with pytest.raises(PolicyError, match=key):
        parse_settings(table)


def test_midpoint6_is_an_acceptable_practice_choice() -> None:
    assert parse_settings({"disclosure": {"rounding": "midpoint6"}}).policy.granularity == 6


def test_the_stricter_of_network_and_practice_applies_key_by_key() -> None:
    network = DisclosurePolicy(threshold=10, min_mean_count=8)
    practice = DisclosurePolicy(min_mean_count=20, manual_approval=True)
    got = strictest(network, practice)
    assert got == DisclosurePolicy(threshold=10, min_mean_count=20, manual_approval=True)
    assert not looser_keys(got, network) and not looser_keys(got, practice)


def test_rounding_bases_neither_dividing_the_other_meet_at_their_common_multiple() -> None:
    got = strictest(DisclosurePolicy(rounding_base=10), DisclosurePolicy(rounding_base=15))
    assert got.rounding_base == 30
    midpoint = DisclosurePolicy(rounding=Rounding.MIDPOINT6)
    assert strictest(DisclosurePolicy(), midpoint).rounding == Rounding.MIDPOINT6
    assert strictest(DisclosurePolicy(rounding_base=10), midpoint).rounding_base == 10


def test_practice_noise_may_only_be_larger_and_of_the_network_kind() -> None:
    network = DisclosurePolicy(noise=Noise.DISCRETE_GAUSSIAN, noise_scale=2.0)
    louder = DisclosurePolicy(noise=Noise.DISCRETE_GAUSSIAN, noise_scale=5.0)
    assert strictest(network, louder).noise_scale == 5.0
    assert strictest(network, DisclosurePolicy()).noise_scale == 2.0
    other = DisclosurePolicy(noise=Noise.DISCRETE_LAPLACE, noise_scale=5.0)
    with pytest.raises(PolicyError, match="another kind"):
        strictest(network, other)


def test_every_reference_date_is_a_past_month_end() -> None:
    today = date(2026, 12, 2)
    assert last_complete_month_end(today) == date(2026, 11, 30)
    assert reference_date_problem(date(2026, 11, 30), today) is None
    assert reference_date_problem(date(2024, 2, 29), today) is None
    assert "month end" in (reference_date_problem(date(2026, 9, 29), today) or "")
    assert "not before the current month" in (
        reference_date_problem(date(2026, 12, 31), today) or ""
    )
    assert reference_date_problem(date(2027, 1, 31), today) is not None


def test_noise_and_privacy_budget_are_read(tmp_path: Path) -> None:
    (tmp_path / "agent.toml").write_text(
        '[disclosure]\nnoise = "discrete_gaussian"\nnoise_scale = 3\n[privacy]\nbudget_rho = 1\n'
    )
    settings = load_settings(tmp_path)
    assert (settings.policy.noise, settings.policy.noise_scale) == (Noise.DISCRETE_GAUSSIAN, 3.0)
    assert settings.budget_rho == 1.0
    with pytest.raises(PolicyError, match="noise"):
        parse_settings({"disclosure": {"noise": "loud", "noise_scale": 1.0}})
