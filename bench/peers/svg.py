"""A small dependency-free SVG line chart: categories along x, one line per series."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape

WIDTH, HEIGHT = 720, 380
LEFT, RIGHT, TOP, BOTTOM = 70, 190, 40, 50


@dataclass(frozen=True)
class Series:
    label: str
    # (index into the chart's categories, value); NaN values leave a gap.
    points: Sequence[tuple[int, float]]
    color: str
    dashed: bool = False


def nice_ceiling(value: float) -> float:
    """The smallest 1, 2 or 5 times a power of ten at or above `value`."""
    if not value > 0 or math.isinf(value):
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    return next(step * power for step in (1, 2, 5, 10) if step * power >= value)


def decades(values: Sequence[float]) -> tuple[int, int]:
    """The powers of ten a logarithmic axis spans to show every positive value: (lowest, highest)."""
    positive = [value for value in values if value > 0 and math.isfinite(value)] or [1.0]
    low, high = math.floor(math.log10(min(positive))), math.ceil(math.log10(max(positive)))
    return low, max(high, low + 1)


def line_chart(title: str, categories: Sequence[str], x_label: str, y_label: str, series: Sequence[Series],
               *, logarithmic: bool = False) -> str:
    """`logarithmic`: a y axis in powers of ten, for figures that span several (lateness from a few
    milliseconds to tens of seconds), where a linear one flattens all but the largest to its floor."""
    series = [line for line in series if any(math.isfinite(y) for _, y in line.points)]
    values = [y for s in series for _, y in s.points if math.isfinite(y)]
    top = nice_ceiling(max(values, default=1.0))
    low, high = decades(values)
    ticks = [10.0 ** power for power in range(low, high + 1)] if logarithmic else [top * t / 5 for t in range(6)]
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x_at(index: int) -> float:
        return LEFT + (plot_w * (index + 0.5) / len(categories))

    def y_at(value: float) -> float:
        share = (math.log10(max(value, 10.0 ** low)) - low) / (high - low) if logarithmic else value / top
        return TOP + plot_h * (1 - share)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
             f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">',
             f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
             f'<text x="{WIDTH / 2}" y="22" text-anchor="middle" font-size="15">{escape(title)}</text>']
    for value in ticks:
        y = y_at(value)
        parts.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{LEFT + plot_w}" y2="{y:.1f}" stroke="#ddd"/>')
        label = f"{value:,.0f}" if value.is_integer() else f"{value:g}"
        parts.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{label}</text>')
    for index, category in enumerate(categories):
        parts.append(f'<text x="{x_at(index):.1f}" y="{TOP + plot_h + 18}" text-anchor="middle">'
                     f'{escape(category)}</text>')
    parts.append(f'<text x="{LEFT + plot_w / 2}" y="{HEIGHT - 8}" text-anchor="middle">{escape(x_label)}</text>')
    parts.append(f'<text transform="translate(16 {TOP + plot_h / 2}) rotate(-90)" text-anchor="middle">'
                 f'{escape(y_label)}</text>')
    parts.append(f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#888"/>')
    for number, line in enumerate(series):
        parts.extend(_series(line, x_at, y_at))
        legend_y = TOP + 10 + number * 18
        dash = ' stroke-dasharray="5 3"' if line.dashed else ""
        parts.append(f'<line x1="{WIDTH - RIGHT + 12}" y1="{legend_y}" x2="{WIDTH - RIGHT + 36}" y2="{legend_y}" '
                     f'stroke="{line.color}" stroke-width="2"{dash}/>')
        parts.append(f'<text x="{WIDTH - RIGHT + 42}" y="{legend_y + 4}">{escape(line.label)}</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def _series(line: Series, x_at: Callable[[int], float], y_at: Callable[[float], float]) -> list[str]:
    dash = ' stroke-dasharray="5 3"' if line.dashed else ""
    parts: list[str] = []
    run: list[str] = []
    for index, value in [*line.points, (-1, math.nan)]:
        if math.isfinite(value):
            x, y = x_at(index), y_at(value)
            run.append(f"{x:.1f},{y:.1f}")
            parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{line.color}"/>')
        elif run:
            parts.append(f'<polyline points="{" ".join(run)}" fill="none" stroke="{line.color}" '
                         f'stroke-width="2"{dash}/>')
            run = []
    return parts
