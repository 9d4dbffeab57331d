"""``fedpeer-coordinator stats funnel|peers`` on real CSV files, against independent numbers."""

from __future__ import annotations

import csv
import math
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from _stats_reference import close, funnel
from scipy.spatial.distance import cdist
from typer.testing import CliRunner

from coordinator.cli import app

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]
EXACT = {"flag95", "flag998", "decile"}


def write_csv(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(["" if v is None else v for v in r] for r in rows)
    return path


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def counts_table(seed: int, kind: str) -> list[list[object]]:
    rng = np.random.default_rng(seed)
    rows: list[list[object]] = []
    for i in range(40):
        n = int(rng.integers(0, 3000))
        truth = rng.beta(8, 30) if kind == "proportion" else rng.gamma(5, 0.02)
        x = int(rng.binomial(n, truth)) if kind == "proportion" else int(rng.poisson(truth * n))
        if i % 13 == 5:
            x = None  # suppressed
        rows.append([f"P{i:03d}", x, n])
    return rows


@pytest.mark.parametrize("kind", ["proportion", "rate"])
@pytest.mark.parametrize("flag", [[], ["--no-overdispersion"]])
def test_funnel_csv_equals_the_independent_calculation(
    tmp_path: Path, kind: str, flag: list[str]
) -> None:
    rows = counts_table(17, kind)
    source = write_csv(tmp_path / "in.csv", ["practice_id", "numerator", "denominator"], rows)
    out = tmp_path / "out.csv"
    result = runner.invoke(
        app, ["stats", "funnel", str(source), "--kind", kind, "--out", str(out), *flag]
    )
    assert result.exit_code == 0, result.output
    got = read_csv(out)
    num = [math.nan if x is None else float(x) for _, x, _ in rows]
    den = [float(n) for _, _, n in rows]
    expected = funnel(kind, num, den, overdispersion=not flag)
    assert [r["practice_id"] for r in got] == [r[0] for r in rows]
    assert any(r["flag95"] != "within" for r in got if r["flag95"])  # something to find
    for line, want in zip(got, expected, strict=True):
        for name, text in line.items():
            if name in ("practice_id", "numerator", "denominator"):
                continue
            if name not in want:
                assert text == "", (name, line["practice_id"])
            elif name in EXACT:
                assert text == str(want[name]), (name, line["practice_id"])
            else:
                assert close(float(text), float(want[name])), (name, line["practice_id"])
    if flag:  # exact limits published, phi and tau2 still reported
        first = got[0]
        assert first["low95"] == first["exact_low95"] and float(first["tau2"]) > 0


def test_funnel_of_fewer_than_five_practices_gives_values_and_intervals_only(
    tmp_path: Path,
) -> None:
    rows = [["A", 3, 10], ["B", 4, 10], ["C", 5, 10], ["D", None, 10], ["E", 0, 0]]
    source = write_csv(tmp_path / "in.csv", ["practice_id", "numerator", "denominator"], rows)
    out = tmp_path / "out.csv"
    result = runner.invoke(
        app, ["stats", "funnel", str(source), "--kind", "proportion", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    got = {r["practice_id"]: r for r in read_csv(out)}
    assert float(got["A"]["value"]) == 0.3 and got["A"]["ci_low"] and got["A"]["ci_high"]
    assert got["A"]["theta0"] == got["A"]["low95"] == got["A"]["percentile"] == ""
    assert all(v == "" for k, v in got["D"].items() if k not in ("practice_id", "denominator"))


def profiles(seed: int) -> list[list[object]]:
    rng = np.random.default_rng(seed)
    rows: list[list[object]] = []
    for i in range(30):
        share = rng.dirichlet([2, 1, 2, 6])
        rows.append(
            [
                f"GP{i:02d}",
                int(rng.integers(1500, 30000)),
                share[0],
                share[1],
                share[2],
                float(rng.integers(1, 11)),
            ]
        )
    rows[3][1] = rows[4][1]  # ties in a feature
    rows[7][5] = None  # an incomplete profile is left out
    for r in rows:
        r[5] = 4.0 if r[0] in ("GP10", "GP11") else r[5]
    rows.append(["GP99", *rows[12][1:]])  # an exact twin: a distance of 0, ties by id
    return rows


def expected_peers(rows: list[list[object]], k: int) -> list[tuple[str, int, str, float]]:
    """S18 again: log list size, ddof-0 z-scores, scipy's Euclidean distances, (d, id)."""
    complete = [r for r in rows if all(v is not None for v in r)]
    ids = [str(r[0]) for r in complete]
    x = np.array([[math.log(float(r[1])), *map(float, r[2:])] for r in complete])
    sd = x.std(axis=0)
    z = np.where(sd > 0, (x - x.mean(axis=0)) / np.where(sd > 0, sd, 1), 0.0)
    d = cdist(z, z)
    out = []
    for i, pid in enumerate(ids):
        others = sorted((d[i, j], ids[j]) for j in range(len(ids)) if j != i)
        for rank, (dist, peer) in enumerate(others[: min(k, len(ids) - 1)], start=1):
            out.append((pid, rank, peer, float(dist)))
    return out


@pytest.mark.parametrize("k", [1, 7, 100])
def test_peers_csv_equals_the_independent_calculation(tmp_path: Path, k: int) -> None:
    rows = profiles(5)
    header = ["practice_id", "list_size", "share_u18", "share_18_24"]
    header += ["share_65plus", "mean_imd_decile"]
    source = write_csv(tmp_path / "profiles.csv", header, rows)
    out = tmp_path / "peers.csv"
    result = runner.invoke(app, ["stats", "peers", str(source), "--k", str(k), "--out", str(out)])
    assert result.exit_code == 0, result.output
    got = read_csv(out)
    want = expected_peers(rows, k)
    assert len(got) == len(want)
    assert all("GP07" not in (r["practice_id"], r["peer_id"]) for r in got)
    for line, (pid, rank, peer, dist) in zip(got, want, strict=True):
        assert (line["practice_id"], int(line["rank"]), line["peer_id"]) == (pid, rank, peer)
        assert close(float(line["distance"]), dist)


BAD = [
    # (file name, content, --kind, what the one line must say)
    ("missing.csv", None, "proportion", "missing.csv: No such file"),
    ("cols.csv", "practice_id,numerator\nA,1\n", "rate", "missing column denominator"),
    (
        "word.csv",
        "practice_id,numerator,denominator\nA,1,2\nB,two,5\n",
        "rate",
        "row 2, column numerator: 'two' is not a number",
    ),
    (
        "neg.csv",
        "practice_id,numerator,denominator\nA,1,-2\n",
        "rate",
        "row 1, column denominator: -2 is negative",
    ),
    (
        "over.csv",
        "practice_id,numerator,denominator\nA,1,2\nB,2,2\nC,9,3\n",
        "proportion",
        "row 3, column numerator: 9 is above the denominator 3",
    ),
    (
        "twice.csv",
        "practice_id,numerator,denominator\nA,1,2\nA,1,2\n",
        "rate",
        "row 2, column practice_id: practice A appears twice",
    ),
    (
        "half.csv",
        "practice_id,numerator,denominator\nA,1.5,2\n",
        "proportion",
        "row 1, column numerator: 1.5 is not a whole number",
    ),
]


def test_a_bad_csv_is_one_line_naming_file_row_and_column(tmp_path: Path) -> None:
    def run(case: tuple[str, str | None, str, str]) -> tuple[str, subprocess.CompletedProcess]:
        name, content, kind, _ = case
        if content is not None:
            (tmp_path / name).write_text(content)
        command = [sys.executable, "-m", "coordinator.cli", "stats", "funnel", name]
        command += ["--kind", kind, "--out", f"out-{name}"]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}  # this checkout's code, from any folder
        done = subprocess.run(
            command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
        )
        return name, done

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(run, BAD))
    for (name, done), (_, _, _, message) in zip(results, BAD, strict=True):
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 1, (name, done.stderr)
        assert len(lines) == 1 and message in lines[0], (name, done.stderr)
        assert "Traceback" not in done.stderr and not (tmp_path / f"out-{name}").exists()
