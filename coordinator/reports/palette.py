"""The reports' colours, declared once: Okabe and Ito's palette, safe for colour-blind readers.

Okabe M, Ito K (2008), "Color Universal Design": eight colours that stay distinct under
the common colour-vision deficiencies. Every chart takes its colours from here; where a
colour carries meaning (the reader's practice, an alarm) a shape or a word carries it too.
"""

from __future__ import annotations

BLUE = "#0072B2"
ORANGE = "#E69F00"
SKY_BLUE = "#56B4E9"
BLUISH_GREEN = "#009E73"
YELLOW = "#F0E442"
VERMILION = "#D55E00"
REDDISH_PURPLE = "#CC79A7"
DARK_BLUE = "#003A63"  # a darker blue for outlines and the all-practice lines

INK = "#212B32"  # text
AXIS = "#425563"  # axes and tick labels
GREY = "#768692"  # what is not the point: other practices' marks, withheld segments
LIGHT_GREY = "#D8DDE0"
GRID = "#F0F4F5"

# Categories in order (skill mix and other breakdowns); light ones get dark text.
CATEGORY_COLOURS = (BLUE, ORANGE, BLUISH_GREEN, REDDISH_PURPLE, SKY_BLUE, VERMILION, GREY)
LIGHT_FILLS = frozenset({ORANGE, SKY_BLUE, YELLOW, REDDISH_PURPLE, BLUISH_GREEN})


def text_on(fill: str) -> str:
    """The colour of text laid on ``fill``: dark on light fills, white on dark ones."""
    return INK if fill in LIGHT_FILLS else "#fff"
