"""The disclosure rules on small, readable examples (the default policy unless named)."""

from __future__ import annotations

import pytest

from fedpeer.collection import decode_rows, encode_rows
from fedpeer.disclosure import check_release, release, round_count, round_mean
from fedpeer.measures import Breakdown, Count, IndicatorResult, Mean, Proportion, Rate
from fedpeer.policy import DisclosurePolicy, Rounding
from fedpeer.release import ResultRow, to_rows

DEFAULT = DisclosurePolicy()
MIDPOINT6 = DisclosurePolicy(rounding=Rounding.MIDPOINT6)


def one(measure: object, policy: DisclosurePolicy = DEFAULT) -> object:
    (out,) = release([IndicatorResult("i", measure)], policy)  # type: ignore[arg-type]
    return out.measure


@pytest.mark.parametrize(
    ("true", "released"),
    [(0, 0), (1, None), (7, None), (8, 10), (12, 10), (13, 15), (17, 15), (18, 20), (1002, 1000)],
)
def test_counts_are_suppressed_when_small_and_rounded_to_five(
    true: int, released: int | None
) -> None:
    assert round_count(true, DEFAULT) == released


@pytest.mark.parametrize(
    ("true", "released"),
    [(0, 0), (3, None), (7, None), (8, 9), (12, 9), (13, 15), (18, 15), (19, 21), (24, 21)],
)
def test_midpoint6_gives_the_midpoint_of_each_band_of_six(true: int, released: int | None) -> None:
    assert round_count(true, MIDPOINT6) == released


def test_rounding_down_into_the_small_range_is_suppressed() -> None:
    assert round_count(11, DisclosurePolicy(threshold=10)) is None
    assert round_count(13, DisclosurePolicy(threshold=10)) == 15


def test_proportion_numerator_is_suppressed_when_its_complement_is_small() -> None:
    assert one(Proportion(95, 100)) == Proportion(None, 100)
    assert one(Proportion(92, 100)) == Proportion(90, 100)


def test_zero_of_a_tiny_denominator_is_withheld() -> None:
    """'None of the 3 patients' tells about all 3: the denominator and its complement are small."""
    assert one(Proportion(0, 3)) == Proportion(None, None)
    assert one(Proportion(0, 40)) == Proportion(0, 40)


def test_released_complement_is_never_small_either() -> None:
    """22 -> 20 and 14 -> 15 would show a complement of 5; the numerator is withheld."""
    assert one(Proportion(14, 22)) == Proportion(None, 20)


def test_mean_needs_eight_and_is_rounded_to_three_significant_figures() -> None:
    assert one(Mean(7, 11.25)) == Mean(None, None)
    assert one(Mean(8, 11.257)) == Mean(10, 11.3)
    assert one(Mean(120, 0.73456)) == Mean(120, 0.735)
    assert round_mean(123.456) == 123.0


def test_rate_over_a_suppressed_population_is_withheld() -> None:
    assert one(Rate(40, 5)) == Rate(None, None)
    assert one(Rate(1502, 5003)) == Rate(1500, 5005)


def test_single_small_cell_of_a_breakdown_takes_the_next_smallest_with_it() -> None:
    b = Breakdown((("gp", 100), ("nurse", 50), ("pharmacist", 3), ("hca", 20), ("other", 0)))
    assert one(b) == Breakdown(
        (("gp", 100), ("nurse", 50), ("pharmacist", None), ("hca", None), ("other", 0)), None
    )


def test_two_small_cells_protect_each_other_and_total_is_the_sum_when_nothing_is_withheld() -> None:
    b = Breakdown((("a", 100), ("b", 3), ("c", 4)))
    assert one(b) == Breakdown((("a", 100), ("b", None), ("c", None)), None)
    assert one(Breakdown((("a", 101), ("b", 52)))) == Breakdown((("a", 100), ("b", 50)), 150)


def test_unlisted_remainder_of_the_list_is_protected() -> None:
    """3 patients of unknown sex: list size minus the age-sex cells would show them."""
    b = Breakdown((("female.0-4", 30), ("male.0-4", 40), ("female.5-9", 50)), 123)
    out = one(b)
    assert [c for _, c in out.cells].count(None) == 2  # type: ignore[attr-defined]


def test_strata_partition_the_whole_practice() -> None:
    results = [
        IndicatorResult("flu_vacc_65", Proportion(60, 100)),
        IndicatorResult("flu_vacc_65", Proportion(3, 20), "female.65-69"),
        IndicatorResult("flu_vacc_65", Proportion(57, 80), "male.65-69"),
    ]
    whole, female, male = (r.measure for r in release(results, DEFAULT))
    assert whole == Proportion(60, 100)
    assert female.numerator is None and male.numerator is None  # type: ignore[union-attr]


def test_suppressed_whole_is_not_left_recoverable_from_released_strata() -> None:
    results = [
        IndicatorResult("x", Proportion(95, 100)),  # complement 5: numerator withheld
        IndicatorResult("x", Proportion(45, 50), "a"),
        IndicatorResult("x", Proportion(50, 50), "b"),
    ]
    out = release(results, DEFAULT)
    assert sum(r.measure.numerator is None for r in out) >= 2  # type: ignore[union-attr]
    assert check_release(to_rows(out), DEFAULT) == []


def test_release_refuses_already_released_measures() -> None:
    with pytest.raises(ValueError, match="raw measure"):
        release([IndicatorResult("i", Count(None))], DEFAULT)


@pytest.mark.parametrize(
    ("row", "column", "rule"),
    [
        (ResultRow("i", count=5), "count", "small count released"),
        (ResultRow("i", count=12), "count", "count not rounded"),
        (ResultRow("i", numerator=95, denominator=100), "numerator", "complement is a small count"),
        (ResultRow("i", numerator=10, denominator=None), "numerator", "suppressed denominator"),
        (ResultRow("i", count=None, mean=3.0), "mean", "too small a count"),
    ],
)
def test_check_release_names_the_rule_and_place(row: ResultRow, column: str, rule: str) -> None:
    (violation,) = check_release([row], DEFAULT)
    assert violation.column == column and rule in violation.rule
    assert "95" not in str(violation) and "12" not in str(violation)


def test_check_release_finds_a_recoverable_cell_and_a_wrong_total() -> None:
    rows = [
        ResultRow("skill_mix", "gp", count=100),
        ResultRow("skill_mix", "hca", count=None, suppressed=True),
        ResultRow("skill_mix", "total", count=110),
    ]
    rules = {(v.category, v.rule) for v in check_release(rows, DEFAULT)}
    assert ("hca", "the only suppressed cell: recoverable from the total") in rules
    assert ("total", "total is not the sum of released cells") in rules


def test_check_release_finds_a_recoverable_profile_cell() -> None:
    rows = [
        ResultRow("profile.list_size", count=100),
        ResultRow("profile.age_sex.female.0-4", count=None, suppressed=True),
        ResultRow("profile.age_sex.male.0-4", count=95),
    ]
    (violation,) = check_release(rows, DEFAULT)
    assert violation.category == "profile.age_sex.female.0-4"


def test_check_release_finds_a_lone_suppressed_stratum() -> None:
    rows = [
        ResultRow("x", "", numerator=60, denominator=100),
        ResultRow("x", "a", numerator=None, denominator=20, suppressed=True),
        ResultRow("x", "b", numerator=55, denominator=80),
    ]
    (violation,) = check_release(rows, DEFAULT)
    assert (violation.category, violation.column) == ("a", "numerator")


def test_midpoint6_release_passes_its_own_check_and_fails_the_nearest_five_check() -> None:
    rows = to_rows(release([IndicatorResult("i", Count(100))], MIDPOINT6))
    assert rows[0].count == 99
    assert check_release(rows, MIDPOINT6) == []
    assert check_release(rows, DEFAULT) != []


def test_released_rows_travel_as_canonical_bytes_and_round_trip() -> None:
    rows = to_rows(
        release(
            [IndicatorResult("b", Proportion(40, 100)), IndicatorResult("a", Mean(50, 1 / 3))],
            DEFAULT,
        )
    )
    data = encode_rows(rows)
    assert b" " not in data and data.startswith(b'[{"category":"","count":null')
    assert decode_rows(data) == tuple(rows)
    assert encode_rows(list(decode_rows(data))) == data


@pytest.mark.parametrize(
    "row",
    [
        ResultRow("i", numerator=10, denominator=100, value=0.1234),  # from true counts
        ResultRow("i", numerator=None, denominator=100, value=0.12, suppressed=True),
        ResultRow("i", count=100, mean=None, value=103.0),
    ],
)
def test_a_value_not_computed_from_released_counts_is_a_violation(row: ResultRow) -> None:
    (violation,) = check_release([row], DEFAULT)
    assert violation.column == "value"


def test_breakdown_values_are_shares_of_the_released_total() -> None:
    good = to_rows(release([IndicatorResult("b", Breakdown((("a", 101), ("b", 52))))], DEFAULT))
    assert check_release(good, DEFAULT) == []
    leaked = [
        ResultRow("b", "a", count=100, value=101 / 153),
        ResultRow("b", "b", count=50, value=52 / 153),
        ResultRow("b", "total", count=150),
    ]
    assert {v.category for v in check_release(leaked, DEFAULT)} == {"a", "b"}
    rate = to_rows(release([IndicatorResult("r", Rate(1502, 5003))], DEFAULT))
    assert check_release(rate, DEFAULT) == []
