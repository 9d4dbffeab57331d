"""Comparisons stored when a round closes, and trends read from them (SQLite and PostgreSQL)."""

from __future__ import annotations

import datetime as dt
import zlib
from pathlib import Path

import pytest
import sqlalchemy as sa
from _report_rounds import CHANGED, MONTHS, PRACTICES, SAME, dna, hba1c, run_rounds

from coordinator import comparison_document
from coordinator.ca import CoordinatorHome
from coordinator.comparison_store import (
    comparison_for,
    has_stored_comparison,
    record_comparison,
    trends,
)
from coordinator.store import Store
from coordinator.tables import (
    comparison_documents,
    comparison_indicators,
    comparison_values,
    released_rows,
)
from fedpeer.errors import RoundError


async def test_closing_stores_the_comparison_and_trends_follow_the_definition(
    tmp_path: Path, db_url: str | None
) -> None:
    home = tmp_path / "coord"
    ids = await run_rounds(home, tmp_path, db_url, leave_open=True)
    store = Store(db_url or CoordinatorHome(home).database)
    try:
        first, second, third, still_open = ids
        # Closing stored each round's results, with the content hash of its definition.
        with store.engine.connect() as conn:
            stored = {
                (r.round_id, r.indicator): r.content_hash
                for r in conn.execute(sa.select(comparison_indicators))
            }
        assert stored[(first, "dm_hba1c_le58")] == SAME[0].content_hash
        assert stored[(third, "dm_hba1c_le58")] == CHANGED[0].content_hash
        assert stored[(third, "dna_rate")] == SAME[1].content_hash
        assert not has_stored_comparison(store, still_open)
        with pytest.raises(RoundError, match="is open: close it first"):
            record_comparison(store, still_open)

        series = trends(store, third)
        # The DNA rate kept its definition: one series over the three months.
        rate = series["dna_rate"]
        assert [p.as_of for p in rate.rounds] == list(MONTHS)
        assert rate.earlier_definition is None
        for pid, *_ in PRACTICES:
            expected = tuple(dna(pid, m)[0] / dna(pid, m)[1] for m in MONTHS)
            assert rate.values[pid] == pytest.approx(expected, rel=1e-12)
        # Seven practices are enough for every round's deciles, which bracket the values.
        for point in rate.rounds:
            assert len(point.deciles) == 9 and list(point.deciles) == sorted(point.deciles)
        # The HbA1c definition changed in the third round: its series starts again there.
        changed = series["dm_hba1c_le58"]
        assert [p.round_id for p in changed.rounds] == [third]
        assert changed.earlier_definition == MONTHS[1]
        pid = PRACTICES[0][0]
        h, hd = hba1c(pid, MONTHS[2])
        assert changed.values[pid] == pytest.approx((h / hd,))
        # Up to the second round, the old definition's series has both months.
        assert [p.as_of for p in trends(store, second)["dm_hba1c_le58"].rounds] == list(MONTHS[:2])
    finally:
        store.close()


async def test_a_round_closed_before_comparisons_were_stored_is_stored_on_demand(
    tmp_path: Path,
) -> None:
    home = tmp_path / "coord"
    ids = await run_rounds(home, tmp_path)
    store = Store(CoordinatorHome(home).database)
    try:
        with store.engine.begin() as conn:  # as a store upgraded from revision 0004 has it
            for table in (comparison_values, comparison_indicators, comparison_documents):
                conn.execute(table.delete().where(table.c.round_id == ids[0]))
        assert not has_stored_comparison(store, ids[0])
        assert [p.round_id for p in trends(store, ids[1])["dna_rate"].rounds] == [ids[1]]
        # Reading its comparison builds and stores it, for trends as well.
        _, comparison = comparison_for(store, ids[0])
        assert has_stored_comparison(store, ids[0])
        assert [p.round_id for p in trends(store, ids[1])["dna_rate"].rounds] == ids[:2]
        # What was stored is what the round's comparison says.
        pid = PRACTICES[3][0]
        ic = comparison.indicators["dna_rate"]
        with store.engine.connect() as conn:
            row = conn.execute(
                sa.select(comparison_values).where(
                    comparison_values.c.round_id == ids[0],
                    comparison_values.c.indicator == "dna_rate",
                    comparison_values.c.practice_id == pid,
                )
            ).one()
        assert row.value == pytest.approx(ic.practices[pid].value)
        assert row.percentile == pytest.approx(ic.practices[pid].percentile)
        assert row.status == str(ic.practices[pid].status)
        limits = ic.funnel.limits(ic.practices[pid].denominator)
        assert (row.lower_95, row.upper_998) == pytest.approx((limits.lower_95, limits.upper_998))
    finally:
        store.close()


async def test_a_closed_round_is_read_as_stored_never_recomputed(tmp_path: Path) -> None:
    home = tmp_path / "coord"
    ids = await run_rounds(home, tmp_path)
    store = Store(CoordinatorHome(home).database)
    try:
        first = ids[0]
        _, stored = comparison_for(store, first)
        # The document holds the whole comparison, exactly as it was built at closing.
        with store.engine.connect() as conn:
            document = conn.execute(
                sa.select(comparison_documents.c.document).where(
                    comparison_documents.c.round_id == first
                )
            ).scalar_one()
        assert comparison_document.load(document) == stored
        assert stored.round_label == first and stored.indicators["dna_rate"].funnel is not None
        # Rows changed under it (as a later version of the code might read them differently)
        # do not change what the round says: the stored comparison is read.
        with store.engine.begin() as conn:
            conn.execute(sa.update(released_rows).values(numerator=0))
        _, again = comparison_for(store, first)
        assert again == stored
        # A document of another version is not misread: the round is built again.
        with store.engine.begin() as conn:
            conn.execute(
                sa.update(comparison_documents).values(document=zlib.compress(b'{"version": 0}'))
            )
        _, rebuilt = comparison_for(store, first)
        assert rebuilt != stored
        assert {v.numerator for v in rebuilt.indicators["dna_rate"].practices.values()} <= {0, None}
    finally:
        store.close()


def test_the_document_keeps_every_kind_of_value() -> None:
    from test_comparisons_frame import round_frame

    from coordinator.comparisons import build_comparison

    built = build_comparison(round_frame(), round_label="2026-03", as_of=dt.date(2026, 3, 31))
    back = comparison_document.load(comparison_document.dump(built))
    assert back == built
    assert back.as_of == dt.date(2026, 3, 31)
    assert back.profiles == built.profiles
    assert all(back.profiles[p].age_sex == built.profiles[p].age_sex for p in built.profiles)
    with pytest.raises(comparison_document.DocumentError, match="not a stored comparison"):
        comparison_document.load(b"garbage")
