"""Realistic synthetic practice extracts, for tests, demos and benchmarks.

    traits = generate_practice(out, practice_seed=7, list_size=8000,
                               as_of=date(2026, 9, 30), fmt="parquet")
    federation = generate_practices(out, practices=12, list_size=8000, seed=1)

Each practice writes the four tables of EXTRACT.md. Practices differ in age structure,
deprivation, prevalence, quality of control, uptake, access, continuity, skill mix and
prescribing (``PracticeTraits``), so peer comparisons between them show something. A
few data-quality oddities (future-dated events, bookings after the start, impossible
registrations) appear at low rates, as in real extracts. The same seed always gives
the same files.
"""

from __future__ import annotations

import csv
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Literal

import numpy as np

from agent.synth import output
from agent.synth.population import make_population
from agent.synth.records import appointments, clinical_events, medications
from agent.synth.traits import AGE_PROFILES, PracticeTraits, random_traits
from fedpeer.dates import period_start

__all__ = [
    "AGE_PROFILES",
    "MANIFEST_COLUMNS",
    "PracticeTraits",
    "generate_practice",
    "generate_practices",
    "random_traits",
]

MANIFEST_COLUMNS = ("practice_id", "name", "locality", "list_size", "format")
# Rate of each kind of data-quality oddity (per row): rare, as in a decent extract.
ODDITY_RATE = 0.0005
TABLE_NAMES = ("patients", "clinical_events", "medications", "appointments")


def generate_practice(
    out_dir: str | Path,
    *,
    practice_seed: int,
    list_size: int,
    as_of: date,
    fmt: Literal["csv", "parquet"] = "parquet",
    profile: PracticeTraits | None = None,
) -> PracticeTraits:
    """Write one practice's four tables into ``out_dir``; return the traits used.

    Without ``profile``, traits are drawn from ``practice_seed``; with it, its
    ``list_size`` is replaced by ``list_size``.
    """
    if fmt not in ("csv", "parquet"):
        raise ValueError("fmt must be 'csv' or 'parquet'")
    traits = (
        random_traits(practice_seed, list_size=list_size)
        if profile is None
        else replace(profile, list_size=list_size)
    )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([practice_seed, 0x5EED])
    epoch = date(1970, 1, 1)
    as_of_day = (as_of - epoch).days
    period_start_day = (period_start(as_of) - epoch).days

    pop = make_population(rng, traits, as_of_day, ODDITY_RATE)
    output.write_table(output.patients_table(pop), out / "patients", fmt)
    events = clinical_events(rng, pop, traits, as_of_day, period_start_day, ODDITY_RATE)
    output.write_table(output.events_table(pop, events), out / "clinical_events", fmt)
    del events
    meds, bnf = medications(rng, pop, traits, as_of_day, period_start_day, ODDITY_RATE)
    output.write_table(
        output.medications_table(rng, pop, meds, bnf, ODDITY_RATE), out / "medications", fmt
    )
    del meds
    appts = appointments(rng, pop, traits, as_of_day, ODDITY_RATE)
    output.write_table(output.appointments_table(pop, appts), out / "appointments", fmt)
    return traits


def generate_practices(
    out_dir: str | Path,
    *,
    practices: int,
    list_size: int,
    seed: int = 1,
    as_of: date = date(2026, 9, 30),
    fmt: Literal["csv", "parquet"] = "parquet",
    localities: int | None = None,
    vary_list_size: bool = True,
) -> list[PracticeTraits]:
    """Write ``practices`` practices into ``out_dir/<practice_id>/`` and ``practices.csv``.

    Practices are spread over a few localities (about one per six practices, at most
    six). With ``vary_list_size`` list sizes vary around ``list_size`` (0.5x to 1.6x).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    n_localities = localities or max(1, min(6, round(practices / 6)))
    sizes = np.random.default_rng([seed, 0x515E]).uniform(0.5, 1.6, practices)
    made: list[PracticeTraits] = []
    for index in range(practices):
        size = max(1, round(list_size * sizes[index])) if vary_list_size else list_size
        traits = random_traits(seed, index=index, list_size=size, localities=n_localities)
        generate_practice(
            out / traits.practice_id,
            practice_seed=seed * 1_000_003 + index,
            list_size=size,
            as_of=as_of,
            fmt=fmt,
            profile=traits,
        )
        made.append(traits)
    with (out / "practices.csv").open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(MANIFEST_COLUMNS)
        for t in made:
            writer.writerow((t.practice_id, t.name, t.locality, t.list_size, fmt))
    return made
