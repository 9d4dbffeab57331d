"""Clinical events, medication items and appointments for a synthetic population.

Every table is built as a few numpy arrays per kind of record (who, which day, which
code, what value) and concatenated; nothing loops over patients or rows in Python.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from agent.synth import codes
from agent.synth.population import YEAR, Population
from agent.synth.traits import PracticeTraits


@dataclass
class Coded:
    """Rows of one table under construction: patient index, day, code index, value."""

    vocabulary: list[str]
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=list)

    def code(self, value: str) -> int:
        """The index of a code in the vocabulary, adding it if new."""
        if value not in self.vocabulary:
            self.vocabulary.append(value)
        return self.vocabulary.index(value)

    def add(
        self,
        who: np.ndarray,
        day: np.ndarray,
        code: np.ndarray | int,
        value: np.ndarray | None = None,
    ) -> None:
        """Append rows (``code`` one index for all, or one per row)."""
        size = len(who)
        self.parts.append(
            (
                who.astype(np.int32),
                day.astype(np.int32),
                np.broadcast_to(np.asarray(code, dtype=np.int32), size),
                np.full(size, np.nan) if value is None else value.astype(np.float64),
            )
        )

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Everything added, concatenated."""
        if not self.parts:
            empty = np.array([], dtype=np.int32)
            return empty, empty, empty, np.array([], dtype=np.float64)
        return tuple(np.concatenate(col) for col in zip(*self.parts, strict=True))  # type: ignore[return-value]


def spread(
    rng: np.random.Generator, counts: np.ndarray, lo: np.ndarray, hi: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``counts[i]`` days for patient ``i``, uniform in ``lo[i]..hi[i]`` (none if empty)."""
    counts = np.where(hi >= lo, counts, 0)
    who = np.repeat(np.arange(len(counts)), counts)
    day = lo[who] + (rng.random(len(who)) * (hi[who] - lo[who] + 1)).astype(np.int64)
    return who, day


def pick(rng: np.random.Generator, weights: np.ndarray | list[float], size: int) -> np.ndarray:
    """Indices drawn with the given (unnormalised) weights."""
    w = np.asarray(weights, dtype=float)
    return rng.choice(len(w), size=size, p=w / w.sum())


def clinical_events(
    rng: np.random.Generator,
    pop: Population,
    t: PracticeTraits,
    as_of_day: int,
    period_start: int,
    odd: float,
) -> Coded:
    """Diagnoses, measurements, vaccinations, screening, reviews, and noise."""
    ev = Coded([])
    n = len(pop)
    everyone = np.arange(n)

    for diag, res, coded, weights, resolved_code in (
        (pop.diabetes, pop.diabetes_resolved, codes.DIABETES, codes.DIABETES_WEIGHTS,
         codes.DIABETES_RESOLVED),
        (pop.hypertension, pop.hypertension_resolved, codes.HYPERTENSION,
         codes.HYPERTENSION_WEIGHTS, codes.HYPERTENSION_RESOLVED),
    ):  # fmt: skip
        who = everyone[diag >= 0]
        vocab = np.array([ev.code(c) for c in coded])
        ev.add(who, diag[who], vocab[pick(rng, list(weights), len(who))])
        who = everyone[res >= 0]
        ev.add(who, res[who], ev.code(resolved_code))
    who = everyone[pop.asthma >= 0]
    ev.add(who, pop.asthma[who], ev.code(codes.ASTHMA))
    who = everyone[pop.asthma_resolved >= 0]
    ev.add(who, pop.asthma_resolved[who], ev.code(codes.ASTHMA_RESOLVED))

    three_years = pop.obs_end - int(3 * YEAR)
    # HbA1c: diabetics tested about twice a year; control varies by practice and patient.
    has_dm = pop.diabetes >= 0
    who, day = spread(
        rng,
        np.where(has_dm, rng.poisson(6.5, n), 0),
        np.maximum(pop.diabetes, three_years),
        pop.obs_end,
    )
    level = rng.normal(t.hba1c_mean + 4 * pop.deprived, 11, n)
    ev.add(who, day, ev.code(codes.HBA1C), np.clip(np.rint(rng.normal(level[who], 5)), 25, 160))

    # Blood pressure: systolic and diastolic recorded together, under either code of each.
    has_htn = pop.hypertension >= 0
    bp_rate = np.where(has_htn, 6.0, np.where(pop.age >= 40, 1.0, 0.1))
    who, day = spread(rng, rng.poisson(bp_rate), three_years, pop.obs_end)
    sys_level = rng.normal(t.systolic_mean + np.where(has_htn, 6, -6), 11, n)
    dia_level = sys_level * 0.58 + rng.normal(3, 5, n)
    alt = rng.random(len(who)) < 0.1
    systolic = np.array([ev.code(c) for c in codes.SYSTOLIC])
    diastolic = np.array([ev.code(c) for c in codes.DIASTOLIC])
    ev.add(who, day, systolic[alt.astype(int)], np.rint(rng.normal(sys_level[who], 8)))
    keep = rng.random(len(who)) > 0.02
    ev.add(
        who[keep],
        day[keep],
        diastolic[alt[keep].astype(int)],
        np.rint(rng.normal(dia_level[who[keep]], 6)),
    )

    # Flu vaccination each autumn for the over-65s and some younger people at risk.
    eligible = (pop.age >= 65) | (((pop.diabetes >= 0) | pop.asthma_active) & (rng.random(n) < 0.5))
    as_of_year = int(np.datetime64(as_of_day, "D").astype("datetime64[Y]").astype(int)) + 1970
    for year in range(as_of_year - 3, as_of_year + 1):
        sept = int(np.datetime64(f"{year}-09-01", "D").astype(np.int64))
        uptake = np.clip(t.flu_uptake - 0.08 * pop.deprived + 0.1 * (pop.age >= 75), 0, 0.98)
        who = everyone[eligible & (rng.random(n) < uptake)]
        day = sept + (rng.random(len(who)) * 110).astype(np.int64)
        ok = (day >= pop.reg_from[who]) & (day <= pop.obs_end[who])
        ev.add(who[ok], day[ok], ev.code(codes.FLU))

    # Smoking status: some recorded in the period (the practice's habit), some only earlier.
    smoking = np.array([ev.code(c) for c in (codes.SMOKER, codes.EX_SMOKER, codes.NEVER_SMOKED)])
    adult = pop.age >= 15
    in_period = adult & (rng.random(n) < t.smoking_recording)
    earlier = adult & ~in_period & (rng.random(n) < 0.6)
    smoker_p = np.clip(0.13 + 0.06 * pop.deprived, 0.03, 0.4)
    status = np.where(rng.random(n) < smoker_p, 0, np.where(rng.random(n) < 0.3, 1, 2))
    for mask, lo, hi in (
        (in_period, np.maximum(pop.obs_start, period_start), pop.obs_end),
        (earlier, pop.obs_start, np.minimum(pop.obs_end, period_start - 1)),
    ):
        who, day = spread(rng, mask.astype(int), lo, hi)
        ev.add(who, day, smoking[status[who]])

    # Cervical screening for women 25-64: within 42 months, or longer ago.
    women = (pop.sex == 0) & (pop.age >= 25) & (pop.age < 65)
    screened = women & (rng.random(n) < np.clip(t.cervical_uptake - 0.06 * pop.deprived, 0, 0.95))
    lapsed = women & ~screened & (rng.random(n) < 0.5)
    who, day = spread(
        rng,
        screened.astype(int),
        np.maximum(pop.obs_start, as_of_day - int(3.5 * YEAR) + 1),
        pop.obs_end,
    )
    ev.add(who, day, ev.code(codes.CERVICAL))
    who, day = spread(
        rng, lapsed.astype(int), pop.obs_start, np.minimum(pop.obs_end, as_of_day - int(3.6 * YEAR))
    )
    ev.add(who, day, ev.code(codes.CERVICAL))

    # Asthma reviews in the period, at the practice's rate.
    review = pop.asthma_active & (rng.random(n) < t.asthma_review)
    who, day = spread(rng, review.astype(int), np.maximum(pop.asthma, period_start), pop.obs_end)
    reviews = np.array([ev.code(c) for c in codes.ASTHMA_REVIEW])
    ev.add(who, day, reviews[(rng.random(len(who)) < 0.3).astype(int)])

    # Noise: everything else a record holds, more of it for older patients.
    years = (pop.obs_end - pop.obs_start + 1) / YEAR
    volume = t.event_rate * years * (0.4 + pop.age / 45)
    who, day = spread(rng, rng.poisson(volume), pop.obs_start, pop.obs_end)
    valued = rng.random(len(who)) < 0.12
    plain = np.array([ev.code(c) for c in codes.PLAIN_NOISE])
    zipf = 1.0 / np.arange(1, len(plain) + 1) ** 0.9
    ev.add(who[~valued], day[~valued], plain[pick(rng, zipf, int((~valued).sum()))])
    kind = rng.integers(len(codes.VALUED_NOISE), size=int(valued.sum()))
    means = np.array([m for _, m, _ in codes.VALUED_NOISE])[kind]
    sds = np.array([s for _, _, s in codes.VALUED_NOISE])[kind]
    values = np.round(np.abs(rng.normal(means, sds)), 1)
    values = np.where(rng.random(len(values)) < odd, -values, values)
    day_v = np.where(
        rng.random(len(values)) < odd, as_of_day + rng.integers(1, 400, len(values)), day[valued]
    )
    ev.add(
        who[valued], day_v, np.array([ev.code(c) for c, _, _ in codes.VALUED_NOISE])[kind], values
    )
    return ev


def medications(
    rng: np.random.Generator,
    pop: Population,
    t: PracticeTraits,
    as_of_day: int,
    period_start: int,
    odd: float,
) -> tuple[Coded, list[str | None]]:
    """Items issued over three years, and the BNF code of each dm+d product."""
    meds = Coded([])
    bnf: list[str | None] = []

    def group(products: tuple[tuple[str, str], ...]) -> np.ndarray:
        out = []
        for dmd, code in products:
            if dmd not in meds.vocabulary:
                bnf.append(code)
            out.append(meds.code(dmd))
        return np.array(out)

    n = len(pop)
    lo = np.maximum(pop.obs_start, as_of_day - int(3 * YEAR))
    drugs = [
        (pop.diabetes >= 0, 30.0, group(codes.DIABETES_DRUGS), lo),
        (pop.hypertension >= 0, 24.0, group(codes.HYPERTENSION_DRUGS), lo),
        # Active asthma: inhalers mostly in the period, so the asthma denominator fills.
        (pop.asthma_active & (rng.random(n) < 0.85), 4.0, group(codes.ASTHMA_INHALERS),
         np.maximum(pop.obs_start, period_start)),
        (np.ones(n, bool), 3 * t.antibiotic_rate * (0.6 + (pop.age < 10) + pop.age / 80),
         group(codes.ANTIBIOTICS), lo),
        (np.ones(n, bool), 3 * t.medication_rate * (0.3 + pop.age / 40),
         group(codes.OTHER_DRUGS), lo),
    ]  # fmt: skip
    for mask, mean, products, start in drugs:
        who, day = spread(rng, np.where(mask, rng.poisson(mean), 0), start, pop.obs_end)
        meds.add(who, day, products[rng.integers(len(products), size=len(who))])
    who, day, code, value = meds.arrays()
    day = np.where(rng.random(len(day)) < odd, as_of_day + rng.integers(1, 60, len(day)), day)
    meds.parts = [(who, day, code, value)]
    return meds, bnf


@dataclass
class Appointments:
    """Appointment columns as arrays (enums as indices into schema's tuples)."""

    who: np.ndarray
    booked_on: np.ndarray
    starts_at: np.ndarray  # seconds since 1970-01-01
    status: np.ndarray
    clinician: np.ndarray  # index into ``clinicians``
    role: np.ndarray
    mode: np.ndarray
    duration: np.ndarray  # NaN when not recorded
    clinicians: list[str]


# Mode probabilities by role (face_to_face, telephone, video, home_visit, online).
_MODES = np.array(
    [
        [0.0, 0.0, 0.04, 0.02, 0.06],  # gp: face-to-face and telephone filled per practice
        [0.86, 0.10, 0.01, 0.02, 0.01],
        [0.30, 0.60, 0.05, 0.0, 0.05],
        [0.95, 0.02, 0.0, 0.03, 0.0],
        [0.50, 0.40, 0.05, 0.0, 0.05],
    ]
)
# Typical minutes by role and mode; gp face-to-face comes from the practice.
_MINUTES = np.array(
    [
        [0, 7, 9, 25, 5],
        [15, 8, 10, 30, 5],
        [15, 12, 12, 20, 8],
        [10, 5, 5, 20, 5],
        [15, 10, 10, 20, 8],
    ],
    dtype=float,
)


def appointments(
    rng: np.random.Generator, pop: Population, t: PracticeTraits, as_of_day: int, odd: float
) -> Appointments:
    """Two years of appointments and four weeks of future bookings."""
    n = len(pop)
    end = np.minimum(np.minimum(pop.reg_to, pop.dod), as_of_day + 28)
    lo = np.maximum(pop.reg_from, as_of_day - 730)
    years = np.maximum(end - lo + 1, 0) / YEAR
    rate = (
        t.appointment_rate
        * (0.5 + pop.age / 55)
        * (1 + 0.6 * (pop.diabetes >= 0) + 0.3 * (pop.hypertension >= 0))
    )
    who, day = spread(rng, rng.poisson(rate * years), lo, end)
    size = len(who)
    order = np.argsort(day, kind="stable")
    who, day = who[order], day[order]

    starts = day * 86_400 + (8 * 3600 + rng.integers(0, 60, size) * 600)
    lead = np.where(
        rng.random(size) < t.same_day_share, 0, np.rint(rng.exponential(t.mean_lead_days, size))
    )
    booked = day - lead.astype(np.int64)
    booked = np.where(rng.random(size) < 2 * odd, day + rng.integers(1, 6, size), booked)

    role = pick(rng, list(t.skill_mix), size)
    gps = [f"gp{i + 1:02d}" for i in range(t.n_gps)]
    others = {
        1: max(1, t.n_gps // 2),
        2: 1 + t.n_gps // 6,
        3: 1 + t.n_gps // 5,
        4: 1 + t.n_gps // 8,
    }
    prefixes = {1: "nu", 2: "ph", 3: "hc", 4: "ot"}
    clinicians = gps + [f"{prefixes[r]}{i + 1:02d}" for r in (1, 2, 3, 4) for i in range(others[r])]
    first = {0: 0}
    for r in (1, 2, 3, 4):
        first[r] = first[r - 1] + (t.n_gps if r == 1 else others[r - 1])
    counts = np.array([t.n_gps, *[others[r] for r in (1, 2, 3, 4)]])
    starts_of = np.array([first[r] for r in range(5)])
    usual = rng.integers(t.n_gps, size=n)
    any_clinician = starts_of[role] + (rng.random(size) * counts[role]).astype(np.int64)
    continuity = (role == 0) & (rng.random(size) < t.continuity)
    clinician = np.where(continuity, usual[who], any_clinician)

    modes = _MODES.copy()
    modes[0, 0] = t.gp_f2f_share * (1 - modes[0, 2:].sum())
    modes[0, 1] = (1 - t.gp_f2f_share) * (1 - modes[0, 2:].sum())
    cum = np.cumsum(modes / modes.sum(axis=1, keepdims=True), axis=1)
    mode = np.minimum((rng.random(size)[:, None] > cum[role]).sum(axis=1), 4)

    future = day > as_of_day
    young = (pop.age[who] >= 16) & (pop.age[who] < 35)
    dna = np.clip(t.dna_rate * (1 + 0.4 * pop.deprived[who]) * np.where(young, 1.5, 0.9), 0, 0.5)
    u = rng.random(size)
    past_status = np.select(
        [u < dna, u < dna + 0.05, u < dna + 0.07, u < dna + 0.07 + odd], [1, 2, 3, 4], default=0
    )
    v = rng.random(size)
    future_status = np.select([v < 0.05, v < 0.08, v < 0.08 + odd], [2, 3, 0], default=4)
    status = np.where(future, future_status, past_status)

    minutes = _MINUTES.copy()
    minutes[0, 0] = t.gp_f2f_minutes
    typical = minutes[role, mode]
    duration = np.maximum(np.rint(rng.normal(typical, typical * 0.35)), 1)
    duration = np.where(rng.random(size) < odd, 0, duration)
    duration = np.where((status == 0) & (rng.random(size) > 0.05), duration, np.nan)
    return Appointments(who, booked, starts, status, clinician, role, mode, duration, clinicians)
