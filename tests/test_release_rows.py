"""The row form of results: names, values derived from the counts held, CSV round trip."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest

from fedpeer.measures import Breakdown, Count, IndicatorResult, Mean, Proportion, Rate
from fedpeer.release import (
    CSV_COLUMNS,
    ResultRow,
    read_rows,
    rows_to_csv,
    to_rows,
    write_rows_file,
)


def test_proportion_value_is_computed_from_the_counts_it_holds() -> None:
    (row,) = to_rows([IndicatorResult("dm_hba1c_le58", Proportion(35, 50))])
    assert row == ResultRow("dm_hba1c_le58", "", 35, 50, None, None, 0.7, False)


def test_suppressed_numerator_gives_no_value_and_is_marked() -> None:
    (row,) = to_rows([IndicatorResult("flu_vacc_65", Proportion(None, 20))])
    assert row.suppressed and row.value is None and row.denominator == 20


def test_rate_is_per_thousand_and_mean_carries_count_and_mean() -> None:
    rows = to_rows(
        [
            IndicatorResult("antibiotic_items_per_1000", Rate(1500, 5000)),
            IndicatorResult("gp_f2f_minutes", Mean(120, 11.25)),
        ]
    )
    assert rows[0].value == 300.0
    assert (rows[1].count, rows[1].mean, rows[1].value) == (120, 11.25, 11.25)


def test_breakdown_has_a_row_per_category_and_a_total() -> None:
    mix = Breakdown((("gp", 50), ("nurse", 30), ("pharmacist", None), ("hca", 10), ("other", 0)))
    rows = to_rows([IndicatorResult("skill_mix", mix)])
    assert [r.category for r in rows] == ["gp", "nurse", "pharmacist", "hca", "other", "total"]
    assert rows[2].suppressed and rows[2].count is None
    # With a suppressed cell and no explicit total, the total is unknown, not a partial sum.
    assert rows[-1].count is None and rows[-1].suppressed


def test_profile_rows_are_named_as_in_indicators_md() -> None:
    rows = to_rows(
        [
            IndicatorResult("profile.list_size", Count(100)),
            IndicatorResult("profile.imd", Breakdown((("1", 40), ("unknown", 60)), total=100)),
        ]
    )
    assert [r.indicator for r in rows] == [
        "profile.list_size",
        "profile.imd.1",
        "profile.imd.unknown",
    ]
    assert all(r.category == "" for r in rows)
    assert rows[1].value == 0.4


def test_csv_round_trip_keeps_every_field() -> None:
    rows = to_rows(
        [
            IndicatorResult("dna_rate", Proportion(None, 400)),
            IndicatorResult("continuity_upc_gp", Mean(85, 0.612345678)),
            IndicatorResult("skill_mix", Breakdown((("gp", 5), ("nurse", 10)))),
        ]
    )
    text = rows_to_csv(rows)
    assert text.splitlines()[0] == ",".join(CSV_COLUMNS)
    back = read_rows(io.StringIO(text))
    assert [r.indicator for r in back] == [r.indicator for r in rows]
    assert back[0].suppressed and back[0].numerator is None and back[0].denominator == 400
    assert back[1].mean == round(0.612345678, 6)
    assert back[2].category == "gp" and back[2].count == 5


def test_a_failed_write_leaves_no_temporary_file_of_released_values(tmp_path: Path) -> None:
    def rows() -> Iterator[ResultRow]:
        yield ResultRow("flu_vacc_65", numerator=60, denominator=100, value=0.6)
        raise RuntimeError("the extract went away")

    with pytest.raises(RuntimeError):
        write_rows_file(rows(), tmp_path / "released.csv")
    target = tmp_path / "folder"
    target.mkdir()
    with pytest.raises(IsADirectoryError):
        write_rows_file(to_rows([IndicatorResult("flu_vacc_65", Proportion(60, 100))]), target)
    assert [p.name for p in tmp_path.iterdir()] == ["folder"]
