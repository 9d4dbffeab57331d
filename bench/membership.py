"""Benchmark: what differencing on membership costs a practice (issue 7).

    .venv/bin/python bench/membership.py [--size 100000] [--months 12]

On a synthetic practice (Parquet, cached under bench/out/ as bench/engine.py does) it
times, for the standard round set and one study question:
  * evaluating the definitions (the SQL engine on DuckDB), for scale;
  * listing the units each definition counts (``agent.engine.membership``);
  * salting and hashing them (``Ledger.member_digests``);
  * recording a round's sets in the ledger, then ``--months`` of monthly rounds;
  * the differencing check of a study question against all of that history;
and prints the ledger's size on disk and the process's peak memory.
"""

from __future__ import annotations

import argparse
import platform
import resource
import sys
import tempfile
import time
from dataclasses import replace
from datetime import date
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from agent.differencing import CandidateSets, decline_reason  # noqa: E402
from agent.engine import evaluate, membership  # noqa: E402
from agent.extract import open_extract  # noqa: E402
from agent.ledger import Ledger, NewRelease, Question  # noqa: E402
from agent.synth import generate_practice  # noqa: E402
from fedpeer.dates import last_complete_month_end  # noqa: E402
from fedpeer.definitions import (  # noqa: E402
    PatientCriteria,
    content_hash,
    find_standard,
    load_round_set,
    meaning_hash,
)
from fedpeer.policy import DisclosurePolicy  # noqa: E402

AS_OF = date(2026, 9, 30)


def _practice(size: int) -> Path:
    target = HERE / "out" / f"practice-{size}"
    if not (target / "patients.parquet").exists():
        print(f"generating a {size:,}-patient practice in {target} ...", flush=True)
        generate_practice(target, practice_seed=size, list_size=size, as_of=AS_OF, fmt="parquet")
    return target


def _timed(label: str, fn):  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    value = fn()
    print(f"  {label:<58} {time.perf_counter() - t0:7.2f} s", flush=True)
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--months", type=int, default=12)
    args = parser.parse_args()
    location = str(_practice(args.size))
    definitions = load_round_set()
    # A study: the diabetes denominator and HbA1c numerator, for ages 17 to 120: the
    # standard's sets under another meaning, so every month's sets of that size are
    # loaded and compared (the check's worst case).
    dm = find_standard("dm_hba1c_le58")
    assert isinstance(dm.denominator, PatientCriteria)
    study = replace(dm, id="study.dm_17_120", denominator=replace(dm.denominator, age_max=120))
    print(
        f"{args.size:,} patients; {platform.machine()}, {platform.python_version()}; "
        f"{len(definitions)} definitions and one study; {args.months} months of history"
    )
    with open_extract(location, AS_OF) as extract, extract.connect() as connection:
        _timed(
            "evaluate the round set (counts only)", lambda: evaluate(definitions, connection, AS_OF)
        )
        members = _timed(
            "membership of the round set", lambda: membership(definitions, connection, AS_OF)
        )
        study_members = membership([study], connection, AS_OF)[0]
    units = sum(len(ids) for m in members for ids in m.sets.values())
    print(f"  {'units listed (all sets of all definitions)':<58} {units:>9,}")
    with tempfile.TemporaryDirectory() as home:
        ledger = Ledger.at_home(Path(home))
        digests = _timed(
            "salt and hash them",
            lambda: [
                {part: ledger.member_digests(ids) for part, ids in m.sets.items()} for m in members
            ],
        )
        questions = [Question(meaning_hash(d), content_hash(d), d.id) for d in definitions]
        policy = DisclosurePolicy()

        def record(as_of: date, round_id: str) -> None:
            ledger.record_round(
                round_id,
                as_of,
                questions,
                [NewRelease(q, (), policy, s) for q, s in zip(questions, digests, strict=True)],
                month=as_of.strftime("%Y-%m"),
                manual_approval=False,
            )

        _timed("record one round's sets in the ledger", lambda: record(AS_OF, "r0"))
        month_end = AS_OF
        for k in range(1, args.months):
            month_end = last_complete_month_end(month_end)
            record(month_end, f"r{k}")
        size = Path(home, "ledger.sqlite").stat().st_size
        label = f"ledger size with {args.months} months of sets"
        print(f"  {label:<58} {size / 2**20:7.1f} MiB")
        sets = {part: ledger.member_digests(ids) for part, ids in study_members.sets.items()}
        candidate = CandidateSets(meaning_hash(study), study.id, sets, True)
        decline = _timed(
            "differencing check of the study against that history",
            lambda: decline_reason(ledger, [candidate], policy.threshold),
        )
        print(f"  {'decision':<58} {'declined' if decline else 'answered':>9}")
        ledger.close()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"  {'peak RSS':<58} {peak:7.0f} MiB")


if __name__ == "__main__":
    main()
