"""Properties of percentiles and pooled group values (Hypothesis)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from coordinator.comparisons import percentile_ranks
from coordinator.localities import Contribution, group_value

values = st.lists(st.integers(min_value=0, max_value=20), min_size=1, max_size=40)


@settings(derandomize=True, max_examples=200, deadline=None)
@given(values)
def test_mid_rank_percentiles_average_fifty_and_keep_order(xs: list[int]) -> None:
    ranks = percentile_ranks({str(i): float(x) for i, x in enumerate(xs)})
    assert all(0 < r < 100 for r in ranks.values())
    assert (
        sum(ranks.values()) / len(ranks) == 50.0
        or abs(sum(ranks.values()) / len(ranks) - 50) < 1e-9
    )
    for i, x in enumerate(xs):
        for j, y in enumerate(xs):
            if x < y:
                assert ranks[str(i)] < ranks[str(j)]
            if x == y:
                assert ranks[str(i)] == ranks[str(j)]


pairs = st.lists(
    st.tuples(st.integers(min_value=0, max_value=500), st.integers(min_value=1, max_value=500)),
    min_size=1,
    max_size=15,
)


@settings(derandomize=True, max_examples=200, deadline=None)
@given(pairs, st.integers(min_value=1, max_value=10))
def test_pooled_value_is_within_practice_values_and_withheld_below_minimum(
    raw: list[tuple[int, int]], minimum: int
) -> None:
    parts = [Contribution(str(i), min(n, d), d) for i, (n, d) in enumerate(raw)]
    group = group_value("g", parts, scale=1.0, group_minimum=minimum)
    assert group.published == (len(parts) >= minimum)
    if group.published:
        shares = [c.numerator / c.denominator for c in parts]
        assert min(shares) - 1e-12 <= group.value <= max(shares) + 1e-12
    else:
        assert group.value is None and "Withheld" in group.note
