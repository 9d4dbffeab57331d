"""A round's comparison as a table in the terminal, for coordinators. Practices are not named."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from coordinator.comparisons import Comparison
from coordinator.reports.wording import direction_words
from fedpeer.cli_support import make_console


def comparison_table(comparison: Comparison) -> Table:
    """One row per indicator: all-practice value, median, IQR, contributors, alarms."""
    title = "Peer comparison"
    if comparison.round_label:
        title += f", {comparison.round_label}"
    if comparison.as_of:
        title += f" (as of {comparison.as_of})"  # a date prints as ISO, which suits a terminal
    table = Table(
        title=title, caption=f"{len(comparison.practices)} practices", header_style="bold"
    )
    table.add_column("Indicator", style="bold", no_wrap=False)
    table.add_column("Better", style="dim")
    table.add_column("All practices", justify="right")
    table.add_column("Median", justify="right")
    table.add_column("IQR", justify="right")
    table.add_column("Practices", justify="right")
    table.add_column("Outside 99.8%", justify="right")
    for ic in comparison.indicators.values():
        spec = ic.spec
        if ic.overall.published:
            overall = spec.format(ic.overall.value)
            iqr = f"{spec.format(ic.lower_quartile)} to {spec.format(ic.upper_quartile)}"
        else:
            overall, iqr = "[italic]withheld[/]", "—"
        outside = "—" if ic.funnel is None else str(ic.count_outside())
        if ic.funnel is not None and ic.count_outside():
            outside = f"[bold yellow]{outside}[/]"
        table.add_row(
            spec.title,
            direction_words(spec.direction).removesuffix(" is better").replace("Neither way", "—"),
            overall,
            spec.format(ic.median),
            iqr,
            str(ic.overall.contributing),
            outside,
        )
    return table


def print_comparison_table(comparison: Comparison, console: Console | None = None) -> None:
    """Print the comparison table, and any notes, to a rich console."""
    console = console or make_console()
    console.print(comparison_table(comparison))
    for note in comparison.notes:
        console.print(f"[dim]Note: {note}[/]")
