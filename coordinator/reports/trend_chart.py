"""Charts across rounds and side by side, as inline SVG in the Okabe-Ito palette.

A trend is drawn the OpenPrescribing way: each round's decile cut points of practice
values as shaded bands (10th-90th, 20th-80th, 30th-70th, 40th-60th, darker towards the
middle, the median dashed), the practice's own values as a line over them, and its most
alike peers' median as a second line. The palette (Okabe and Ito, 2008) stays distinct
for the common colour-vision deficiencies, and each line also has its own marker shape.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date

from markupsafe import Markup, escape

from coordinator.reports.charts import FONT, _nice_ticks, _tick_formatter
from coordinator.reports.palette import (
    AXIS,
    BLUE,
    BLUISH_GREEN,
    GRID,
    INK,
    LIGHT_GREY,
    SKY_BLUE,
    VERMILION,
)

# Blue for the bands, vermilion for the practice, bluish green for peers.
# Band i joins cut i and cut 8 - i (10th-90th is band 0); inner bands are drawn darker.
BAND_OPACITY = (0.12, 0.2, 0.3, 0.42)


@dataclass(frozen=True)
class TrendSeries:
    """What one trend chart shows, one entry per round, oldest first."""

    dates: Sequence[date]
    deciles: Sequence[Sequence[float]]  # nine cut points per round, or empty when withheld
    practice: Sequence[float | None] = ()
    peers: Sequence[float | None] = ()
    overall: Sequence[float | None] = ()


def month_label(day: date) -> str:
    """A round's reference date on an axis: ``Sep 2026``."""
    return f"{day:%b %Y}"


def _scale_y(series: TrendSeries, top: float, height: float) -> tuple[Callable, list[float]]:
    known = [
        v for seq in (series.practice, series.peers, series.overall) for v in seq if v is not None
    ]
    known += [c for cuts in series.deciles for c in cuts]
    lo, hi = (min(known), max(known)) if known else (0.0, 1.0)
    pad = max((hi - lo) * 0.15, abs(hi) * 0.05, 1e-3)
    lo, hi = max(0.0, lo - pad) if lo >= 0 else lo - pad, hi + pad
    ticks = _nice_ticks(lo, hi, target=4)

    def sy(v: float) -> float:
        return top + height * (1 - (v - lo) / (hi - lo))

    return sy, ticks


def _line(
    xs: Sequence[float],
    ys: Sequence[float | None],
    sy: Callable[[float], float],
    style: str,
    marker: Callable[[float, float], str],
) -> list[str]:
    """A line with a gap wherever a round has no value, and a marker at every value."""
    parts, run = [], []
    for x, y in zip(xs, ys, strict=True):
        if y is None:
            if len(run) > 1:
                parts.append(f'<polyline points="{" ".join(run)}" fill="none" {style}/>')
            run = []
            continue
        run.append(f"{x:.1f},{sy(y):.1f}")
    if len(run) > 1:
        parts.append(f'<polyline points="{" ".join(run)}" fill="none" {style}/>')
    for x, y in zip(xs, ys, strict=True):
        if y is not None:
            parts.append(marker(x, sy(y)))
    return parts


def trend_chart(
    series: TrendSeries, *, title: str, percent: bool, width: int = 460, height: int = 210
) -> Markup:
    """A practice's values across rounds over the rounds' decile bands."""
    left, right, top, bottom = 56, 16, 12, 30
    plot_w, plot_h = width - left - right, height - top - bottom
    n = len(series.dates)
    step = plot_w / n
    xs = [left + step * (i + 0.5) for i in range(n)]
    sy, ticks = _scale_y(series, top, plot_h)
    text = _tick_formatter(ticks, percent)
    parts = [
        f'<svg viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
        f'aria-label="{escape(title)}" class="chart trend" {FONT} font-size="11">'
        f"<title>{escape(title)}</title>",
        f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="#fff" '
        f'stroke="{LIGHT_GREY}"/>',
    ]
    for t in ticks:
        parts.append(
            f'<line x1="{left}" x2="{left + plot_w}" y1="{sy(t):.1f}" y2="{sy(t):.1f}" '
            f'stroke="{GRID}"/><text x="{left - 6}" y="{sy(t) + 4:.1f}" text-anchor="end" '
            f'fill="{AXIS}">{escape(text(t))}</text>'
        )
    for x, day in zip(xs, series.dates, strict=True):
        parts.append(
            f'<text x="{x:.1f}" y="{top + plot_h + 16}" text-anchor="middle" '
            f'fill="{AXIS}">{escape(month_label(day))}</text>'
        )
    # Bands: one trapezoid per pair of neighbouring rounds that both have cut points, or a
    # column when a round stands alone.
    half = min(step * 0.35, 28)
    for band, opacity in enumerate(BAND_OPACITY):
        style = f'fill="{BLUE}" fill-opacity="{opacity}" stroke="none"'
        for i, cuts in enumerate(series.deciles):
            if len(cuts) != 9:
                continue
            lo_y, hi_y = sy(cuts[band]), sy(cuts[8 - band])
            alone = not (
                (i > 0 and len(series.deciles[i - 1]) == 9)
                or (i + 1 < n and len(series.deciles[i + 1]) == 9)
            )
            if alone:
                parts.append(
                    f'<rect x="{xs[i] - half:.1f}" y="{hi_y:.1f}" width="{2 * half:.1f}" '
                    f'height="{max(lo_y - hi_y, 0.5):.1f}" {style}/>'
                )
            if i + 1 < n and len(series.deciles[i + 1]) == 9:
                nxt = series.deciles[i + 1]
                x0, x1 = xs[i], xs[i + 1]
                parts.append(
                    f'<polygon points="{x0:.1f},{hi_y:.1f} {x1:.1f},{sy(nxt[8 - band]):.1f} '
                    f'{x1:.1f},{sy(nxt[band]):.1f} {x0:.1f},{lo_y:.1f}" {style}/>'
                )
    medians = [cuts[4] if len(cuts) == 9 else None for cuts in series.deciles]
    parts += _line(
        xs,
        medians,
        sy,
        f'stroke="{BLUE}" stroke-width="1.2" stroke-dasharray="4 3"',
        lambda x, y: (
            f'<line x1="{x - half:.1f}" x2="{x + half:.1f}" y1="{y:.1f}" '
            f'y2="{y:.1f}" stroke="{BLUE}" stroke-width="1.2" stroke-dasharray="4 3"/>'
            if n == 1
            else ""
        ),
    )
    if series.overall:
        parts += _line(
            xs,
            series.overall,
            sy,
            f'stroke="{INK}" stroke-width="2"',
            lambda x, y: f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{INK}"/>',
        )
    if series.peers:
        parts += _line(
            xs,
            series.peers,
            sy,
            f'stroke="{BLUISH_GREEN}" stroke-width="2" stroke-dasharray="6 3"',
            lambda x, y: (
                f'<rect x="{x - 4:.1f}" y="{y - 4:.1f}" width="8" height="8" '
                f'fill="{BLUISH_GREEN}"/>'
            ),
        )
    if series.practice:
        parts += _line(
            xs,
            series.practice,
            sy,
            f'stroke="{VERMILION}" stroke-width="2.5"',
            lambda x, y: (
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="5" '
                f'fill="{VERMILION}" stroke="#fff" stroke-width="1.5"/>'
            ),
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def trend_legend(*, practice: bool, peers: bool, bands: bool = True) -> Markup:
    """The key shared by a page's trend charts."""
    items, x = [], 0
    if bands:
        items.append(
            f'<rect x="{x}" y="2" width="22" height="12" fill="{BLUE}" fill-opacity="0.3"/>'
            f'<text x="{x + 28}" y="12">Deciles of practices (darker: nearer the middle)</text>'
            f'<line x1="{x + 300}" x2="{x + 322}" y1="8" y2="8" stroke="{BLUE}" '
            f'stroke-dasharray="4 3"/><text x="{x + 328}" y="12">Median practice</text>'
        )
        x += 440
    if peers:
        items.append(
            f'<line x1="{x}" x2="{x + 22}" y1="8" y2="8" stroke="{BLUISH_GREEN}" stroke-width="2" '
            f'stroke-dasharray="6 3"/><rect x="{x + 7}" y="4" width="8" height="8" '
            f'fill="{BLUISH_GREEN}"/><text x="{x + 28}" y="12">Most alike practices (median)</text>'
        )
        x += 230
    if practice:
        items.append(
            f'<line x1="{x}" x2="{x + 22}" y1="8" y2="8" stroke="{VERMILION}" '
            f'stroke-width="2.5"/><circle cx="{x + 11}" cy="8" r="5" fill="{VERMILION}"/>'
            f'<text x="{x + 28}" y="12">Your practice</text>'
        )
        x += 130
    if not bands and not practice:
        items.append(
            f'<line x1="{x}" x2="{x + 22}" y1="8" y2="8" stroke="{INK}" stroke-width="2"/>'
            f'<circle cx="{x + 11}" cy="8" r="4" fill="{INK}"/>'
            f'<text x="{x + 28}" y="12">All practices (pooled)</text>'
        )
        x += 180
    return Markup(
        f'<svg viewBox="0 0 {x} 18" width="{x}" height="18" class="legend" {FONT} '
        f'font-size="12" fill="{INK}" role="img" aria-label="Key to the trend charts">'
        f"{''.join(items)}</svg>"
    )


@dataclass(frozen=True)
class Bar:
    """One practice's value in a side-by-side chart (None: no value, said in words)."""

    label: str
    value: float | None
    text: str


def side_by_side(
    bars: Sequence[Bar],
    *,
    reference: float | None,
    reference_label: str,
    title: str,
    percent: bool,
    width: int = 760,
) -> Markup:
    """Horizontal bars, one per practice, against a reference line (all practices)."""
    label_w, bar_h, gap, top = 200, 24, 10, 8
    axis_h = 34
    plot_w = width - label_w - 90
    height = top + len(bars) * (bar_h + gap) + axis_h
    known = [b.value for b in bars if b.value is not None]
    if reference is not None:
        known.append(reference)
    hi = max(known) * 1.1 if known and max(known) > 0 else 1.0
    ticks = _nice_ticks(0.0, hi, target=5)
    hi = max(hi, ticks[-1])
    text = _tick_formatter(ticks, percent)

    def sx(v: float) -> float:
        return label_w + plot_w * v / hi

    parts = [
        f'<svg viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
        f'aria-label="{escape(title)}" class="chart side" {FONT} font-size="14">'
        f"<title>{escape(title)}</title>"
    ]
    base = top + len(bars) * (bar_h + gap)
    for t in ticks:
        parts.append(
            f'<line x1="{sx(t):.1f}" x2="{sx(t):.1f}" y1="{top}" y2="{base}" stroke="{GRID}"/>'
            f'<text x="{sx(t):.1f}" y="{base + 16}" text-anchor="middle" fill="{AXIS}" '
            f'font-size="12">{escape(text(t))}</text>'
        )
    for i, bar in enumerate(bars):
        y = top + i * (bar_h + gap)
        parts.append(
            f'<text x="{label_w - 10}" y="{y + bar_h / 2 + 5}" text-anchor="end" '
            f'fill="{INK}">{escape(bar.label)}</text>'
        )
        if bar.value is None:
            parts.append(
                f'<text x="{label_w + 6}" y="{y + bar_h / 2 + 5}" fill="{AXIS}" '
                f'font-style="italic">{escape(bar.text)}</text>'
            )
            continue
        w = max(sx(bar.value) - label_w, 1.0)
        parts.append(
            f'<rect x="{label_w}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="{SKY_BLUE}"/>'
            f'<text x="{label_w + w + 6:.1f}" y="{y + bar_h / 2 + 5}" fill="{INK}" '
            f'font-weight="bold">{escape(bar.text)}</text>'
        )
    if reference is not None:
        x = sx(reference)
        parts.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top - 4}" y2="{base}" stroke="{INK}" '
            f'stroke-width="2" stroke-dasharray="6 3"/>'
            f'<text x="{x:.1f}" y="{base + 30}" text-anchor="middle" fill="{INK}" '
            f'font-size="12">{escape(reference_label)}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))
