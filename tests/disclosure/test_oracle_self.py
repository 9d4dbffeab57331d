"""The oracle itself must be able to say "recoverable", or the properties prove nothing."""

from __future__ import annotations

from disclosure_oracle import recoverable


def test_single_unknown_in_a_sum_is_recoverable() -> None:
    eq = {"T": 1, "a": -1, "b": -1, "c": -1}
    assert recoverable([eq], {"b"}, {"b": 1})
    assert not recoverable([eq], {"b", "c"}, {"b": 1})


def test_complement_is_recoverable_across_two_equations() -> None:
    nums = {"N": 1, "n1": -1, "n2": -1}
    dens = {"D": 1, "d1": -1, "d2": -1}
    # n1, n2 unknown but d1, d2 known: n1 - n2 is not fixed, n1 + n2 is.
    assert recoverable([nums, dens], {"n1", "n2"}, {"n1": 1, "n2": 1})
    assert not recoverable([nums, dens], {"n1", "n2"}, {"d1": 1, "n1": -1})
