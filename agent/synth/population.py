"""The patients of a synthetic practice and their long-term conditions, as numpy arrays.

Dates are integer day numbers (days since 1970-01-01) throughout, so that every step is
a vectorised array operation; they become Arrow dates only when written.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from agent.synth.traits import PracticeTraits

YEAR = 365.25
NO_DATE = np.iinfo(np.int32).max  # "no end date" in arithmetic; written as NULL

# Rough prevalence by age (upper bound of the band, exclusive), before practice factors.
_DIABETES_BY_AGE = ((17, 0.003), (40, 0.015), (60, 0.07), (80, 0.16), (200, 0.17))
_HYPERTENSION_BY_AGE = ((30, 0.004), (45, 0.04), (60, 0.15), (75, 0.35), (200, 0.55))


@dataclass
class Population:
    """One row per patient ever registered (index = position in every array)."""

    ids: np.ndarray  # str pseudonyms
    sex: np.ndarray  # 0 female, 1 male, 2 unknown
    dob: np.ndarray
    dod: np.ndarray  # NO_DATE when alive
    reg_from: np.ndarray
    reg_to: np.ndarray  # NO_DATE when still registered
    imd: np.ndarray  # 0 when unknown (written as NULL)
    age: np.ndarray  # completed-ish years on as_of (float)
    deprived: np.ndarray  # +1 most deprived .. -1 least
    obs_start: np.ndarray  # first day records are generated for
    obs_end: np.ndarray  # last day (as_of, or the end of registration, or death)
    diabetes: np.ndarray  # diagnosis day or -1
    hypertension: np.ndarray
    asthma: np.ndarray
    diabetes_resolved: np.ndarray  # resolution day or -1
    hypertension_resolved: np.ndarray
    asthma_resolved: np.ndarray

    @property
    def asthma_active(self) -> np.ndarray:
        """Diagnosed with asthma and not resolved."""
        return (self.asthma >= 0) & (self.asthma_resolved < 0)

    def __len__(self) -> int:
        return len(self.ids)


def by_age(table: tuple[tuple[int, float], ...], age: np.ndarray) -> np.ndarray:
    """Look up an age-banded rate for every patient."""
    bounds = np.array([b for b, _ in table])
    rates = np.array([r for _, r in table])
    return rates[np.searchsorted(bounds, age, side="right")]


def make_population(
    rng: np.random.Generator, traits: PracticeTraits, as_of_day: int, odd: float
) -> Population:
    """Patients, with their conditions' diagnosis and resolution days."""
    n_left = round(traits.list_size * 0.08)
    n_dead = round(traits.list_size * 0.03)
    n = traits.list_size + n_left + n_dead
    status = np.r_[np.zeros(traits.list_size, int), np.ones(n_left, int), np.full(n_dead, 2)]
    rng.shuffle(status)

    band = rng.choice(19, size=n, p=traits.age_band_weights())
    age = band * 5 + rng.uniform(0, 5, n) + np.where(band == 18, rng.exponential(3, n), 0)
    age = np.where(status == 2, rng.uniform(55, 100, n), np.minimum(age, 104))
    dob = (as_of_day - age * YEAR).astype(np.int64)
    # Practice systems often give only the month of birth: the first of the month.
    month_start = (
        dob.astype("datetime64[D]").astype("datetime64[M]").astype("datetime64[D]").astype(np.int64)
    )
    dob = np.where(rng.random(n) < 0.15, month_start, dob)
    sex = rng.choice(3, size=n, p=[0.505, 0.49, 0.005])

    end = np.where(status > 0, as_of_day - rng.uniform(1, 5 * YEAR, n).astype(np.int64), NO_DATE)
    end = np.maximum(end, dob + 1)
    last = np.minimum(end, as_of_day)
    years_here = rng.uniform(0, 1, n) ** 1.5 * np.minimum(age, 35) * YEAR
    reg_from = np.maximum(dob, last - years_here.astype(np.int64))
    dod = np.where(status == 2, end, NO_DATE)
    reg_to = np.where(
        status == 1, end, np.where((status == 2) & (rng.random(n) < 0.6), end, NO_DATE)
    )

    imd = np.clip(np.rint(rng.normal(traits.mean_imd, traits.imd_spread, n)), 1, 10).astype(
        np.int64
    )
    deprived = (5.5 - imd) / 4.5
    imd = np.where(rng.random(n) < 0.03, 0, imd)

    # Rare data-quality oddities of real extracts, counted by the agent, never fatal.
    flip = (status == 1) & (rng.random(n) < 5 * odd)
    reg_from, reg_to = np.where(flip, reg_to, reg_from), np.where(flip, reg_from, reg_to)
    imd = np.where(rng.random(n) < odd, 11, imd)
    weird = rng.random(n) < 0.5 * odd
    dod = np.where(weird, dob - 30, dod)

    obs_end = np.minimum(np.minimum(np.where(reg_to == NO_DATE, as_of_day, reg_to), dod), as_of_day)
    obs_end = np.maximum(obs_end, dob)
    obs_start = np.maximum(dob, as_of_day - int(10 * YEAR))
    obs_start = np.minimum(obs_start, obs_end)

    ids = np.array([f"p{i:06d}" for i in rng.permutation(n) + 1])

    def onset(mask: np.ndarray, min_age: float) -> np.ndarray:
        lo = np.maximum(obs_start, dob + int(min_age * YEAR))
        lo = np.maximum(lo, as_of_day - int(20 * YEAR))
        day = lo + (rng.random(n) * np.maximum(obs_end - lo, 0)).astype(np.int64)
        return np.where(mask & (lo <= obs_end), day, -1)

    def resolved(diag: np.ndarray, p: float) -> np.ndarray:
        res = (diag >= 0) & (rng.random(n) < p)
        return np.where(res, diag + (rng.random(n) * (obs_end - diag)).astype(np.int64), -1)

    boost = 1 + 0.3 * deprived
    diabetes = onset(
        rng.random(n) < by_age(_DIABETES_BY_AGE, age) * traits.diabetes_factor * boost, 1
    )
    hypertension = onset(
        rng.random(n) < by_age(_HYPERTENSION_BY_AGE, age) * traits.hypertension_factor * boost, 18
    )
    asthma = onset(rng.random(n) < 0.075 * traits.asthma_factor * (1 + 0.15 * deprived), 2)
    dm_res, htn_res, asthma_res = (
        resolved(diabetes, 0.03),
        resolved(hypertension, 0.04),
        resolved(asthma, 0.12),
    )
    return Population(
        ids=ids,
        sex=sex,
        dob=dob,
        dod=dod,
        reg_from=reg_from,
        reg_to=reg_to,
        imd=imd,
        age=age,
        deprived=deprived,
        obs_start=obs_start,
        obs_end=obs_end,
        diabetes=diabetes,
        hypertension=hypertension,
        asthma=asthma,
        diabetes_resolved=dm_res,
        hypertension_resolved=htn_res,
        asthma_resolved=asthma_res,
    )
