"""The two figures every system produces, computed the same way whatever the system.

Each system hands over raw observations (when a run's code started and the slot it ran for;
when a no-op run was recorded as done) in wall-clock milliseconds, and this module turns them
into figures, so no system is measured by a different rule.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from bench.common import percentile
from bench.peers.cpu import CpuShare

SLOT_MS = 1000  # every schedule in the harness fires every second, on the second


@dataclass(frozen=True)
class Start:
    """One run of a schedule: the slot it was for and when its code started (ms since the epoch)."""

    schedule: str
    slot_ms: int
    start_ms: float


@dataclass(frozen=True)
class Window:
    """Slots from `from_ms` (inclusive) to `to_ms` (exclusive) count; earlier ones are start-up."""

    from_ms: int
    to_ms: int

    def slots(self) -> range:
        first = math.ceil(self.from_ms / SLOT_MS) * SLOT_MS
        return range(first, self.to_ms, SLOT_MS)


@dataclass(frozen=True)
class LatenessFigure:
    system: str
    schedules: int
    processes: int
    seconds: float
    runs: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    missed: int
    duplicates: int
    note: str = ""


@dataclass(frozen=True)
class ThroughputFigure:
    system: str
    processes: int
    concurrency: int
    runs_per_s: float
    runs: int
    seconds: float
    note: str = ""
    # The window, in wall-clock ms (nan when there was none), to read CPU counters against.
    opens_ms: float = math.nan
    closes_ms: float = math.nan
    cpu: CpuShare | None = None

    @property
    def worker_us_per_run(self) -> float:
        """Worker CPU per run recorded in the window: steadier than the rate on a shared machine."""
        if self.cpu is None or not self.runs:
            return math.nan
        return sum(self.cpu.workers) * self.seconds / self.runs * 1e6


def lateness_figure(system: str, schedules: Sequence[str], starts: Iterable[Start], window: Window,
                    processes: int, note: str = "") -> LatenessFigure:
    """Lateness of the first start of every slot in the window; a slot never started is missed."""
    expected = set(window.slots())
    seen: dict[str, Counter[int]] = defaultdict(Counter)
    first_start: dict[tuple[str, int], float] = {}
    for start in starts:
        if start.slot_ms not in expected:
            continue
        seen[start.schedule][start.slot_ms] += 1
        key = (start.schedule, start.slot_ms)
        first_start[key] = min(first_start.get(key, math.inf), start.start_ms)
    lateness = [started - slot for (_, slot), started in first_start.items()]
    missed = sum(len(expected - set(seen.get(schedule, ()))) for schedule in schedules)
    duplicates = sum(n - 1 for counts in seen.values() for n in counts.values() if n > 1)
    return LatenessFigure(
        system=system, schedules=len(schedules), processes=processes, seconds=(window.to_ms - window.from_ms) / 1000,
        runs=len(lateness), p50_ms=percentile(lateness, .5), p99_ms=percentile(lateness, .99),
        max_ms=max(lateness, default=math.nan), missed=missed, duplicates=duplicates, note=note)


def behind_at_stop(starts: Sequence[Start], stopped_ms: float, drain_s: float) -> str:
    """Say how far behind a system's runs were when its workers stopped, if further than the
    drain allows: a window with few or no runs then reads as "fell behind", not as "did not run"."""
    newest = max((start.slot_ms for start in starts), default=None)
    if newest is None:
        return "no run started at all"
    behind_s = (stopped_ms - newest) / 1000
    if behind_s <= drain_s + 1:
        return ""
    return f"fell behind: when its workers stopped, the newest slot any had started was {behind_s:.1f} s old"


def throughput_figure(system: str, per_process: Sequence[Sequence[float]], concurrency: int,
                      warm_up_s: float = 1.0, note: str = "") -> ThroughputFigure:
    """Runs recorded per second while every process was busy.

    The window opens `warm_up_s` after the last process recorded its first run (all are up) and
    closes when the first process recorded its last (the queue ran dry or the time was up). When
    every process was busy for less than twice the warm-up (an idle machine drained the queue
    early; a starved one recorded little), the warm-up shrinks to half of that time and the note
    says so: a short figure beats none, and the bench smoke must get one at any load.
    """
    busy = [sorted(times) for times in per_process if times]
    if len(busy) < len(per_process) or not busy:
        return ThroughputFigure(system, len(per_process), concurrency, math.nan, 0, 0.0,
                                note or "a process recorded no run")
    all_up = max(times[0] for times in busy)
    closes = min(times[-1] for times in busy)
    warm_up_ms = min(warm_up_s * 1000, (closes - all_up) / 2)
    opens = all_up + warm_up_ms
    if closes <= opens:
        return ThroughputFigure(system, len(per_process), concurrency, math.nan, 0, 0.0,
                                note or "too few runs for a steady window")
    if warm_up_ms < warm_up_s * 1000:
        note = ", ".join(filter(None, (note, f"busy {(closes - all_up) / 1000:.2f} s only, so a "
                                              f"{warm_up_ms / 1000:.2f} s warm-up")))
    runs = sum(1 for times in busy for t in times if opens <= t < closes)
    seconds = (closes - opens) / 1000
    return ThroughputFigure(system, len(per_process), concurrency, runs / seconds, runs, seconds, note, opens, closes)
