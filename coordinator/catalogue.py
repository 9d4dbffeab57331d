"""The coordinator's indicator catalogue: titles, kinds, units and which way is better.

One table, as data: reports, the console and funnel flags all read direction from here.
Indicators a study adds (not in the standard set) get a spec inferred from their rows,
with neither direction better.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import pandas as pd

from fedpeer.measures import Kind

SKILL_MIX = "skill_mix"
SKILL_MIX_CATEGORIES = ("gp", "nurse", "pharmacist", "hca", "other")


class Direction(StrEnum):
    """Which way is better for an indicator."""

    HIGHER_IS_BETTER = "higher"
    LOWER_IS_BETTER = "lower"
    NEITHER = "neither"

    @property
    def higher_is_better(self) -> bool | None:
        """True, False, or None when neither way is better."""
        return {"higher": True, "lower": False}.get(self.value)


@dataclass(frozen=True)
class IndicatorSpec:
    """How the coordinator reads and presents one indicator."""

    id: str
    title: str
    kind: Kind
    direction: Direction
    unit: str = ""  # shown after the value; "%" means the value is shown as a percentage
    per: int = 1  # a rate's multiplier
    decimals: int = 1

    def format(self, value: float | None) -> str:
        """The value as a person reads it, or an em dash when there is none."""
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "—"
        if self.unit == "%":
            return f"{100 * value:.{self.decimals}f}%"
        text = f"{value:,.{self.decimals}f}"
        return f"{text} {self.unit}" if self.unit else text

    @property
    def scale(self) -> float:
        """The factor from numerator/denominator to the value."""
        return float(self.per) if self.kind is Kind.RATE else 1.0

    @property
    def has_funnel(self) -> bool:
        """Funnels need a chance model: proportions (binomial) and rates (Poisson)."""
        return self.kind in (Kind.PROPORTION, Kind.RATE)


_P, _H, _L, _N = (
    Kind.PROPORTION,
    Direction.HIGHER_IS_BETTER,
    Direction.LOWER_IS_BETTER,
    Direction.NEITHER,
)
# The standard set of INDICATORS.md, in the order reports show them; direction is data.
CATALOGUE: dict[str, IndicatorSpec] = {
    s.id: s
    for s in (
        IndicatorSpec("dm_hba1c_le58", "Diabetes: HbA1c 58 mmol/mol or less", _P, _H, "%"),
        IndicatorSpec(
            "hyp_bp_le140_90_u80", "Hypertension, under 80: BP 140/90 or less", _P, _H, "%"
        ),
        IndicatorSpec("asthma_review", "Asthma: reviewed in the last 12 months", _P, _H, "%"),
        IndicatorSpec("flu_vacc_65", "Flu vaccination, aged 65 and over", _P, _H, "%"),
        IndicatorSpec(
            "smoking_status_15", "Smoking status recorded, aged 15 and over", _P, _H, "%"
        ),
        IndicatorSpec("cervical_screen_25_49", "Cervical screening, women 25-49", _P, _H, "%"),
        IndicatorSpec("dna_rate", "Appointments missed (did not attend)", _P, _L, "%"),
        IndicatorSpec("seen_within_14d", "Seen within 14 days of booking", _P, _H, "%"),
        IndicatorSpec(
            "continuity_upc_gp", "GP continuity (UPC index, 0-1)", Kind.MEAN, _H, "", 1, 2
        ),
        IndicatorSpec("gp_f2f_minutes", "GP face-to-face appointment length", Kind.MEAN, _H, "min"),
        IndicatorSpec(SKILL_MIX, "Appointments by clinician role", Kind.BREAKDOWN, _N, "%"),
        IndicatorSpec(
            "antibiotic_items_per_1000",
            "Antibiotic items per 1,000 patients",
            Kind.RATE,
            _L,
            "",
            1000,
        ),
    )
}


def spec_for(indicator: str, rows: pd.DataFrame) -> IndicatorSpec:
    """The catalogue's spec, or one inferred from a study indicator's released rows."""
    if indicator in CATALOGUE:
        return CATALOGUE[indicator]
    if rows["mean"].notna().any() or (
        rows["count"].notna().any() and rows["numerator"].isna().all()
    ):
        return IndicatorSpec(indicator, indicator, Kind.MEAN, Direction.NEITHER, decimals=2)
    known = rows.dropna(subset=["numerator", "denominator", "value"])
    known = known[known["numerator"] > 0]
    if len(known) and not np.allclose(known["value"], known["numerator"] / known["denominator"]):
        per = round(float((known["value"] * known["denominator"] / known["numerator"]).median()))
        return IndicatorSpec(indicator, indicator, Kind.RATE, Direction.NEITHER, per=per)
    return IndicatorSpec(indicator, indicator, Kind.PROPORTION, Direction.NEITHER, "%")
