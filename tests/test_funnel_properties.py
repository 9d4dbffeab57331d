"""Properties of funnel limits over many targets and denominators (Hypothesis)."""

from __future__ import annotations

import math
from statistics import NormalDist

from hypothesis import given, settings
from hypothesis import strategies as st

from coordinator.funnel import Distribution, FunnelModel

targets = st.floats(min_value=0.01, max_value=0.99)
sizes = st.integers(min_value=1, max_value=20_000)


@settings(derandomize=True, max_examples=150, deadline=None)
@given(targets, sizes)
def test_binomial_limits_are_ordered_and_in_range(p: float, n: int) -> None:
    lim = FunnelModel(Distribution.BINOMIAL, p).limits(n)
    assert 0 <= lim.lower_998 <= lim.lower_95 <= lim.upper_95 <= lim.upper_998 <= 1
    if n * p * (1 - p) >= 1:
        # With almost no expected events the 97.5% quantile can be 0 events, below target.
        assert lim.lower_95 <= p <= lim.upper_95


@settings(derandomize=True, max_examples=100, deadline=None)
@given(targets, st.integers(min_value=10, max_value=5_000))
def test_binomial_limits_narrow_with_size(p: float, n: int) -> None:
    small = FunnelModel(Distribution.BINOMIAL, p).limits(n)
    large = FunnelModel(Distribution.BINOMIAL, p).limits(4 * n)
    assert large.upper_998 - large.lower_998 <= small.upper_998 - small.lower_998 + 1e-12


@settings(derandomize=True, max_examples=100, deadline=None)
@given(targets, st.integers(min_value=100, max_value=50_000))
def test_binomial_limits_near_normal_when_counts_are_large(p: float, n: int) -> None:
    variance = p * (1 - p) / n
    if n * p * (1 - p) < 100:
        return
    normal = p + NormalDist().inv_cdf(0.999) * math.sqrt(variance)
    upper = FunnelModel(Distribution.BINOMIAL, p).limits(n).upper_998
    # Skewness and the discreteness of counts allow a little more than a count's width.
    assert abs(upper - normal) < 0.3 * math.sqrt(variance) + 1 / n


@settings(derandomize=True, max_examples=100, deadline=None)
@given(st.floats(min_value=1, max_value=2_000), st.integers(min_value=50, max_value=50_000))
def test_poisson_limits_are_ordered(rate: float, registered: int) -> None:
    lim = FunnelModel(Distribution.POISSON, rate, per=1000).limits(registered)
    assert 0 <= lim.lower_998 <= lim.lower_95 <= lim.upper_95 <= lim.upper_998
    if rate * registered / 1000 >= 1:
        assert lim.lower_95 <= rate <= lim.upper_95
