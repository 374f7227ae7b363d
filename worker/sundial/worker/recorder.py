"""Batches run records into PostgreSQL and acknowledges queue messages only after commit.

Thousands of short runs a second cannot each pay a round trip of their own: starts and ends
gather for a few milliseconds and land in one statement (`Store.record_runs`), then the
messages they finish are acknowledged in one Redis pipeline. A failed write is retried, never
dropped; until it lands nothing is acknowledged, so a crash means redelivery, not loss.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from sundial.core.broker import Broker, Delivery
from sundial.core.runs import RunStatus
from sundial.core.store import RunRecord, Store

log = logging.getLogger(__name__)


@dataclass
class _Pending:
    record: RunRecord
    ack: Delivery | None = None
    done: asyncio.Future[None] | None = None
    release_active: bool = False


@dataclass
class Recorder:
    store: Store
    broker: Broker
    max_batch: int = 1000
    max_delay: float = 0.005
    retry_delay: float = 1.0
    _pending: list[_Pending] = field(default_factory=list)
    _wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    _closed: bool = False
    _finished_jobs: set[str] = field(default_factory=set)

    def started(self, record: RunRecord) -> None:
        """Note a start; not awaited, since a start lost in a crash is rewritten on redelivery."""
        self._pending.append(_Pending(record))
        self._wakeup.set()

    async def finished(self, record: RunRecord, ack: Delivery | None, *, release_active: bool) -> None:
        """Write an attempt's end and, once committed, acknowledge its message."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append(_Pending(record, ack, done, release_active))
        self._wakeup.set()
        await done

    def take_finished_jobs(self) -> set[str]:
        """Jobs with new terminal runs since the last call (for history pruning)."""
        jobs, self._finished_jobs = self._finished_jobs, set()
        return jobs

    async def run(self) -> None:
        """Flush until closed; a closed recorder may run again (each burst-mode drain does)."""
        self._closed = False
        while not (self._closed and not self._pending):
            await self._wakeup.wait()
            self._wakeup.clear()
            if not self._closed:
                await asyncio.sleep(self.max_delay)
            while self._pending:
                batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch :]
                await self._flush(batch)

    async def close(self) -> None:
        self._closed = True
        self._wakeup.set()

    async def _flush(self, batch: list[_Pending]) -> None:
        records = _collapse([item.record for item in batch])
        while True:
            try:
                await self.store.record_runs(records)
                break
            except Exception:
                if self._closed:
                    log.exception("giving up on %d run records at shutdown; their runs will be redelivered",
                                  len(records))
                    _fail(batch, RuntimeError("run records not written"))
                    return
                log.exception("writing %d run records failed; retrying", len(records))
                await asyncio.sleep(self.retry_delay)
        self._finished_jobs.update(r.job_id for r in records if r.status is not RunStatus.RUNNING)
        try:
            await self.broker.ack(
                [item.ack for item in batch if item.ack is not None],
                [(item.record.job_id, item.record.run_id) for item in batch if item.release_active],
            )
        except Exception as exc:
            # Committed but not acknowledged: the run is redelivered, seen as finished, and acked then.
            log.exception("acknowledging %d runs failed", len(batch))
            _fail(batch, exc)
            return
        for item in batch:
            if item.done is not None and not item.done.done():
                item.done.set_result(None)


def _collapse(records: list[RunRecord]) -> list[RunRecord]:
    """One row per attempt: an end supersedes a start written in the same batch."""
    by_key: dict[tuple[object, ...], RunRecord] = {}
    for record in records:
        current = by_key.get(record.key)
        if current is None or current.status is RunStatus.RUNNING:
            by_key[record.key] = record
    return list(by_key.values())


def _fail(batch: list[_Pending], exc: BaseException) -> None:
    for item in batch:
        if item.done is not None and not item.done.done():
            item.done.set_exception(exc)
