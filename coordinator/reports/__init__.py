"""Reports practices and commissioners read: self-contained HTML, inline CSS and SVG."""

from coordinator.reports.practice import render_practice_report
from coordinator.reports.render import (
    report_filename,
    write_practice_reports,
    write_summary_report,
)
from coordinator.reports.summary import render_summary_report

__all__ = [
    "render_practice_report",
    "render_summary_report",
    "report_filename",
    "write_practice_reports",
    "write_summary_report",
]
