"""Optional differential privacy: OpenDP noise on atomic counts, then the usual rules."""

from __future__ import annotations

import itertools
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedpeer.disclosure import check_release
from fedpeer.dp import SUM_STEPS, MeanSum, add_noise, cost_rho, opendp_sampler, release_with_noise
from fedpeer.errors import PolicyError
from fedpeer.measures import Breakdown, Count, IndicatorResult, Kind, Mean, Proportion, Rate
from fedpeer.policy import DisclosurePolicy, Noise
from fedpeer.release import to_rows

GAUSS = DisclosurePolicy(noise=Noise.DISCRETE_GAUSSIAN, noise_scale=3.0)
LAPLACE = DisclosurePolicy(noise=Noise.DISCRETE_LAPLACE, noise_scale=2.0)
CI = settings(derandomize=True, max_examples=100, deadline=None)

RESULTS = [
    IndicatorResult("x", Proportion(60, 100)),
    IndicatorResult("x", Proportion(30, 50), "female"),
    IndicatorResult("x", Proportion(28, 48), "male"),
    IndicatorResult("profile.age_sex", Breakdown((("female.0-4", 30), ("male.0-4", 40)), 75)),
    IndicatorResult("skill_mix", Breakdown((("gp", 300), ("nurse", 120)))),
    IndicatorResult("gp_f2f_minutes", Mean(50, 11.25)),
    IndicatorResult("antibiotic_items_per_1000", Rate(700, 1500)),
    IndicatorResult("profile.list_size", Count(1500)),
]


def _scripted(noise: list[int]) -> object:
    it = itertools.cycle(noise or [0])
    return lambda x: x + next(it)


@CI
@given(st.lists(st.integers(-12, 12), min_size=1, max_size=30))
def test_noisy_counts_stay_consistent_and_pass_the_coordinators_check(noise: list[int]) -> None:
    """Whatever the noise: numerators within denominators, wholes and totals are sums of
    their noisy parts, no count is negative, and the released rows pass check_release."""
    noisy = add_noise(RESULTS, _scripted(noise))  # type: ignore[arg-type]
    whole, female, male = (r.measure for r in noisy[:3])
    for p in (whole, female, male):
        assert 0 <= p.numerator <= p.denominator  # type: ignore[union-attr, operator]
    assert whole.numerator >= female.numerator + male.numerator  # type: ignore[union-attr, operator]
    b = noisy[3].measure
    assert b.total >= sum(c for _, c in b.cells)  # type: ignore[union-attr, misc, operator]
    released = release_with_noise(RESULTS, GAUSS, _scripted(noise), sums=SUMS)  # type: ignore[arg-type]
    assert check_release(to_rows(released), GAUSS) == []


SUMS = [None] * 5 + [MeanSum(Fraction(50 * 45, 4), 60)] + [None] * 2  # 50 visits of 11.25 min


def test_a_means_sum_is_noised_and_its_gate_reads_the_true_count() -> None:
    """The issue's noisy mean: over 3 appointments it was released exact, because only the
    count was noised and the gate read the noisy count. Now the sum is noised too, and a
    true count below the minimum is never released however the noise falls."""
    tiny = [IndicatorResult("gp_f2f_minutes", Mean(3, 12.0))]
    lifted = release_with_noise(tiny, GAUSS, lambda x: x + 40, sums=[MeanSum(Fraction(36), 60)])
    assert lifted[0].measure == Mean(None, None)
    big = [RESULTS[5]]
    released = release_with_noise(
        big, GAUSS, lambda x: x, sums=[SUMS[5]], add_sum=lambda x: x + SUM_STEPS // 6
    )
    # the noisy sum (562.5 + 10 minutes) over the unchanged count: 11.45, not the true 11.25
    assert released[0].measure == Mean(50, 11.4)
    unsummed = release_with_noise(big, GAUSS, lambda x: x)
    assert unsummed[0].measure == Mean(None, None)  # no sum to noise: withheld


def test_gates_read_true_counts_not_noisy_ones() -> None:
    """A true 4 (suppressed) stays suppressed when noise lifts it to 40; a true 40 is
    released as its noisy value, even when that value is not what the truth would round to."""
    assert release_with_noise([IndicatorResult("c", Count(4))], GAUSS, lambda x: 40)[
        0
    ].measure == Count(None)
    assert release_with_noise([IndicatorResult("c", Count(40))], GAUSS, lambda x: x + 7)[
        0
    ].measure == Count(45)


def test_opendp_noise_is_real_and_then_rounded() -> None:
    add = opendp_sampler(GAUSS)
    draws = {add(1000) for _ in range(50)}
    assert len(draws) > 5 and all(900 < d < 1100 for d in draws)
    released = release_with_noise(RESULTS, GAUSS, sums=SUMS)
    assert check_release(to_rows(released), GAUSS) == []
    mean = released[5].measure
    assert isinstance(mean, Mean) and mean.mean is not None and 0 <= mean.mean <= 60
    assert release_with_noise(RESULTS, LAPLACE, sums=SUMS) is not None


def test_cost_is_opendps_map_per_indicator_and_a_mean_costs_twice() -> None:
    """Six indicators, one a mean (count and sum), at scale 3: rho = 7 / (2 * 9); Laplace
    epsilon 1/2 each -> rho 1/8 each."""
    kinds = [Kind.PROPORTION, Kind.BREAKDOWN, Kind.BREAKDOWN, Kind.MEAN, Kind.RATE, Kind.COUNT]
    assert cost_rho(kinds, GAUSS) == pytest.approx(7 / 18)
    assert cost_rho(kinds, LAPLACE) == pytest.approx(7 * 0.5**2 / 2)
    assert cost_rho(kinds, DisclosurePolicy()) == 0.0


def test_noise_policy_needs_a_scale_and_can_only_tighten() -> None:
    with pytest.raises(PolicyError):
        DisclosurePolicy(noise=Noise.DISCRETE_GAUSSIAN)
    assert GAUSS.at_least_as_strict_as(DisclosurePolicy())
    assert not DisclosurePolicy().at_least_as_strict_as(GAUSS)
    assert not DisclosurePolicy(
        noise=Noise.DISCRETE_GAUSSIAN, noise_scale=1.0
    ).at_least_as_strict_as(GAUSS)
    assert DisclosurePolicy().to_data() == DisclosurePolicy(noise=Noise.NONE).to_data()
