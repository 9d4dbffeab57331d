"""The whole main job at small scale: coordinator, agents over mutual TLS, reports."""

from __future__ import annotations

import csv
from datetime import date
from pathlib import Path

from rich.console import Console

from agent.audit import AuditLog
from coordinator.demo import last_month_end, run_demo


async def test_one_round_end_to_end_writes_a_report_per_practice(tmp_path: Path) -> None:
    out = tmp_path / "demo-output"
    console = Console(file=open(tmp_path / "console.txt", "w"), width=140)  # noqa: SIM115
    result = await run_demo(out, practices=6, list_size=400, console=console)
    console.file.close()

    assert result.submitted == 6
    assert len(result.reports) == 6
    practices = list(csv.DictReader((out / "work" / "practices" / "practices.csv").open()))
    for practice in practices:
        html = (out / f"practice-{practice['practice_id']}.html").read_text()
        assert practice["name"] in html
        assert f"<dt>Round</dt><dd>{result.round_id}</dd>" in html
        others = [p["name"] for p in practices if p is not practice]
        assert not any(name in html for name in others), "peers are never named to each other"
        # What left the practice is in its own audit log, chained and intact.
        audit = AuditLog.at_home(out / "work" / "agents" / practice["practice_id"])
        assert audit.verify() is None
        assert len(audit.show()) == 1
    assert (out / "summary.html").exists()
    printed = (tmp_path / "console.txt").read_text()
    assert "6 of 6 practices submitted" in printed
    assert "Diabetes" in printed


def test_the_demo_round_is_as_of_a_month_end() -> None:
    assert last_month_end(date(2026, 11, 22)) == date(2026, 10, 31)
    assert last_month_end(date(2024, 3, 1)) == date(2024, 2, 29)
