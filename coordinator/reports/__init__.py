"""Reports practices, localities and commissioners read: self-contained HTML, inline SVG, PDF."""

from coordinator.reports.commissioners import render_commissioner_summary
from coordinator.reports.practice import render_practice_report
from coordinator.reports.render import (
    ReportSet,
    report_filename,
    slides_filename,
    write_practice_reports,
    write_round_reports,
)
from coordinator.reports.workshop import render_locality_slides

__all__ = [
    "ReportSet",
    "render_commissioner_summary",
    "render_locality_slides",
    "render_practice_report",
    "report_filename",
    "slides_filename",
    "write_practice_reports",
    "write_round_reports",
]
