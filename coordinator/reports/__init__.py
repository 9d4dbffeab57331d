"""Reports practices, localities and commissioners read: self-contained HTML, inline SVG, PDF."""

from coordinator.reports.commissioners import render_commissioner_summary
from coordinator.reports.practice import render_practice_report
from coordinator.reports.render import (
    ReportSet,
    report_filename,
    slides_filename,
    write_practice_reports,
    write_round_reports,
    write_summary_report,
)
from coordinator.reports.summary import render_summary_report
from coordinator.reports.workshop import render_locality_slides

__all__ = [
    "ReportSet",
    "render_commissioner_summary",
    "render_locality_slides",
    "render_practice_report",
    "render_summary_report",
    "report_filename",
    "slides_filename",
    "write_practice_reports",
    "write_round_reports",
    "write_summary_report",
]
