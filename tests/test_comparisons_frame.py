"""A realistic released-results frame for a round, as the store hands it to comparisons.

Twenty practices in four localities (one of them with only three practices, below the
group minimum), of varied size and population, with counts rounded to 5 and small ones
suppressed as the default disclosure policy does. Imported by the other comparison,
funnel, peer and report tests.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from coordinator.comparisons import FRAME_COLUMNS

BANDS = [f"{a}-{a + 4}" for a in range(0, 85, 5)] + ["85+"]
LOCALITIES = ("North", "South", "East", "West")
SMALL = 7
BASE = 5


def release(count: float) -> int | None:
    """Round to 5 and suppress 1..7, as the default policy does."""
    count = int(count)
    if 1 <= count <= SMALL:
        return None
    return BASE * math.floor(count / BASE + 0.5)


def row(pid: str, name: str, locality: str, indicator: str, **values: object) -> dict:
    """One frame row with every column present."""
    base = dict.fromkeys(FRAME_COLUMNS)
    base.update(practice_id=pid, practice_name=name, locality=locality, indicator=indicator)
    base.update(category="", suppressed=False)
    base.update(values)
    return base


def proportion_row(pid, name, loc, indicator, numerator, denominator) -> dict:
    """A released proportion row: both counts rounded, numerator suppressed when close."""
    den = release(denominator)
    num = release(numerator)
    if den is None or num is None or 1 <= denominator - numerator <= SMALL:
        num = None
    value = None if num is None or not den else num / den
    return row(
        pid,
        name,
        loc,
        indicator,
        numerator=num,
        denominator=den,
        value=value,
        suppressed=num is None or den is None,
    )


def age_weights(kind: str) -> np.ndarray:
    """Relative size of each 5-year band for a kind of practice population."""
    ages = np.arange(0, 90, 5)
    weights = np.exp(-((ages - 40) ** 2) / (2 * 30**2))
    if kind == "student":
        weights[(ages >= 15) & (ages < 30)] *= 6
    elif kind == "elderly":
        weights[ages >= 60] *= 3
        weights[ages < 20] *= 0.6
    elif kind == "family":
        weights[ages < 15] *= 2
    return weights / weights.sum()


def practice_frame(
    pid: str,
    name: str,
    loc: str,
    size: int,
    kind: str,
    imd: float,
    rng: np.random.Generator,
    quality: float = 0.0,
) -> list[dict]:
    """Every released row of one practice's submission."""
    rows = [row(pid, name, loc, "profile.list_size", count=release(size), value=release(size))]
    weights = age_weights(kind) * np.exp(rng.normal(0, 0.08, len(BANDS)))
    weights /= weights.sum()
    for sex in ("female", "male"):
        for band, w in zip(BANDS, weights, strict=True):
            c = release(size * w / 2)
            rows.append(
                row(pid, name, loc, f"profile.age_sex.{sex}.{band}", count=c, suppressed=c is None)
            )
    decile_w = np.exp(-((np.arange(1, 11) - imd) ** 2) / 2.0)
    decile_w /= decile_w.sum()
    for d in range(1, 11):
        c = release(size * 0.97 * decile_w[d - 1])
        rows.append(row(pid, name, loc, f"profile.imd.{d}", count=c, suppressed=c is None))
    rows.append(row(pid, name, loc, "profile.imd.unknown", count=release(size * 0.03)))

    def logistic(x: float) -> float:
        return 1 / (1 + math.exp(-x))

    old = weights[13:].sum() * size
    specs = {
        "dm_hba1c_le58": (size * 0.07, 0.65),
        "hyp_bp_le140_90_u80": (size * 0.12, 0.70),
        "asthma_review": (size * 0.04, 0.55),
        "flu_vacc_65": (old, 0.78),
        "smoking_status_15": (size * 0.85, 0.60),
        "cervical_screen_25_49": (size * 0.18, 0.72),
        "dna_rate": (size * 4.5, 0.05),
        "seen_within_14d": (size * 4.0, 0.80),
    }
    for indicator, (den, p) in specs.items():
        direction = -1 if indicator == "dna_rate" else 1
        true_p = logistic(math.log(p / (1 - p)) + direction * quality + rng.normal(0, 0.15))
        n = int(den)
        rows.append(proportion_row(pid, name, loc, indicator, rng.binomial(n, true_p), n))
    upc_n = release(size * 0.02)
    rows.append(
        row(
            pid,
            name,
            loc,
            "continuity_upc_gp",
            count=upc_n,
            mean=None if upc_n is None else round(0.5 + 0.1 * quality + rng.normal(0, 0.05), 4),
        )
    )
    rows.append(
        row(
            pid,
            name,
            loc,
            "gp_f2f_minutes",
            count=release(size * 1.2),
            mean=round(10 + rng.normal(0, 1.2), 2),
        )
    )
    items = rng.poisson(size * 0.6 * math.exp(rng.normal(0, 0.15)))
    num, den = release(items), release(size)
    rows.append(
        row(
            pid,
            name,
            loc,
            "antibiotic_items_per_1000",
            numerator=num,
            denominator=den,
            value=None if num is None else 1000 * num / den,
        )
    )
    base_mix = np.array([0.45, 0.25, 0.08, 0.15, 0.002]) * np.exp(rng.normal(0, 0.2, 5))
    mix = dict(
        zip(("gp", "nurse", "pharmacist", "hca", "other"), base_mix / base_mix.sum(), strict=True)
    )
    appointments = size * 4
    released = {cat: release(appointments * share) for cat, share in mix.items()}
    for cat, c in released.items():
        rows.append(row(pid, name, loc, "skill_mix", category=cat, count=c, suppressed=c is None))
    total = sum(c for c in released.values() if c is not None)
    rows.append(row(pid, name, loc, "skill_mix", category="total", count=total))
    return rows


# (name, locality, list size, population kind, mean IMD decile, quality)
PRACTICES = [
    ("Riverside Surgery", "North", 12400, "general", 5, 0.3),
    ("Hill Top Medical Centre", "North", 6100, "elderly", 7, 0.0),
    ("Castle Street Practice", "North", 9800, "general", 3, -0.2),
    ("The Student Health Centre", "North", 17800, "student", 5, -0.1),
    ("Meadow View Surgery", "North", 3100, "elderly", 8, 0.4),
    ("Harbour Lane Practice", "South", 8200, "family", 2, -0.5),
    ("Seaview Medical Group", "South", 15600, "elderly", 6, 0.1),
    ("Old Mill Surgery", "South", 4700, "general", 4, 0.0),
    ("Saint Anne's Health Centre", "South", 11000, "family", 2, -0.3),
    ("Parkway Family Practice", "South", 7300, "family", 3, 0.2),
    ("Bridge End Surgery", "East", 5600, "general", 6, 0.1),
    ("Orchard Road Practice", "East", 9100, "elderly", 9, 0.5),
    ("Quayside Medical Centre", "East", 13200, "general", 4, -0.1),
    ("Foxglove Surgery", "East", 2600, "elderly", 9, 0.2),
    ("Kingsway Health", "East", 16900, "family", 1, -0.6),
    ("Elm Tree Surgery", "East", 6800, "general", 5, 0.0),
    ("Campus Medical Practice", "East", 14500, "student", 4, 0.0),
    ("Willow Bank Surgery", "West", 4300, "general", 7, 0.1),
    ("Ashby Road Practice", "West", 7600, "family", 3, -0.2),
    ("Moorland Surgery", "West", 2100, "elderly", 8, 0.3),
]


def round_frame(seed: int = 7) -> pd.DataFrame:
    """The released results of a round of twenty practices."""
    rng = np.random.default_rng(seed)
    rows = []
    for i, (name, loc, size, kind, imd, quality) in enumerate(PRACTICES, start=1):
        rows += practice_frame(f"P{i:03d}", name, loc, size, kind, imd, rng, quality)
    frame = pd.DataFrame(rows, columns=list(FRAME_COLUMNS))
    # Small numbers as disclosure control leaves them: Moorland's asthma review numerator
    # (denominator minus numerator was 1..7) and Foxglove's continuity mean (count < 8).
    for pid, indicator, columns in SUPPRESSED:
        at = (frame["practice_id"] == pid) & (frame["indicator"] == indicator)
        frame.loc[at, [*columns, "value"]] = None
        frame.loc[at, "suppressed"] = True
    return frame


SUPPRESSED = [
    ("P020", "asthma_review", ["numerator"]),
    ("P014", "continuity_upc_gp", ["count", "mean"]),
]


def test_frame_is_released_data() -> None:
    frame = round_frame()
    counts = pd.concat([frame["numerator"], frame["denominator"], frame["count"]]).dropna()
    assert (counts.astype(int) % BASE == 0).all()
    assert not counts.between(1, SMALL).any()
    assert frame["practice_id"].nunique() == len(PRACTICES)
    assert (frame["locality"] == "West").sum() > 0
