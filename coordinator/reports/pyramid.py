"""A population pyramid as inline SVG: a practice's age-sex shares against all practices."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from markupsafe import Markup, escape

from coordinator.reports.charts import FONT
from coordinator.reports.palette import AXIS, BLUE, DARK_BLUE, INK, SKY_BLUE


def _band_key(band: str) -> int:
    return int(band.rstrip("+").split("-")[0])


def age_sex_shares(counts: Mapping[str, float]) -> dict[str, float]:
    """Each ``sex.band`` cell as a share of all the released cells."""
    total = sum(counts.values())
    return {cell: count / total for cell, count in counts.items()} if total > 0 else {}


def population_pyramid(
    shares: Mapping[str, float],
    reference: Mapping[str, float] | None,
    *,
    title: str,
    shares_label: str = "Your practice",
    reference_label: str = "All practices",
    width: int = 620,
) -> Markup:
    """Men to the left, women to the right; bars for ``shares``, an outline for ``reference``."""
    bands: Sequence[str] = sorted(
        {cell.split(".", 1)[1] for cell in [*shares, *(reference or {})]},
        key=_band_key,
        reverse=True,
    )
    if not bands:
        return Markup("")
    row_h, top, bottom, middle = 15, 30, 36, 44
    height = top + bottom + row_h * len(bands)
    side = 30  # room for the outer tick labels
    half = (width - middle) / 2 - side
    largest = max([*shares.values(), *(reference or {}).values()])
    scale_max = math.ceil(largest * 100 + 0.5) / 100  # the next whole per cent

    def length(share: float) -> float:
        return half * share / scale_max

    centre_left = side + half
    centre_right = centre_left + middle
    parts = [
        f'<svg viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
        f'aria-label="{escape(title)}" class="chart pyramid" {FONT} font-size="11">'
        f"<title>{escape(title)}</title>",
        f'<text x="{centre_left - 4}" y="14" text-anchor="end" font-weight="bold" '
        f'fill="{INK}">Men</text>',
        f'<text x="{centre_right + 4}" y="14" font-weight="bold" fill="{INK}">Women</text>',
    ]
    for i, band in enumerate(bands):
        y = top + i * row_h
        parts.append(
            f'<text x="{centre_left + middle / 2}" y="{y + row_h - 4}" text-anchor="middle" '
            f'fill="{AXIS}">{escape(band)}</text>'
        )
        for sex, colour in (("male", BLUE), ("female", SKY_BLUE)):
            share = shares.get(f"{sex}.{band}", 0.0)
            w = length(share)
            x = centre_left - w if sex == "male" else centre_right
            parts.append(
                f'<rect x="{x:.1f}" y="{y + 1}" width="{w:.1f}" height="{row_h - 2}" '
                f'fill="{colour}"><title>{sex.capitalize()} {escape(band)}: '
                f"{100 * share:.1f}%</title></rect>"
            )
            if reference is not None:
                r = length(reference.get(f"{sex}.{band}", 0.0))
                edge = centre_left - r if sex == "male" else centre_right + r
                parts.append(
                    f'<line x1="{edge:.1f}" x2="{edge:.1f}" y1="{y}" y2="{y + row_h}" '
                    f'stroke="{DARK_BLUE}" stroke-width="2.5"/>'
                )
    axis_y = top + row_h * len(bands) + 4
    for fraction in (0.0, 0.5, 1.0):
        tick = scale_max * fraction
        for x in {centre_left - length(tick), centre_right + length(tick)}:
            parts.append(
                f'<text x="{x:.1f}" y="{axis_y + 10}" text-anchor="middle" '
                f'fill="{AXIS}">{100 * tick:.1f}%</text>'
            )
    key_y = height - 8
    parts.append(
        f'<rect x="{centre_left - 150}" y="{key_y - 9}" width="10" height="10" fill="{BLUE}"/>'
        f'<rect x="{centre_left - 139}" y="{key_y - 9}" width="10" height="10" '
        f'fill="{SKY_BLUE}"/><text x="{centre_left - 124}" y="{key_y}" '
        f'fill="{INK}">{escape(shares_label)}</text>'
    )
    if reference is not None:
        parts.append(
            f'<line x1="{centre_right + 10}" x2="{centre_right + 10}" y1="{key_y - 11}" '
            f'y2="{key_y + 2}" stroke="{DARK_BLUE}" stroke-width="2.5"/>'
            f'<text x="{centre_right + 18}" y="{key_y}" fill="{INK}">'
            f"{escape(reference_label)}</text>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))
