"""Benchmark: the agent's indicator engine against hand-written DuckDB SQL.

    .venv/bin/python bench/engine.py [--sizes 10000 100000] [--repeat 3]

For each practice size it generates a synthetic practice to Parquet (cached under
bench/out/), then, each in a fresh process so peak memory is the process's own:
  * fedpeer: open + validate the extract, all twelve indicators and the profile
    (the SQL engine on DuckDB), best of --repeat;
  * the whole ``fedpeer-agent compute`` command, wall time from process start;
  * bench/handwritten_duckdb.py, the yardstick, best of --repeat.
It checks that fedpeer's raw counts equal the hand-written ones, and prints wall times,
peak RSS and the ratio fedpeer / hand-written. Figures go in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUT = HERE / "out"
AS_OF = date(2026, 9, 30)

_CHILD = r"""
import json, resource, sys, time
from dataclasses import asdict
from datetime import date
from pathlib import Path
sys.path.insert(0, {root!r})
which, location, repeat = sys.argv[1], sys.argv[2], int(sys.argv[4])
as_of = date.fromisoformat(sys.argv[3])
best, answer = None, None
for _ in range(repeat):
    t0 = time.perf_counter()
    if which == "validate":
        from agent.extract import open_extract
        with open_extract(location, as_of):
            pass
        answer = {{}}
    elif which == "fedpeer":
        from agent.pipeline import compute_results
        results, _quality = compute_results(location, as_of)
        answer = {{r.indicator: asdict(r.measure) for r in results if not r.stratum}}
    else:
        sys.path.insert(0, {bench!r})
        from handwritten_duckdb import compute
        answer = {{k: list(v) for k, v in compute(Path(location), as_of).items()}}
    elapsed = time.perf_counter() - t0
    best = elapsed if best is None else min(best, elapsed)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({{"seconds": best, "peak_bytes": peak, "answer": answer}}))
"""


def _run_child(which: str, location: Path, repeat: int) -> dict:
    code = _CHILD.format(root=str(ROOT), bench=str(HERE))
    proc = subprocess.run(
        [sys.executable, "-c", code, which, str(location), AS_OF.isoformat(), str(repeat)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _ensure_practice(size: int) -> Path:
    from agent.synth import generate_practice

    target = OUT / f"practice-{size}"
    if not (target / "appointments.parquet").exists():
        target.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        generate_practice(target, practice_seed=size, list_size=size, as_of=AS_OF, fmt="parquet")
        print(f"  generated {size:,} patients in {time.perf_counter() - t0:.1f} s")
    return target


def _rows(location: Path) -> dict[str, int]:
    import duckdb

    con = duckdb.connect()
    return {
        t: con.execute(f"SELECT count(*) FROM read_parquet('{location / t}.parquet')").fetchone()[0]
        for t in ("patients", "clinical_events", "medications", "appointments")
    }


def _agree(fedpeer: dict, handwritten: dict) -> list[str]:
    """Indicators whose raw counts differ between the two implementations."""
    problems = []
    for indicator, counts in handwritten.items():
        measure = fedpeer[indicator]
        if "numerator" in measure:
            got = [measure["numerator"], measure["denominator"]]
        elif "mean" in measure:
            got = [measure["count"], measure["mean"]]
        else:
            cells = dict(map(tuple, measure["cells"]))
            got = [cells[c] for c in ("gp", "nurse", "pharmacist", "hca", "other")]
        same = got[0] == counts[0] and (
            abs((got[1] or 0) - (counts[1] or 0)) < 1e-9 if len(got) == 2 else got == counts
        )
        if not same:
            problems.append(f"{indicator}: fedpeer {got} vs hand-written {counts}")
    return problems


def _compute_command(location: Path) -> float:
    out = OUT / "compute.csv"
    t0 = time.perf_counter()
    subprocess.run(
        [
            str(Path(sys.executable).with_name("fedpeer-agent")),
            "compute",
            "--extract",
            str(location),
            "--as-of",
            AS_OF.isoformat(),
            "--out",
            str(out),
        ],
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - t0


def main() -> None:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}"
    )
    for size in args.sizes:
        print(f"practice of {size:,} registered patients")
        location = _ensure_practice(size)
        rows = _rows(location)
        print("  rows: " + ", ".join(f"{t} {n:,}" for t, n in rows.items()))
        ours = _run_child("fedpeer", location, args.repeat)
        theirs = _run_child("handwritten", location, args.repeat)
        validate = _run_child("validate", location, args.repeat)
        command = min(_compute_command(location) for _ in range(args.repeat))
        problems = _agree(ours["answer"], theirs["answer"])
        mib = 1024 * 1024
        print(
            f"  fedpeer engine (open, validate, 12 indicators + profile): "
            f"{ours['seconds']:.2f} s, peak RSS {ours['peak_bytes'] / mib:.0f} MiB"
        )
        print(f"    of which opening and validating the extract: {validate['seconds']:.2f} s")
        print(f"  fedpeer-agent compute, whole command: {command:.2f} s")
        print(
            f"  hand-written DuckDB SQL (12 indicators): {theirs['seconds']:.2f} s, "
            f"peak RSS {theirs['peak_bytes'] / mib:.0f} MiB"
        )
        print(
            f"  ratio fedpeer / hand-written: {ours['seconds'] / theirs['seconds']:.2f} "
            f"(evaluation alone, without validation: "
            f"{(ours['seconds'] - validate['seconds']) / theirs['seconds']:.2f})"
        )
        print(
            "  raw counts agree: "
            + ("yes" if not problems else "NO\n    " + "\n    ".join(problems))
        )
        if problems:
            sys.exit(1)


if __name__ == "__main__":
    main()
