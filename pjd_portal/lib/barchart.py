"""Bar charts as plain geometry, for SVG drawn by a Django template on the server.

The portal's CSP allows no inline script or style, and a chart needs neither: the
template draws each bar as a <rect> from the numbers here, colours come from the
stylesheet by class. Framework-free: values in, coordinates out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

# The horizontal chart: a label column, then the bars, then room for the count.
ROW_HEIGHT = 28
BAR_HEIGHT = 18
LABEL_WIDTH = 280
BAR_WIDTH = 260
COUNT_WIDTH = 60
WIDTH = LABEL_WIDTH + BAR_WIDTH + COUNT_WIDTH

# The column chart (a value per day): the plot area, and room for the axis labels.
COLUMNS_WIDTH = 600
COLUMNS_PLOT_HEIGHT = 160
COLUMNS_TOP = 20
COLUMNS_LEFT = 40
COLUMNS_BOTTOM = 24


@dataclass(frozen=True)
class Bar:
    label: str
    count: int
    x: float
    y: float
    width: float
    height: float
    text_x: float  # where the label goes (horizontal: left of the bar; columns: below it)
    text_y: float
    count_x: float  # where the count goes (horizontal: right of the bar)


@dataclass(frozen=True)
class Chart:
    bars: list[Bar]
    width: int
    height: int
    maximum: int
    # The plot's edges, for the axis and its labels (the column chart).
    left: int = 0
    top: int = 0
    baseline: int = 0


def _scale(count: int, maximum: int, length: float) -> float:
    return round(length * count / maximum, 2) if maximum else 0.0


def horizontal(items: Sequence[tuple[str, int]]) -> Chart:
    """One row per item: its label at the left, a bar as long as its share of the largest."""

    maximum = max((count for _, count in items), default=0)
    bars = []
    for index, (label, count) in enumerate(items):
        top = index * ROW_HEIGHT
        bars.append(
            Bar(
                label=label,
                count=count,
                x=LABEL_WIDTH,
                y=top + (ROW_HEIGHT - BAR_HEIGHT) / 2,
                width=_scale(count, maximum, BAR_WIDTH),
                height=BAR_HEIGHT,
                text_x=LABEL_WIDTH - 8,
                text_y=top + ROW_HEIGHT / 2 + 5,
                count_x=LABEL_WIDTH + _scale(count, maximum, BAR_WIDTH) + 6,
            )
        )
    return Chart(bars=bars, width=WIDTH, height=max(len(items), 1) * ROW_HEIGHT, maximum=maximum)


def columns(items: Sequence[tuple[str, int]]) -> Chart:
    """One column per item (per day), left to right, from a common baseline."""

    maximum = max((count for _, count in items), default=0)
    slot = (COLUMNS_WIDTH - COLUMNS_LEFT) / max(len(items), 1)
    gap = min(2.0, slot / 4)
    baseline = COLUMNS_TOP + COLUMNS_PLOT_HEIGHT
    bars = []
    for index, (label, count) in enumerate(items):
        height = _scale(count, maximum, COLUMNS_PLOT_HEIGHT)
        x = round(COLUMNS_LEFT + index * slot + gap / 2, 2)
        bars.append(
            Bar(
                label=label,
                count=count,
                x=x,
                y=round(baseline - height, 2),
                width=round(slot - gap, 2),
                height=height,
                text_x=round(x + (slot - gap) / 2, 2),
                text_y=baseline + 16,
                count_x=round(x + (slot - gap) / 2, 2),
            )
        )
    return Chart(
        bars=bars,
        width=COLUMNS_WIDTH,
        height=baseline + COLUMNS_BOTTOM,
        maximum=maximum,
        left=COLUMNS_LEFT,
        top=COLUMNS_TOP,
        baseline=baseline,
    )
