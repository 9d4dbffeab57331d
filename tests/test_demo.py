"""The whole main job at small scale: three rounds over mutual TLS, then every report."""

from __future__ import annotations

import csv
from datetime import date
from pathlib import Path

from rich.console import Console

from agent.audit import AuditLog
from coordinator.demo import last_month_end, month_ends, run_demo


async def test_three_monthly_rounds_end_to_end_write_every_report(tmp_path: Path) -> None:
    out = tmp_path / "demo-output"
    console = Console(file=open(tmp_path / "console.txt", "w"), width=140)  # noqa: SIM115
    result = await run_demo(out, practices=6, list_size=400, console=console)
    console.file.close()

    assert result.submitted == 6
    assert len(result.round_ids) == 3
    assert [r[:10] for r in result.round_ids] == [
        d.isoformat() for d in month_ends(result.as_of, 3)
    ]
    assert len(result.reports.practices) == 6
    practices = list(csv.DictReader((out / "work" / "practices" / "practices.csv").open()))
    months = [f"{d:%b %Y}" for d in month_ends(result.as_of, 3)]
    for practice in practices:
        html = (out / "practices" / f"practice-{practice['practice_id']}.html").read_text()
        assert practice["name"] in html
        assert f"<dt>Round</dt><dd>{result.round_id}</dd>" in html
        # Every indicator kept its definition, so each trend spans the three months.
        assert all(f">{month}</text>" in html for month in months)
        others = [p["name"] for p in practices if p is not practice]
        assert not any(name in html for name in others), "peers are never named to each other"
        # The rounds carried the reference-rates study's rates: the antibiotic rate is
        # also shown standardised for age and sex, and the footer says from where.
        assert "Standardised for age and sex: " in html
        assert "indirectly standardised for age and sex" in html
        # What left the practice is in its own audit log, chained and intact: three rounds.
        audit = AuditLog.at_home(out / "work" / "agents" / practice["practice_id"])
        assert audit.verify() is None
        assert len(audit.show()) == 3
    assert (out / "commissioners.html").exists()
    localities = sorted({p["locality"] for p in practices})
    assert [p.name for p in result.reports.localities] == [
        f"locality-{name}.html" for name in localities
    ]
    # Chromium is installed wherever the tests run (.ci/run): every report has its PDF.
    assert result.reports.pdf_problem == ""
    assert sorted(result.reports.pdfs) == sorted(p.with_suffix(".pdf") for p in result.reports.html)
    printed = (tmp_path / "console.txt").read_text()
    assert printed.count("6 of 6 practices submitted") == 3
    assert "Diabetes" in printed


def test_the_demo_round_is_as_of_a_month_end() -> None:
    assert last_month_end(date(2026, 11, 22)) == date(2026, 10, 31)
    assert last_month_end(date(2024, 3, 1)) == date(2024, 2, 29)


def test_three_month_ends_run_back_from_the_last() -> None:
    assert month_ends(date(2026, 3, 31), 3) == [
        date(2026, 1, 31),
        date(2026, 2, 28),
        date(2026, 3, 31),
    ]
