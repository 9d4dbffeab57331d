"""Practice profiles and the most alike practices."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from test_comparisons_frame import BANDS, round_frame, row

from coordinator.comparisons import FRAME_COLUMNS, build_comparison
from coordinator.peers import (
    PracticeProfile,
    most_alike,
    nearest_peers,
    peer_label,
    practice_profiles,
)


def profile_rows(pid: str, bands: dict[str, int], imd: dict[str, int], size: int) -> list[dict]:
    rows = [row(pid, pid, "L", "profile.list_size", count=size)]
    for band in BANDS:
        for sex in ("female", "male"):
            c = bands.get(band, 0)
            rows.append(
                row(pid, pid, "L", f"profile.age_sex.{sex}.{band}", count=c, suppressed=c is None)
            )
    for decile, c in imd.items():
        rows.append(row(pid, pid, "L", f"profile.imd.{decile}", count=c))
    return rows


def test_shares_and_mean_decile_by_hand() -> None:
    # Per sex: 100 aged 10-14, 50 aged 15-19, 100 aged 20-24, 200 aged 40-44, 50 aged 85+.
    bands = {"10-14": 100, "15-19": 50, "20-24": 100, "40-44": 200, "85+": 50}
    imd = {"2": 300, "5": 600, "unknown": 100}
    frame = pd.DataFrame(profile_rows("A", bands, imd, 1000), columns=list(FRAME_COLUMNS))
    p = practice_profiles(frame)["A"]
    # Under 18: 100 + 3/5 of 50 = 130 of 500 per sex; 18-24: 20 + 100 = 120.
    assert p.share_under_18 == pytest.approx(130 / 500)
    assert p.share_18_24 == pytest.approx(120 / 500)
    assert p.share_65_plus == pytest.approx(50 / 500)
    assert p.mean_imd_decile == pytest.approx((2 * 300 + 5 * 600) / 900)  # unknown left out
    assert p.list_size == 1000


def test_suppressed_cells_are_left_out() -> None:
    bands = {"10-14": None, "40-44": 100}
    frame = pd.DataFrame(profile_rows("A", bands, {"3": 200}, 200), columns=list(FRAME_COLUMNS))
    p = practice_profiles(frame)["A"]
    assert p.share_under_18 == 0 and p.share_65_plus == 0
    assert p.complete


def prof(pid: str, size: int, u18: float, s1824: float, o65: float, imd: float) -> PracticeProfile:
    return PracticeProfile(pid, size, u18, s1824, o65, imd)


def test_most_alike_picks_the_obvious_twin() -> None:
    profiles = {
        p.practice_id: p
        for p in (
            prof("student", 15000, 0.10, 0.40, 0.05, 5.0),
            prof("campus", 14000, 0.11, 0.38, 0.06, 5.2),
            prof("rural", 3000, 0.18, 0.05, 0.35, 8.0),
            prof("coastal", 3500, 0.17, 0.06, 0.33, 7.5),
            prof("inner", 9000, 0.25, 0.12, 0.08, 1.5),
            prof("town", 8000, 0.21, 0.09, 0.18, 5.0),
        )
    }
    groups = most_alike(profiles, k=2)
    assert groups["student"].peer_ids[0] == "campus"
    assert groups["campus"].peer_ids[0] == "student"
    assert groups["rural"].peer_ids[0] == "coastal"
    assert groups["student"].distances[0] == groups["campus"].distances[0]  # symmetric
    assert all(pid not in g.peer_ids for pid, g in groups.items())


def test_incomplete_profiles_get_no_peers() -> None:
    profiles = {
        "a": prof("a", 1000, 0.2, 0.1, 0.1, 5),
        "b": prof("b", 1200, 0.2, 0.1, 0.1, 5),
        "c": PracticeProfile("c", 1000, None, None, None, None),
    }
    groups = most_alike(profiles, k=3)
    assert set(groups) == {"a", "b"} and groups["a"].peer_ids == ("b",)


def test_most_alike_in_a_realistic_round_is_mostly_mutual() -> None:
    c = build_comparison(round_frame())
    assert len(c.peer_groups) == 20
    assert all(len(g.peer_ids) == 7 for g in c.peer_groups.values())
    # The two student practices find each other first.
    assert c.peer_groups["P004"].peer_ids[0] == "P017"
    assert c.peer_groups["P017"].peer_ids[0] == "P004"
    mutual = sum(pid in c.peer_groups[g.peer_ids[0]].peer_ids for pid, g in c.peer_groups.items())
    assert mutual >= 18


def test_peers_are_anonymous_unless_named() -> None:
    c = build_comparison(round_frame())
    group = c.peer_groups["P001"]
    labels = [c.peer_label("P001", pid) for pid in group.peer_ids]
    assert labels == [f"Peer {ch}" for ch in "ABCDEFG"]
    named = build_comparison(round_frame(), peers_named=True)
    assert named.peer_label("P001", group.peer_ids[0]) == named.practices[group.peer_ids[0]].name


def test_peer_labels_past_z() -> None:
    assert peer_label(0) == "Peer A"
    assert peer_label(25) == "Peer Z"
    assert peer_label(26) == "Peer AA"


def test_peer_value_pools_peers_and_withholds_small_sets() -> None:
    c = build_comparison(round_frame())
    group = c.peer_groups["P001"]
    value = c.peer_value("P001", "flu_vacc_65")
    assert value is not None and value.published and value.contributing == 7
    vals = [c.indicators["flu_vacc_65"].practices[p] for p in group.peer_ids]
    expected = sum(v.numerator for v in vals) / sum(v.denominator for v in vals)
    assert value.value == pytest.approx(expected)
    small = build_comparison(round_frame(), peer_count=4)
    assert not small.peer_value("P001", "flu_vacc_65").published


def test_too_few_practices_form_no_peer_groups() -> None:
    frame = round_frame()
    frame = frame[frame["practice_id"].isin(["P001", "P002", "P003", "P004", "P005"])]
    c = build_comparison(frame)
    assert c.peer_groups == {}
    assert any("peer groups" in note for note in c.notes)


def test_a_feature_every_practice_shares_counts_for_nothing() -> None:
    # S18: a zero-SD feature becomes 0, so distances are those of the other four features.
    rng = np.random.default_rng(8)
    four = rng.normal(size=(9, 4))
    ids = [f"P{i}" for i in range(9)]
    with_constant = nearest_peers(ids, np.column_stack([four, np.full(9, 6.0)]), 3)
    without = nearest_peers(ids, four, 3)
    assert with_constant == without
    assert all(len(g.peer_ids) == 3 for g in without.values())
    assert nearest_peers(ids[:1], four[:1], 7)["P0"].peer_ids == ()  # k = min(k, n - 1)
