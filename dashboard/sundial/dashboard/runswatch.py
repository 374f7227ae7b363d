"""Watching run history: one PostgreSQL poller per `sundial-runs-api` process feeds every watcher.

A run's resourceVersion is the id of the PostgreSQL transaction that last wrote its row
(`job_runs.resource_version`; migrations 0007 and 0009). Ids only grow, and every
transaction below `pg_snapshot_xmin` has ended, so the poller reads the window
[last horizon, new horizon) once per tick and nothing that commits late is skipped. A list's
resourceVersion is the horizon minus one: every write up to it is in the list. Deletions
(retention, a job deleted with its history) leave tombstones with the deleting transaction's id,
read in the same window and sent as DELETED.

The poller keeps the latest `capacity` changes in memory (as the kube-apiserver's watch cache
does). A watch from a version older than that window is answered 410 Gone and the client lists
again. Each watcher filters the shared changes itself, so the cost in PostgreSQL is one indexed
range read per tick whatever the number of watchers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

import psycopg

from sundial.core.clock import SYSTEM_CLOCK, Clock
from sundial.core.store import TOMBSTONE_KEEP_SECONDS, RunQuery, RunRow, Store

log = logging.getLogger("sundial.runsapi.watch")

DEFAULT_CAPACITY: Final = 20_000


class Expired(Exception):
    """The resourceVersion is older than the changes kept in memory (answered 410 Gone)."""


@dataclass(frozen=True)
class Change:
    """One attempt as a write left it."""

    row: RunRow


class Seen:
    """What one watcher already knows: the list it started from (every write up to `since`),
    and the attempts created after it that it has been sent. The poller reads only a row's
    latest state, so a row inserted and updated between two reads reaches watchers once, and
    that once is ADDED."""

    def __init__(self, since: int) -> None:
        self.since = since
        self._sent: set[tuple[str, int]] = set()

    def event_type(self, row: RunRow) -> str | None:
        """ADDED, MODIFIED or DELETED; None for the deletion of an attempt this watcher never
        knew (created after its list, and deleted before it was sent)."""
        key = (row.run_id, row.attempt)
        known = row.created_version <= self.since or key in self._sent
        if row.deleted:
            self._sent.discard(key)
            return "DELETED" if known else None
        if known:
            return "MODIFIED"
        self._sent.add(key)
        return "ADDED"


def parse_version(value: str) -> int | None:
    """A client's resourceVersion; None for "" and "0" (start from now)."""
    if value in ("", "0"):
        return None
    if not value.isdigit():
        raise ValueError(f"resourceVersion must be a number this API gave out, not {value!r}")
    return int(value)


def matches(query: RunQuery, row: RunRow) -> bool:
    """The store's filters of a list request, applied to one changed row (continue aside)."""
    return ((query.namespace is None or row.namespace == query.namespace)
            and (query.job_names is None or row.job_name in query.job_names)
            and (query.statuses is None or row.status in query.statuses)
            and (query.triggers is None or row.trigger_type in query.triggers))


class RunChanges:
    """The recent changes to `job_runs`, read by one poller and shared by every watcher."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self._changes: deque[Change] = deque()
        self._capacity = capacity
        self._first_index = 0  # the index of _changes[0] in the stream of all changes
        self._horizon = 0  # every version below it has been read
        self._floor = 0  # every change with a version >= floor is still kept
        self._ticked = asyncio.Condition()
        self.closed = False

    async def close(self) -> None:
        """The process is stopping: every watch ends its stream now, as the kube-apiserver's do."""
        self.closed = True
        async with self._ticked:
            self._ticked.notify_all()

    @property
    def started(self) -> bool:
        return self._horizon > 0

    @property
    def resource_version(self) -> int:
        """What a list answers as its resourceVersion: every write up to it has been read."""
        return max(self._horizon - 1, 0)

    def start_at(self, horizon: int) -> None:
        self._horizon = self._floor = horizon

    async def restart_at(self, horizon: int) -> None:
        """Forget every change and start again from `horizon`: every watch and every older
        version is answered Expired, and clients list again."""
        self._first_index += len(self._changes)
        self._changes.clear()
        self.start_at(horizon)
        async with self._ticked:
            self._ticked.notify_all()

    async def add(self, rows: list[RunRow], horizon: int) -> None:
        """A tick's changes (in version order) and the new horizon; wakes every watcher."""
        self._changes.extend(Change(row) for row in rows)
        while len(self._changes) > self._capacity:
            dropped = self._changes[0].row.resource_version
            while self._changes and self._changes[0].row.resource_version <= dropped:
                self._changes.popleft()
                self._first_index += 1
            self._floor = dropped + 1
        self._horizon = max(self._horizon, horizon)
        async with self._ticked:
            self._ticked.notify_all()

    def cursor(self, version: int | None) -> int:
        """Where a watch from `version` starts in the stream: the first change above it."""
        if version is None:
            return self._first_index + len(self._changes)
        if version + 1 < self._floor:
            raise Expired(f"too old resource version: {version} (oldest kept: {self._floor - 1})")
        if version > self.resource_version:
            # Given out by a database whose transactions were numbered higher: this one was
            # restored from a dump into another cluster, and a watch from it would wait forever.
            raise Expired(f"resource version {version} is ahead of every change read ({self.resource_version}):"
                          " the run history was restored into another database; list again")
        index = self._first_index
        for change in self._changes:
            if change.row.resource_version > version:
                break
            index += 1
        return index

    def since(self, cursor: int) -> tuple[list[Change], int]:
        """The changes from `cursor` on and the cursor after them; Expired when they were dropped."""
        if cursor < self._first_index:
            raise Expired("the watch fell behind the changes kept in memory: list again")
        offset = cursor - self._first_index
        changes = [self._changes[i] for i in range(offset, len(self._changes))]
        return changes, cursor + len(changes)

    async def caught_up(self, version: int | None, at_most: float, clock: Clock = SYSTEM_CLOCK) -> None:
        """Until every write up to `version` has been read, or `at_most` seconds: a list reads its
        version from PostgreSQL, up to a poll interval ahead of the poller (or of another replica's)."""
        deadline = clock.monotonic() + at_most
        while version is not None and version > self.resource_version and not self.closed:
            left = deadline - clock.monotonic()
            if left <= 0:
                return
            await self.next_tick(left)

    async def next_tick(self, at_most: float) -> None:
        """Until the next tick, or `at_most` seconds."""
        async with self._ticked:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._ticked.wait(), at_most)


# A poller that could not read for this long may have missed tombstones trimmed meanwhile
# (they are kept TOMBSTONE_KEEP_SECONDS): it restarts its window instead of skipping DELETEDs.
MAX_READ_GAP_SECONDS: Final = TOMBSTONE_KEEP_SECONDS / 2


async def poll(store: Store, changes: RunChanges, interval: float,
               sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
               clock: Clock = SYSTEM_CLOCK) -> None:
    """Forever: read the changes past the horizon every `interval` seconds into `changes`.
    PostgreSQL being away costs watchers their events until it is back, never the process;
    away for longer than MAX_READ_GAP_SECONDS, it costs them a relist."""
    last_read = clock.monotonic()
    while True:
        try:
            if not changes.started:
                changes.start_at(await store.run_version_horizon())
            elif clock.monotonic() - last_read > MAX_READ_GAP_SECONDS:
                log.warning("run changes were not read for %.0f s: watchers list again", clock.monotonic() - last_read)
                await changes.restart_at(await store.run_version_horizon())
            rows, horizon = await store.runs_changed(changes.resource_version + 1)
            await changes.add(rows, horizon)
            last_read = clock.monotonic()
        except (psycopg.Error, TimeoutError) as exc:
            log.warning("reading run changes failed (watchers wait): %s", exc)
        await sleep(interval)

