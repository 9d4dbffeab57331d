"""Charts as hand-written inline SVG: no script, no external asset, prints crisply.

Every function returns ``Markup`` ready for a Jinja template; every piece of text placed
in the SVG is escaped here. Practices other than the reader's are unlabelled dots.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from markupsafe import Markup, escape

from coordinator.funnel import FunnelModel
from coordinator.reports.palette import (
    AXIS,
    BLUE,
    CATEGORY_COLOURS,
    DARK_BLUE,
    GREY,
    GRID,
    INK,
    LIGHT_GREY,
    ORANGE,
    text_on,
)

FONT = "font-family=\"Arial, 'Helvetica Neue', Helvetica, sans-serif\""


def _id(prefix: str, title: str) -> str:
    # Several charts share one page, so ids must differ; derived from the title so that
    # the same comparison always renders the same bytes.
    return f"{prefix}-{hashlib.sha1(title.encode()).hexdigest()[:10]}"


@dataclass(frozen=True)
class FunnelPoint:
    """One practice on a funnel plot: its denominator and value."""

    denominator: float
    value: float
    highlighted: bool = False


def _nice_ticks(low: float, high: float, target: int = 5) -> list[float]:
    span = high - low
    if span <= 0:
        return [low]
    raw = span / target
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.ceil(low / step) * step
    return [first + i * step for i in range(int((high - first) / step + 1e-9) + 1)]


def _log_ticks(low: float, high: float) -> list[float]:
    ticks = []
    for exponent in range(math.floor(math.log10(low)), math.ceil(math.log10(high)) + 1):
        for m in (1, 2, 5):
            t = m * 10**exponent
            if low <= t <= high:
                ticks.append(float(t))
    return ticks


def _short_number(x: float) -> str:
    if x >= 1000 and x % 1000 == 0:
        return f"{x / 1000:,.0f}k"
    if x >= 1000:
        return f"{x / 1000:,.1f}k"
    return f"{x:,.0f}"


@lru_cache(maxsize=64)
def _curve(model: FunnelModel, grid: tuple[float, ...]) -> list:
    # Every practice's report draws the same funnels: compute each curve once.
    return model.curve(grid)


def _tick_formatter(ticks: Sequence[float], percent: bool) -> Callable[[float], str]:
    scale = 100 if percent else 1
    step = (ticks[1] - ticks[0]) * scale if len(ticks) > 1 else 1
    decimals = max(0, -math.floor(math.log10(step) + 1e-9)) if step > 0 else 0
    if percent:
        return lambda v: f"{v * scale:.{decimals}f}%"
    return lambda v: f"{v:,.{decimals}f}"


def funnel_plot(
    model: FunnelModel,
    points: Sequence[FunnelPoint],
    *,
    title: str,
    percent: bool,
    x_label: str = "Denominator (practice size for this indicator)",
    y_label: str = "Value",
    width: int = 460,
    height: int = 290,
) -> Markup:
    """A funnel plot: target line, 95% and 99.8% limits, practices as dots."""
    left, right, top, bottom = 56, 14, 14, 44
    plot_w, plot_h = width - left - right, height - top - bottom
    dens = [p.denominator for p in points if p.denominator > 0]
    vals = [p.value for p in points]
    x_lo, x_hi = min(dens) * 0.8, max(dens) * 1.15
    use_log = x_hi / x_lo > 20
    if not use_log:
        x_lo = 0.0
    y_lo, y_hi = min([*vals, model.target]), max([*vals, model.target])
    pad = max((y_hi - y_lo) * 0.25, abs(model.target) * 0.05, 1e-3)
    y_lo, y_hi = y_lo - pad, y_hi + pad
    if model.distribution == "binomial":
        y_lo, y_hi = max(0.0, y_lo), min(1.0, y_hi)
    else:
        y_lo = max(0.0, y_lo)

    def sx(n: float) -> float:
        if use_log:
            return left + plot_w * (math.log(n) - math.log(x_lo)) / (
                math.log(x_hi) - math.log(x_lo)
            )
        return left + plot_w * (n - x_lo) / (x_hi - x_lo)

    def sy(v: float) -> float:
        return top + plot_h * (1 - (v - y_lo) / (y_hi - y_lo))

    # Geometric spacing samples the limits densely where the funnel bends (small sizes).
    start = max(x_lo, x_hi / 100, 5.0)
    grid = tuple(start * (x_hi / start) ** (i / 79) for i in range(80))
    curve = _curve(model, grid)
    clip = _id("clip", title)
    parts = [
        f'<svg viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" aria-label="{escape(title)}" '
        f'class="chart funnel" {FONT} font-size="11">',
        f"<title>{escape(title)}</title>",
        f'<defs><clipPath id="{clip}"><rect x="{left}" y="{top}" width="{plot_w}" '
        f'height="{plot_h}"/></clipPath></defs>',
        f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="#fff" '
        f'stroke="{LIGHT_GREY}"/>',
    ]
    y_ticks = _nice_ticks(y_lo, y_hi)
    tick_text = _tick_formatter(y_ticks, percent)
    for t in y_ticks:
        y = sy(t)
        parts.append(
            f'<line x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}" '
            f'stroke="{GRID}"/><text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" '
            f'fill="{AXIS}">{escape(tick_text(t))}</text>'
        )
    x_ticks = _log_ticks(max(x_lo, 1), x_hi) if use_log else _nice_ticks(x_lo, x_hi)
    for t in x_ticks:
        x = sx(t)
        parts.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top + plot_h}" y2="{top + plot_h + 4}" '
            f'stroke="{AXIS}"/><text x="{x:.1f}" y="{top + plot_h + 16}" '
            f'text-anchor="middle" fill="{AXIS}">{escape(_short_number(t))}</text>'
        )
    parts.append(
        f'<text x="{left + plot_w / 2}" y="{height - 6}" text-anchor="middle" '
        f'fill="{AXIS}">{escape(x_label)}{" (log scale)" if use_log else ""}</text>'
    )

    def path(values: list[float]) -> str:
        return " ".join(
            f"{'M' if i == 0 else 'L'}{sx(n):.1f},{sy(v):.1f}"
            for i, (n, v) in enumerate(zip(grid, values, strict=True))
        )

    parts.append(f'<g clip-path="url(#{clip})" fill="none">')
    for attr, style in (
        ("upper_998", f'stroke="{DARK_BLUE}" stroke-width="1.5"'),
        ("lower_998", f'stroke="{DARK_BLUE}" stroke-width="1.5"'),
        ("upper_95", f'stroke="{BLUE}" stroke-width="1.2" stroke-dasharray="5 3"'),
        ("lower_95", f'stroke="{BLUE}" stroke-width="1.2" stroke-dasharray="5 3"'),
    ):
        parts.append(f'<path d="{path([getattr(c, attr) for c in curve])}" {style}/>')
    y_target = sy(model.target)
    parts.append(
        f'<line x1="{left}" x2="{left + plot_w}" y1="{y_target:.1f}" y2="{y_target:.1f}" '
        f'stroke="{INK}" stroke-width="1.5"/>'
    )
    for p in sorted(points, key=lambda p: p.highlighted):
        if p.denominator <= 0:
            continue
        if p.highlighted:
            parts.append(
                f'<circle cx="{sx(p.denominator):.1f}" cy="{sy(p.value):.1f}" r="7" '
                f'fill="{ORANGE}" stroke="{INK}" stroke-width="1.5"/>'
            )
        else:
            parts.append(
                f'<circle cx="{sx(p.denominator):.1f}" cy="{sy(p.value):.1f}" r="3.5" '
                f'fill="{GREY}" fill-opacity="0.75"/>'
            )
    parts.append("</g>")
    parts.append(
        f'<text x="{left - 44}" y="{top + plot_h / 2}" fill="{AXIS}" text-anchor="middle" '
        f'transform="rotate(-90 {left - 44} {top + plot_h / 2})">{escape(y_label)}</text>'
    )
    parts.append("</svg>")
    return Markup("".join(parts))


def funnel_legend() -> Markup:
    """The key shared by a practice report's funnel plots, its own practice highlighted."""
    items = [
        f'<line x1="0" x2="22" y1="8" y2="8" stroke="{INK}" stroke-width="1.5"/>'
        '<text x="28" y="12">All-practice value</text>',
        f'<line x1="150" x2="172" y1="8" y2="8" stroke="{BLUE}" stroke-width="1.2" '
        f'stroke-dasharray="5 3"/><text x="178" y="12">95% limits</text>',
        f'<line x1="260" x2="282" y1="8" y2="8" stroke="{DARK_BLUE}" stroke-width="1.5"/>'
        f'<text x="288" y="12">99.8% limits</text>',
        f'<circle cx="382" cy="8" r="3.5" fill="{GREY}"/><text x="390" y="12">A practice</text>',
        f'<circle cx="482" cy="8" r="6" fill="{ORANGE}" stroke="{INK}" '
        f'stroke-width="1.5"/><text x="493" y="12">Your practice</text>',
    ]
    return Markup(
        '<svg viewBox="0 0 590 18" width="590" '
        f'height="18" class="legend" {FONT} font-size="12" fill="{INK}" role="img" '
        f'aria-label="Key to the funnel plots">{"".join(items)}</svg>'
    )


def range_strip(
    values: Sequence[float],
    *,
    lower_quartile: float | None,
    median: float | None,
    upper_quartile: float | None,
    highlight: float | None = None,
    width: int = 170,
    height: int = 26,
    label: str = "Spread of practice values",
) -> Markup:
    """A compact strip: every practice as a tick, the quartiles as a box, one dot highlighted."""
    if not values:
        return Markup("")
    lo, hi = min(values), max(values)
    if highlight is not None:
        lo, hi = min(lo, highlight), max(hi, highlight)
    span = (hi - lo) or 1.0
    pad = 7

    def sx(v: float) -> float:
        return pad + (width - 2 * pad) * (v - lo) / span

    mid = height / 2
    parts = [
        f'<svg viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" aria-label="{escape(label)}" '
        f'class="chart strip"><title>{escape(label)}</title>',
        f'<line x1="{sx(lo):.1f}" x2="{sx(hi):.1f}" y1="{mid}" y2="{mid}" stroke="{LIGHT_GREY}" '
        f'stroke-width="2"/>',
    ]
    if lower_quartile is not None and upper_quartile is not None:
        parts.append(
            f'<rect x="{sx(lower_quartile):.1f}" y="{mid - 6}" '
            f'width="{max(sx(upper_quartile) - sx(lower_quartile), 1):.1f}" height="12" '
            f'fill="{GRID}" stroke="{GREY}"/>'
        )
    ticks = sorted(values)
    if len(ticks) > 200:
        # At national scale a tick per practice only adds bytes: draw every percentile.
        ticks = [ticks[round(q * (len(ticks) - 1) / 100)] for q in range(101)]
    for v in ticks:
        parts.append(
            f'<line x1="{sx(v):.1f}" x2="{sx(v):.1f}" y1="{mid - 4}" y2="{mid + 4}" '
            f'stroke="{GREY}" stroke-width="1"/>'
        )
    if median is not None:
        parts.append(
            f'<line x1="{sx(median):.1f}" x2="{sx(median):.1f}" y1="{mid - 8}" y2="{mid + 8}" '
            f'stroke="{INK}" stroke-width="2"/>'
        )
    if highlight is not None:
        parts.append(
            f'<circle cx="{sx(highlight):.1f}" cy="{mid}" r="5.5" fill="{ORANGE}" '
            f'stroke="{INK}" stroke-width="1.5"/>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))


@dataclass(frozen=True)
class StackedBar:
    """One labelled 100% bar: shares by category (``None`` where suppressed)."""

    label: str
    shares: Sequence[float | None]


def stacked_bars(
    categories: Sequence[str], bars: Sequence[StackedBar], *, title: str, width: int = 640
) -> Markup:
    """Horizontal 100% stacked bars with a key, e.g. appointments by clinician role."""
    label_w, bar_h, gap, key_h = 170, 26, 12, 26
    plot_w = width - label_w - 10
    height = key_h + len(bars) * (bar_h + gap)
    parts = [
        f'<svg viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" aria-label="{escape(title)}" '
        f'class="chart bars" {FONT} font-size="12"><title>{escape(title)}</title>'
    ]
    x = label_w
    for i, category in enumerate(categories):
        colour = CATEGORY_COLOURS[i % len(CATEGORY_COLOURS)]
        parts.append(
            f'<rect x="{x}" y="4" width="12" height="12" fill="{colour}"/>'
            f'<text x="{x + 16}" y="14" fill="{INK}">{escape(category)}</text>'
        )
        x += 30 + 6.3 * len(category)
    for row_no, bar in enumerate(bars):
        y = key_h + row_no * (bar_h + gap)
        parts.append(
            f'<text x="{label_w - 8}" y="{y + bar_h / 2 + 4}" text-anchor="end" '
            f'fill="{INK}">{escape(bar.label)}</text>'
        )
        known = sum(s for s in bar.shares if s is not None) or 1.0
        x = float(label_w)
        for i, share in enumerate(bar.shares):
            if not share:
                continue
            w = plot_w * share / known
            colour = CATEGORY_COLOURS[i % len(CATEGORY_COLOURS)]
            parts.append(
                f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="{colour}" '
                f'stroke="#fff"><title>{escape(categories[i])}: {100 * share:.0f}%</title></rect>'
            )
            if w > 34:
                ink = text_on(colour)
                parts.append(
                    f'<text x="{x + w / 2:.1f}" y="{y + bar_h / 2 + 4}" text-anchor="middle" '
                    f'fill="{ink}" font-weight="bold">{100 * share:.0f}%</text>'
                )
            x += w
    parts.append("</svg>")
    return Markup("".join(parts))
