"""Writing reports to files: per practice, per locality (slides), for commissioners; PDFs.

``write_round_reports`` writes a closed round's whole set into a folder:
``practices/practice-<id>.html``, ``localities/locality-<name>.html`` (slides),
``commissioners.html``, and a PDF beside each when Chromium is there to print it.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from coordinator.comparison_store import IndicatorTrend
from coordinator.comparisons import Comparison
from coordinator.reports.commissioners import render_commissioner_summary
from coordinator.reports.pdf import ChromiumMissing, printer
from coordinator.reports.practice import render_practice_report
from coordinator.reports.workshop import render_locality_slides
from fedpeer.private_files import private_dir, write_private


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "unnamed"


def report_filename(practice_id: str) -> str:
    """A safe file name for a practice's report."""
    return f"practice-{_safe(practice_id)}.html"


def slides_filename(locality: str) -> str:
    """A safe file name for a locality's slide pack."""
    return f"locality-{_safe(locality)}.html"


def write_practice_reports(
    comparison: Comparison,
    out_dir: Path,
    *,
    round_label: str | None = None,
    as_of: str | date | None = None,
    trends: Mapping[str, IndicatorTrend] | None = None,
) -> list[Path]:
    """Write one report per practice into ``out_dir``; returns the paths written."""
    out_dir = private_dir(Path(out_dir))  # reports hold every practice's values
    paths = []
    for practice_id in comparison.practices:
        path = out_dir / report_filename(practice_id)
        html = render_practice_report(
            comparison, practice_id, round_label=round_label, as_of=as_of, trends=trends
        )
        paths.append(write_private(path, html))
    return paths


@dataclass
class ReportSet:
    """What ``write_round_reports`` wrote, and why no PDFs when there are none."""

    practices: list[Path] = field(default_factory=list)
    localities: list[Path] = field(default_factory=list)
    commissioners: Path | None = None
    pdfs: list[Path] = field(default_factory=list)
    pdf_problem: str = ""

    @property
    def html(self) -> list[Path]:
        """Every HTML file written."""
        extra = [self.commissioners] if self.commissioners else []
        return [*self.practices, *self.localities, *extra]


def write_round_reports(
    comparison: Comparison,
    out_dir: Path,
    *,
    trends: Mapping[str, IndicatorTrend] | None = None,
    named_localities: Collection[str] = (),
    pdf: bool = True,
    chromium: Path | None = None,
) -> ReportSet:
    """Write every report of a round (HTML, then PDF unless ``pdf`` is False)."""
    out_dir = Path(out_dir)
    written = ReportSet()
    written.practices = write_practice_reports(comparison, out_dir / "practices", trends=trends)
    slides_dir = private_dir(out_dir / "localities")
    for locality in sorted({p.locality for p in comparison.practices.values()}):
        path = slides_dir / slides_filename(locality)
        html = render_locality_slides(
            comparison, locality, named=locality in named_localities, trends=trends
        )
        written.localities.append(write_private(path, html))
    written.commissioners = write_private(
        private_dir(out_dir) / "commissioners.html",
        render_commissioner_summary(comparison, trends=trends),
    )
    if pdf:
        try:
            with printer(chromium) as chrome:
                for html in written.html:
                    slides = html.parent == slides_dir
                    written.pdfs.append(chrome.pdf(html, html.with_suffix(".pdf"), slides=slides))
        except ChromiumMissing as exc:
            written.pdf_problem = str(exc)
    return written
