"""Writing reports to files: one HTML file per practice, and the summary."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

from coordinator.comparisons import Comparison
from coordinator.reports.practice import render_practice_report
from coordinator.reports.summary import render_summary_report


def report_filename(practice_id: str) -> str:
    """A safe file name for a practice's report."""
    return f"practice-{re.sub(r'[^A-Za-z0-9_.-]+', '_', practice_id)}.html"


def write_practice_reports(
    comparison: Comparison,
    out_dir: Path,
    *,
    round_label: str | None = None,
    as_of: str | date | None = None,
) -> list[Path]:
    """Write one report per practice into ``out_dir``; returns the paths written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for practice_id in comparison.practices:
        path = out_dir / report_filename(practice_id)
        html = render_practice_report(comparison, practice_id, round_label=round_label, as_of=as_of)
        path.write_text(html, encoding="utf-8")
        paths.append(path)
    return paths


def write_summary_report(comparison: Comparison, out_dir: Path, *, named: bool = False) -> Path:
    """Write the commissioners' summary (practices anonymised unless ``named``)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "summary.html"
    path.write_text(render_summary_report(comparison, named=named), encoding="utf-8")
    return path
