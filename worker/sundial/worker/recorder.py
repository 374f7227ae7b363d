"""Batches run and fire records into PostgreSQL; acknowledges queue messages only after commit.

Thousands of short runs a second cannot each pay a round trip of their own: starts and ends
gather for a few milliseconds and land in one statement (`Store.record_runs`), then the
messages they finish are acknowledged in one Redis call (`Broker.ack`). A failed write is
retried, never dropped; until it lands nothing is acknowledged, so a crash means redelivery,
not loss.

PostgreSQL may stall or go away for a minute (a hung primary, a failover). Firing and running
never wait for it: the ticker hands its fire records over without awaiting them (`fired`), and
the consumer keeps taking work while up to `max_unrecorded` finished runs wait here for their
commit. Why a bounded buffer in memory, and not an outbox stream in Redis written by the ack
script: the run queue already is that outbox. A run's message stays pending in the stream
until its record commits, so everything needed to recover survives a crash of this process
in Redis (the message is redelivered and the attempt runs again, at least once, as for any
worker that dies mid-run), and the buffer only saves redoing work. An outbox would add two
Redis writes and a stream read per run to the hot path (Redis CPU is the shared ceiling of
every worker) to save re-running attempts during a database outage that also crashes a
worker. Fire records carry no run: they fold into one pending record per job (latest next run,
latest slot, missed slots summed), so their memory is bounded by the number of jobs however
long the outage lasts; and since a later batch can carry them, they never wait for a job row
another process's write holds (a consumer's run batch, the operator's upsert): such a fire is
folded into the next batch. A job's fire records are written at once the first time in a
while, then at most once per `row_interval`: an every-second job's row would otherwise be
rewritten every second for a next-run time that is in the past again a second later, about a
fifth of PostgreSQL's CPU per run at thousands of such jobs (docs/performance.md, "Fifteenth
session"). For the same reason run records leave their jobs' counters and last run to a fold once
per `row_interval` (`Store.tally_runs`), which reads what to count from PostgreSQL, not from
here: a recorder that dies before its fold loses no count (docs/performance.md, "Sixteenth
session"). A period lasts `row_interval`, or longer when its end would rewrite more than
`rows_per_second` job rows a second: at 10,000 every-second jobs the job rows written every 5 s
by each worker's fire records and by the folds were a third of PostgreSQL's CPU, and what the
cores lacked to hold the slots on time (docs/performance.md, "Nineteenth session"). When the
buffer is full the consumer stops taking work (backpressure) and new runs wait in the queue,
where the overload policy (see docs/performance.md) applies.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace

from sundial.core.broker import Broker, Delivery
from sundial.core.config import JOB_ROW_INTERVAL_SECONDS, JOB_ROWS_PER_SECOND
from sundial.core.runs import RunStatus
from sundial.core.store import FireRecord, RunRecord, Store
from sundial.worker.ahead import after_starts

log = logging.getLogger(__name__)

# While a crowded slot's held runs are being started, the recorder waits for them rather than
# take the event loop for a batch in the middle; at most this long.
DEFER_SECONDS = 0.25
# A write that has not returned in this long is abandoned and retried: a stalled server never
# enforces its own statement_timeout, so the client must.
WRITE_TIMEOUT_SECONDS = 10.0
# Fire records held for their period go out in statements of at most this many job rows, each its
# own transaction: a run batch that updates the same rows waits for one of them, not for all.
FIRE_BATCH = 1000
# A periodic fold is skipped when another ended within this share of the period: less than the
# whole, so that a recorder's own folds, a period apart give or take the loop's delays, are not.
FOLD_SPACING = 0.8


# Told once a record is committed and its message acknowledged (None), or why not.
Then = Callable[[BaseException | None], None]


@dataclass(slots=True)
class _Pending:
    record: RunRecord
    ack: Delivery | None = None
    then: Then | None = None
    release_active: bool = False


@dataclass
class Recorder:
    store: Store
    broker: Broker
    max_batch: int = 2000
    max_delay: float = 0.005
    retry_delay: float = 1.0
    max_unrecorded: int = 20_000
    write_timeout: float = WRITE_TIMEOUT_SECONDS
    row_interval: float = JOB_ROW_INTERVAL_SECONDS
    rows_per_second: float = JOB_ROWS_PER_SECOND  # the period stretches past `row_interval` to keep under it
    # Whether runs are waiting to start right now (the consumer's); the recorder lets them go first.
    starting: Callable[[], bool] | None = None
    _pending: list[_Pending] = field(default_factory=list)
    _fires: dict[str, FireRecord] = field(default_factory=dict)  # to write now
    _held: dict[str, FireRecord] = field(default_factory=dict)  # to write at the end of the period
    _written: set[str] = field(default_factory=set)  # jobs whose fires were written this period
    _period_ends: float = 0.0
    _period: float = 0.0  # how long the current period lasts
    _wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    _closed: bool = False
    _finished_jobs: set[str] = field(default_factory=set)
    _writing: int = 0
    # The latest version of run ends written here not yet counted by a fold (`Store.tally_runs`),
    # or None. A fresh recorder folds once, for what a worker that died before its fold left.
    _untallied: int | None = 0
    # The fold in progress: it runs beside the flushes, which must not wait for it (acks would).
    _folding: asyncio.Task[None] | None = None

    @property
    def unrecorded(self) -> int:
        """Records waiting for PostgreSQL, the batch being written included."""
        return len(self._pending) + self._writing

    @property
    def has_room(self) -> bool:
        return self.unrecorded < self.max_unrecorded

    def started(self, record: RunRecord) -> None:
        """Note a start; not awaited, since a start lost in a crash is rewritten on redelivery."""
        self._pending.append(_Pending(record))
        self._wakeup.set()

    def finish(self, record: RunRecord, ack: Delivery | None, *, release_active: bool, then: Then) -> None:
        """Write an attempt's end and, once committed, acknowledge its message, then call `then`.

        Not awaited: a consumer that waited for each commit would need a task per run to keep
        running others meanwhile, a per-run cost at thousands of runs a second.
        """
        self._pending.append(_Pending(record, ack, then, release_active))
        self._wakeup.set()

    async def finished(self, record: RunRecord, ack: Delivery | None, *, release_active: bool) -> None:
        """`finish`, awaited: returns once committed and acknowledged, raises if that failed."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def settle(error: BaseException | None) -> None:
            if done.done():
                return
            if error is None:
                done.set_result(None)
            else:
                done.set_exception(error)

        self.finish(record, ack, release_active=release_active, then=settle)
        await done

    def fired(self, fires: Sequence[FireRecord]) -> None:
        """Take the ticker's bookkeeping without making firing wait for PostgreSQL."""
        for fire in fires:
            for skipped in fire.skipped:
                self._pending.append(_Pending(skipped))
            job_id = fire.job_id
            prompt = self._fires.pop(job_id, None)
            earlier = prompt or self._held.pop(job_id, None)
            if earlier is not None:
                fire = _fold(earlier, fire)
            elif fire.skipped:
                fire = replace(fire, skipped=())
            # Buffered slots are what a rebuild after a Redis data loss restores: never held.
            later = prompt is None and job_id in self._written and not fire.buffered
            (self._held if later else self._fires)[job_id] = fire
        if fires:
            self._wakeup.set()

    def take_finished_jobs(self) -> set[str]:
        """Jobs with new terminal runs since the last call (for history pruning)."""
        jobs, self._finished_jobs = self._finished_jobs, set()
        return jobs

    async def run(self) -> None:
        """Flush until closed; a closed recorder may run again (each burst-mode drain does)."""
        self._closed = False
        loop = asyncio.get_running_loop()
        self._period = self.row_interval
        self._period_ends = loop.time() + self._period
        while not (self._closed and not self._pending and not self._fires and not self._held
                     and self._untallied is None):
            await self._woken(self._period_ends if self._held or self._untallied is not None else None)
            if not self._closed:
                await asyncio.sleep(self.max_delay)
                await after_starts(self.starting, DEFER_SECONDS)
            period_over = self._closed or loop.time() >= self._period_ends
            if period_over:
                self._next_period(loop.time())
            if self._fires:
                await self._flush_fires()
            while self._pending:
                batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch :]
                self._writing = len(batch)
                try:
                    await self._flush(batch)
                finally:
                    self._writing = 0
            if period_over and self._untallied is not None:
                await self._fold()
        if self._folding is not None:
            await self._folding

    async def _woken(self, deadline: float | None) -> None:
        """Until there is something to write, or the loop's clock reaches `deadline`."""
        try:
            async with asyncio.timeout_at(deadline):
                await self._wakeup.wait()
        except TimeoutError:
            pass
        self._wakeup.clear()

    def _next_period(self, now: float) -> None:
        """The held fire records go out now; their jobs were written in the period that starts."""
        self._written = set(self._held)
        self._fires.update(self._held)  # a job's fire is in one of the two, never both
        self._held = {}
        self._period = period_for(len(self._written), self.row_interval, self.rows_per_second)
        self._period_ends = now + self._period

    async def _fold(self) -> None:
        """Start a fold unless one is running; a closing recorder waits for its last."""
        if self._folding is not None and not self._folding.done():
            if not self._closed:
                return
            await self._folding
        self._folding = asyncio.create_task(self._tally())
        if self._closed:
            await self._folding

    async def _tally(self) -> None:
        """Count the run ends written here so far (and anyone's before them) into their jobs' rows.
        Until a fold passes the latest of them, each period tries again; a closing recorder leaves
        them to the next fold of any worker (they are untallied in PostgreSQL, not here)."""
        # One fold a period does for every worker: a fold that follows another's within most of a
        # period does nothing, and this recorder tries again at the end of its next one.
        spacing = 0.0 if self._closed else FOLD_SPACING * self._period
        try:
            async with asyncio.timeout(self.write_timeout):
                through = await self.store.tally_runs(spacing)
        except Exception:
            log.exception("could not count run ends into their jobs' rows; the next fold will")
            through = None
        if self._closed or (through is not None and self._untallied is not None and through > self._untallied):
            self._untallied = None

    async def close(self) -> None:
        self._closed = True
        self._wakeup.set()

    async def _flush_fires(self) -> None:
        """Write a batch of the fire records due; the run records waiting go before the next."""
        batch = dict(itertools.islice(self._fires.items(), FIRE_BATCH))
        for job_id in batch:
            del self._fires[job_id]
        if await self._write_fires(batch) and self._fires:
            self._wakeup.set()

    async def _write_fires(self, fires: dict[str, FireRecord]) -> bool:
        """Write one batch; False if it failed (it is taken back, and retried after a pause)."""
        try:
            async with asyncio.timeout(self.write_timeout):
                held = await self.store.record_fires(list(fires.values()))
        except Exception:
            log.exception("could not record %d fires in PostgreSQL; retrying", len(fires))
            if not self._closed:
                self._refold(fires.values())
                await asyncio.sleep(self.retry_delay)
                self._wakeup.set()
            return False
        self._written.update(fires)
        if held:
            # Their skipped runs and buffered slots were written; the job rows wait for a later batch.
            self._refold(fires[job_id].job_row_only() for job_id in held)
            if self._closed:
                await asyncio.sleep(self.max_delay)  # a closing recorder does not wait, so must not spin
            self._wakeup.set()
        return True

    def _refold(self, fires: Iterable[FireRecord]) -> None:
        """Take back fires not recorded; newer fires taken meanwhile fold over them."""
        for fire in fires:
            newer = self._fires.pop(fire.job_id, None) or self._held.pop(fire.job_id, None)
            self._fires[fire.job_id] = fire if newer is None else _fold(fire, newer)

    async def _flush(self, batch: list[_Pending]) -> None:
        records = _collapse([item.record for item in batch])
        while True:
            try:
                async with asyncio.timeout(self.write_timeout):
                    written = await self.store.record_untallied_runs(records)
                break
            except Exception:
                if self._closed:
                    log.exception("giving up on %d run records at shutdown; their runs will be redelivered",
                                  len(records))
                    _settle(batch, RuntimeError("run records not written"))
                    return
                log.exception("writing %d run records failed; retrying", len(records))
                await asyncio.sleep(self.retry_delay)
        self._finished_jobs.update(r.job_id for r in records if r.status is not RunStatus.RUNNING)
        self._untallied = max(self._untallied or 0, written)
        try:
            await self.broker.ack(
                [item.ack for item in batch if item.ack is not None],
                [(item.record.job_id, item.record.run_id) for item in batch if item.release_active],
            )
        except Exception as exc:
            # Committed but not acknowledged: the run is redelivered, seen as finished, and acked then.
            log.exception("acknowledging %d runs failed", len(batch))
            _settle(batch, exc)
            return
        _settle(batch, None)


def period_for(rows: int, interval: float, rows_per_second: float) -> float:
    """How long a period lasts whose end rewrites `rows` job rows: `interval`, or longer when that
    would rewrite more than `rows_per_second` of them a second (0: no limit). An interval of 0
    writes every record at once, as asked, whatever the rate."""
    if rows_per_second <= 0 or interval <= 0:
        return interval
    return max(interval, rows / rows_per_second)


def _fold(earlier: FireRecord, later: FireRecord) -> FireRecord:
    """Two fire records of one job as one: the later next run, the latest slot, missed summed,
    the buffered slots of both."""
    if (not earlier.missed and not earlier.buffered
            and (earlier.last_slot is None or (later.last_slot is not None and later.last_slot >= earlier.last_slot))):
        return later  # what the fold comes to for an every-second job's on-time fires: no copy per fire
    slots = [slot for slot in (earlier.last_slot, later.last_slot) if slot is not None]
    return FireRecord(
        job_id=later.job_id,
        next_run_at=later.next_run_at,
        last_slot=max(slots) if slots else None,
        missed=earlier.missed + later.missed,
        buffered=earlier.buffered + later.buffered,
    )


def _collapse(records: list[RunRecord]) -> list[RunRecord]:
    """One row per attempt: an end supersedes a start written in the same batch."""
    by_key: dict[tuple[object, ...], RunRecord] = {}
    for record in records:
        current = by_key.get(record.key)
        if current is None or current.status is RunStatus.RUNNING:
            by_key[record.key] = record
    return list(by_key.values())


def _settle(batch: list[_Pending], error: BaseException | None) -> None:
    for item in batch:
        if item.then is not None:
            try:
                item.then(error)
            except Exception:
                log.exception("a run's record callback failed")
