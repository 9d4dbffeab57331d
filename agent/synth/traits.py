"""What makes one synthetic practice unlike another.

A practice is drawn from an age profile (a student-heavy city list, a young urban list,
a suburban family list, a mixed list, an elderly rural list), and its deprivation,
prevalence, quality of care and ways of working are drawn around that profile, so that
peer comparisons between synthetic practices show real differences.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

AGE_PROFILES = ("student", "urban_young", "suburban_family", "mixed", "elderly_rural")
ROLES = ("gp", "nurse", "pharmacist", "hca", "other")

# England's registered population by 5-year band (0-4 ... 85-89, 90+), per cent.
_BASE_AGE = np.array(
    [5.4, 6.0, 6.2, 5.9, 5.9, 6.6, 6.9, 6.8, 6.5, 6.1, 6.6, 6.8, 6.2, 5.4, 5.1, 4.3, 2.9, 1.8, 1.1]
)
# Multipliers on those bands that give each profile its shape.
_PROFILE_SHAPE = {
    "student": {(3, 5): 5.0, (5, 7): 1.6, (13, 19): 0.35, (0, 3): 0.6},
    "urban_young": {(5, 9): 1.7, (0, 1): 1.3, (13, 19): 0.55},
    "suburban_family": {(0, 3): 1.35, (7, 11): 1.25, (4, 6): 0.7},
    "mixed": {},
    "elderly_rural": {(13, 19): 1.9, (4, 8): 0.55, (0, 3): 0.8},
}
# Where the profile's practices usually sit on the deprivation scale (1 = most deprived).
_PROFILE_IMD = {
    "student": 4.0,
    "urban_young": 3.5,
    "suburban_family": 6.5,
    "mixed": 5.0,
    "elderly_rural": 7.0,
}
_NAMES = (
    "Riverside", "Castle", "Market Street", "Parkview", "Church Lane", "Millbrook",
    "Station Road", "Northgate", "Oakwood", "Elm Tree", "Harbour", "Valley", "Abbey",
    "Westfield", "Hillside", "Canal Side", "Orchard", "Priory", "Bridge", "Meadow",
)  # fmt: skip
_KINDS = ("Surgery", "Medical Centre", "Health Centre")
_LOCALITIES = ("North", "South", "East", "West", "Central", "Coastal")


@dataclass(frozen=True)
class PracticeTraits:
    """The parameters of one synthetic practice (rates per patient per year)."""

    practice_id: str
    name: str
    locality: str
    list_size: int
    age_profile: str = "mixed"
    mean_imd: float = 5.0
    imd_spread: float = 1.8
    diabetes_factor: float = 1.0
    hypertension_factor: float = 1.0
    asthma_factor: float = 1.0
    hba1c_mean: float = 56.0
    systolic_mean: float = 130.0
    flu_uptake: float = 0.75
    smoking_recording: float = 0.55
    cervical_uptake: float = 0.70
    asthma_review: float = 0.60
    dna_rate: float = 0.05
    same_day_share: float = 0.35
    mean_lead_days: float = 8.0
    continuity: float = 0.5
    n_gps: int = 6
    gp_f2f_share: float = 0.55
    gp_f2f_minutes: float = 11.0
    skill_mix: tuple[float, float, float, float, float] = (0.55, 0.25, 0.07, 0.10, 0.03)
    antibiotic_rate: float = 0.35
    appointment_rate: float = 3.5
    event_rate: float = 7.0
    medication_rate: float = 4.0

    def __post_init__(self) -> None:
        if self.age_profile not in AGE_PROFILES:
            raise ValueError(f"age_profile must be one of {', '.join(AGE_PROFILES)}")
        if self.list_size < 1:
            raise ValueError("list_size must be at least 1")
        if len(self.skill_mix) != len(ROLES) or abs(sum(self.skill_mix) - 1) > 1e-6:
            raise ValueError(
                "skill_mix needs five shares (gp, nurse, pharmacist, hca, other) summing to 1"
            )

    def age_band_weights(self) -> np.ndarray:
        """Probability of each 5-year band (0-4 ... 90+) for this practice's list."""
        weights = _BASE_AGE.copy()
        for (lo, hi), factor in _PROFILE_SHAPE[self.age_profile].items():
            weights[lo:hi] *= factor
        return weights / weights.sum()


def random_traits(
    seed: int, *, index: int = 0, list_size: int = 8000, localities: int = 3
) -> PracticeTraits:
    """Traits for practice number ``index`` of a federation, reproducible from ``seed``."""
    rng = np.random.default_rng([seed, index, 0x7EA175])
    profile = AGE_PROFILES[int(rng.integers(len(AGE_PROFILES)))]

    def around(mean: float, sd: float, lo: float, hi: float) -> float:
        return float(np.clip(rng.normal(mean, sd), lo, hi))

    mean_imd = around(_PROFILE_IMD[profile], 1.5, 1.5, 9.5)
    deprived = (5.5 - mean_imd) / 4.5  # +1 most deprived, -1 least
    gp = around(0.55, 0.08, 0.35, 0.75)
    rest = rng.dirichlet([5.0, 1.5, 2.0, 0.6]) * (1 - gp)
    return PracticeTraits(
        practice_id=f"P{index + 1:03d}",
        name=f"{_NAMES[(seed + index) % len(_NAMES)]} {_KINDS[index % len(_KINDS)]}",
        locality=_LOCALITIES[index % max(1, min(localities, len(_LOCALITIES)))],
        list_size=list_size,
        age_profile=profile,
        mean_imd=mean_imd,
        imd_spread=around(1.8, 0.5, 0.8, 3.0),
        diabetes_factor=around(1.0 + 0.25 * deprived, 0.15, 0.5, 1.8),
        hypertension_factor=around(1.0 + 0.1 * deprived, 0.15, 0.5, 1.6),
        asthma_factor=around(1.0, 0.15, 0.6, 1.5),
        hba1c_mean=around(55.0 + 3 * deprived, 3.5, 46.0, 66.0),
        systolic_mean=around(130.0, 4.0, 120.0, 142.0),
        flu_uptake=around(0.76 - 0.06 * deprived, 0.07, 0.45, 0.92),
        smoking_recording=around(0.55, 0.15, 0.15, 0.9),
        cervical_uptake=around(
            0.70 - 0.05 * deprived - (0.08 if profile == "student" else 0), 0.07, 0.4, 0.85
        ),
        asthma_review=around(0.6, 0.12, 0.25, 0.9),
        dna_rate=around(
            0.05 + 0.015 * deprived + (0.02 if profile == "student" else 0), 0.015, 0.015, 0.14
        ),
        same_day_share=around(0.35, 0.1, 0.1, 0.7),
        mean_lead_days=around(8.0, 3.0, 2.0, 20.0),
        continuity=around(0.5 + (0.15 if profile == "elderly_rural" else 0), 0.12, 0.15, 0.9),
        # At least two GPs, so that continuity (UPC) can be anything below 1.
        n_gps=int(np.clip(round(list_size / 1500 * rng.uniform(0.7, 1.3)), 2, 40)),
        gp_f2f_share=around(0.55, 0.1, 0.25, 0.85),
        gp_f2f_minutes=around(11.0, 1.5, 7.0, 16.0),
        skill_mix=tuple(float(x) for x in np.r_[gp, rest]),  # type: ignore[arg-type]
        antibiotic_rate=around(0.35, 0.08, 0.15, 0.65),
        appointment_rate=around(3.5, 0.6, 2.0, 5.5),
    )
