"""Firing ahead: a scheduled run is queued up to `fire_ahead` before its slot and started at it.

Queueing a crowded second's runs (thousands of APPLY_PLANS entries, each an XADD) takes Redis
hundreds of milliseconds, and reading them takes the consumers as long again; done at the slot,
that was most of a run's lateness. Done ahead, the runs wait in the consumers' memory and start
when their slot comes, so what is left is starting them.

Only runs of concurrencyPolicy Allow are queued ahead: Forbid, Replace and the buffers decide
against the runs still live, which must be decided at the slot. A consumer checks, just before
the slot, that each held run's job is still armed: a job deleted or suspended inside the lead
never starts. Pure and clock-free: the ticker and the consumer pass the time in.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable
from typing import Generic, TypeVar

from sundial.core.spec import ConcurrencyPolicy

Item = TypeVar("Item")
# How often a task that lets a slot's starts go first looks whether they are done.
YIELD_POLL_SECONDS = 0.002


def queued_ahead(concurrency: str) -> bool:
    """Whether a job's runs are queued before their slot (and its next slots with them): only
    Allow's, as the other policies decide against the runs live at the slot."""
    return concurrency == ConcurrencyPolicy.ALLOW


def apply_at_ms(start_ms: int, concurrency: str, ahead_ms: int) -> int:
    """When the ticker queues a run planned to start at `start_ms`."""
    return start_ms - ahead_ms if queued_ahead(concurrency) else start_ms


def hold_until_ms(start_ms: int | None, now_ms: float, max_hold_ms: int) -> float | None:
    """Until when a consumer holds a run it read at `now_ms` (None: start it now).

    A run never starts before its slot; the bound keeps a consumer whose clock is far behind
    the ticker's from holding runs for longer than any lead."""
    if start_ms is None or start_ms <= now_ms:
        return None
    return min(float(start_ms), now_ms + max_hold_ms)


class HeldRuns(Generic[Item]):
    """Runs waiting for their start, earliest first (ties in the order they came)."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Item]] = []
        self._order = itertools.count()

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, until_ms: float, item: Item) -> None:
        heapq.heappush(self._heap, (until_ms, next(self._order), item))

    def next_ms(self) -> float | None:
        return self._heap[0][0] if self._heap else None

    def take(self, by_ms: float) -> list[tuple[float, Item]]:
        """The runs due by `by_ms`, earliest first, with when each starts."""
        taken: list[tuple[float, Item]] = []
        while self._heap and self._heap[0][0] <= by_ms:
            until, _, item = heapq.heappop(self._heap)
            taken.append((until, item))
        return taken

    def take_all(self) -> list[Item]:
        return [item for _, item in self.take(float("inf"))]


async def after_starts(starting: Callable[[], bool] | None, most_seconds: float) -> None:
    """Return once no held run is waiting to start (`starting`), or after `most_seconds`.

    Lateness is when a run's code starts: at a crowded slot, the recorder's next batch and the
    ticker's next applies wait for that slot's starts instead of taking the event loop between
    them."""
    if starting is None:
        return
    for _ in range(round(most_seconds / YIELD_POLL_SECONDS)):
        if not starting():
            return
        await asyncio.sleep(YIELD_POLL_SECONDS)
