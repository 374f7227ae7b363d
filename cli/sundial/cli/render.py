"""How the CLI shows things: kubectl-style tables, times, durations, colour, JSON and YAML.

Everything here is pure (no clock, no I/O except `echo`), so output can be asserted on exactly.
Colour is added only when stdout is a terminal and NO_COLOR is unset, so piped output and
snapshots never carry escape codes.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final
from zoneinfo import ZoneInfo

import click
import yaml

from sundial.core.policies import UpcomingFire

COLUMN_GAP: Final = "   "  # kubectl's
ERROR_WIDTH: Final = 60

# Keyed by the Kubernetes-facing spelling (sundial.core.runs.RUN_STATUS_API) the CLI prints.
STATUS_COLOURS: Final[dict[str, str]] = {
    "Succeeded": "green",
    "Failed": "red",
    "TimedOut": "red",
    "Running": "cyan",
    "Cancelled": "yellow",
    "Skipped": "yellow",
}
VERDICT_COLOURS: Final[dict[str, str]] = {"OK": "green", "WARN": "yellow", "FAIL": "red", "SKIP": "bright_black"}


def colour_enabled() -> bool:
    if os.environ.get("NO_COLOR"):
        return False
    return bool(sys.stdout.isatty())


@dataclass(frozen=True)
class Styled:
    """A table cell with a colour, applied after padding so columns still line up."""

    text: str
    fg: str | None = None
    bold: bool = False


Cell = str | Styled


def paint(text: str, fg: str | None = None, *, bold: bool = False, colour: bool | None = None) -> str:
    if colour is None:
        colour = colour_enabled()
    if not colour or (fg is None and not bold):
        return text
    return click.style(text, fg=fg, bold=bold)


def status_cell(status: str) -> Styled:
    return Styled(status, STATUS_COLOURS.get(status))


def table(headers: Sequence[str], rows: Iterable[Sequence[Cell]], *, colour: bool | None = None) -> list[str]:
    """Left-aligned columns three spaces apart, upper-case headers, no trailing blanks."""
    body = [list(row) for row in rows]
    texts = [[_text(cell) for cell in row] for row in body]
    widths = [len(header) for header in headers]
    for plain_row in texts:
        for index, text in enumerate(plain_row):
            widths[index] = max(widths[index], len(text))
    lines = [COLUMN_GAP.join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    for row, row_texts in zip(body, texts, strict=True):
        cells: list[str] = []
        for index, (cell, text) in enumerate(zip(row, row_texts, strict=True)):
            padded = text if index == len(row) - 1 else text.ljust(widths[index])
            if isinstance(cell, Styled) and text:
                padded = padded.replace(text, paint(text, cell.fg, bold=cell.bold, colour=colour), 1)
            cells.append(padded)
        lines.append(COLUMN_GAP.join(cells).rstrip())
    return lines


def _text(cell: Cell) -> str:
    return cell.text if isinstance(cell, Styled) else cell


def local_time(moment: datetime | None, zone: ZoneInfo) -> str:
    """`2025-01-15 09:00:00 -03`: the wall time people scheduled in, with the zone's abbreviation."""
    if moment is None:
        return "-"
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S %Z")


def jitter_note(fire: UpcomingFire, zone: ZoneInfo) -> str:
    """`(slot 09:00:00 + jitter 12.3s)` for a run that starts after its slot, else nothing."""
    if not fire.jitter:
        return ""
    return f"(slot {fire.slot.astimezone(zone).strftime('%H:%M:%S')} + jitter {duration_ms(fire.jitter // _MS)})"


def fire_line(fire: UpcomingFire, zone: ZoneInfo) -> str:
    """`sundial next`'s line: the start in ISO 8601 with its offset, and the jitter if any."""
    return f"{fire.start.astimezone(zone).isoformat()}   {jitter_note(fire, zone)}".rstrip()


_MS: Final = timedelta(milliseconds=1)


def duration_ms(value: int | None) -> str:
    """850ms, 1.2s, 2m03s, 1h02m."""
    if value is None:
        return "-"
    if value < 1000:
        return f"{value}ms"
    seconds = value / 1000
    if seconds < 60:
        return f"{seconds:.1f}s"
    whole = int(seconds)
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


def human_age(delta: timedelta) -> str:
    """kubectl's short durations (HumanDuration): 45s, 3m20s, 5h, 2d3h, 400d."""
    seconds = int(abs(delta.total_seconds()))
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if seconds < 120:
        return f"{seconds}s"
    if minutes < 10:
        return f"{minutes}m{seconds % 60}s" if seconds % 60 else f"{minutes}m"
    if hours < 3:
        return f"{minutes}m"
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if days < 2:
        return f"{hours}h"
    if days < 8:
        return f"{days}d{hours % 24}h" if hours % 24 else f"{days}d"
    if days < 365 * 2:
        return f"{days}d"
    return f"{days // 365}y"


def relative(moment: datetime, now: datetime) -> str:
    delta = moment - now
    return f"in {human_age(delta)}" if delta.total_seconds() >= 0 else f"{human_age(delta)} ago"


def error_summary(error: str | None, width: int = ERROR_WIDTH) -> str:
    """The first line of an error, cut to `width`: tracebacks belong in -o yaml, not a table."""
    if not error:
        return ""
    first = error.strip().splitlines()[0] if error.strip() else ""
    return first if len(first) <= width else first[: width - 1] + "…"


def to_json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): to_json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json_value(v) for v in value]
    return value


def dump(data: Any, fmt: str) -> str:
    """JSON (indented, as kubectl -o json) or YAML (keys in the order given)."""
    plain = to_json_value(data)
    if fmt == "json":
        return json.dumps(plain, indent=2, ensure_ascii=False)
    return yaml.safe_dump(plain, sort_keys=False, allow_unicode=True, default_flow_style=False).rstrip("\n")


def echo_lines(lines: Iterable[str]) -> None:
    for line in lines:
        click.echo(line)
