"""A worker process: ticker + consumer + housekeeping, with a burst mode for tests.

`Worker.run(stop)` serves until `stop` is set (SIGTERM in `sundial-worker`), then stops taking
work, lets in-flight runs finish within the grace period and hands the rest back.
`Worker.drain()` (arq's burst mode) fires what is due, processes until the queue is empty and
returns, which makes integration tests deterministic.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from sundial.core.aio import sleep_unless_stopped
from sundial.core.broker import Broker, QueueLimits
from sundial.core.clock import Clock, to_ms
from sundial.core.config import Settings
from sundial.core.heartbeat import WorkerHeartbeat
from sundial.core.recovery import BUFFER_LOOKBACK, repair_if_lost
from sundial.core.store import Store
from sundial.worker import metrics
from sundial.worker.consumer import Consumer
from sundial.worker.policy import PolicyCache
from sundial.worker.recorder import Recorder
from sundial.worker.secrets import MountedSecrets
from sundial.worker.targets.registry import TargetRegistry, running_threads
from sundial.worker.ticker import Ticker

log = logging.getLogger(__name__)

HOUSEKEEPING_SECONDS = 30.0
# History is pruned pass after pass, each pass taking the jobs that finished runs since the last
# and spreading them over PRUNE_PERIOD_SECONDS, PRUNE_CHUNK_JOBS to a statement, so retention
# deletes rows about as fast as runs insert them instead of in bursts. All at once, a pass was
# thousands of statements queued on this worker's loop and PostgreSQL's cores in one second (at
# 5,000 every-second jobs that second's slots started 0.24-0.44 s late, every other second's within
# 85 ms at p99); spread over 10 s of every 40, at 10,000 every-second jobs PostgreSQL peaked at
# 0.77-0.83 CPU-s/s against 0.59-0.67 spread over the whole period, and spent 6 us more per run
# (bench.run_lateness --history 40; docs/performance.md, "Sixteenth session").
PRUNE_PERIOD_SECONDS = 30.0
PRUNE_CHUNK_JOBS = 100
# A job another worker pruned less than this long ago is not pruned again (`Broker.claim_prunes`):
# shorter than a pass, so the worker that claims a job every pass can claim it again.
PRUNE_CLAIM_SECONDS = PRUNE_PERIOD_SECONDS * 0.8
# Queue depth and the oldest pending run are what an alert on a backing-up queue reads: a
# scrape every 15-30 s should never see a value older than one scrape.
GAUGES_SECONDS = 5.0
# How often every worker checks that Redis still holds its data: runs resume within about this
# long plus one rebuild after a FLUSHALL or a restart without persistence.
REDIS_CHECK_SECONDS = 1.0
BACKEND_PROBE_SECONDS = 2.0
# A run-now request is remembered this long, so an operator retrying it cannot run it twice.
MANUAL_REQUEST_MEMORY_MS = 7 * 24 * 3600 * 1000


@dataclass
class Worker:
    settings: Settings
    broker: Broker
    store: Store
    registry: TargetRegistry
    clock: Clock
    recorder: Recorder = field(init=False)
    consumer: Consumer = field(init=False)
    ticker: Ticker = field(init=False)
    policy: PolicyCache = field(init=False)
    healthy: bool = True
    # Jobs with runs finished here whose pruning another worker claimed this pass (`_claim_prunes`).
    _prune_later: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        s = self.settings
        self.recorder = Recorder(self.store, self.broker, max_unrecorded=s.max_unrecorded_runs,
                                 row_interval=s.job_row_interval_seconds, rows_per_second=s.job_rows_per_second)
        self.policy = PolicyCache(self.store, s.default_policy, s.worker_pool)
        self.consumer = Consumer(
            self.broker, self.store, self.recorder, self.registry, self.clock, s.worker_id,
            concurrency=s.concurrency, visibility_timeout=s.visibility_timeout_seconds,
            queue_grace=s.queue_grace_seconds, policy=self.policy,
            secrets=MountedSecrets(Path(s.secrets_dir), s.secrets_namespace),
        )
        self.recorder.starting = self.consumer.starting
        self.ticker = Ticker(
            self.broker, self.store, self.clock, batch=s.ticker_batch, max_sleep=s.ticker_max_sleep_seconds,
            on_time_grace=timedelta(seconds=s.on_time_grace_seconds),
            lookahead=timedelta(seconds=s.ticker_lookahead_seconds),
            fire_ahead=timedelta(seconds=s.fire_ahead_seconds),
            fire_together=timedelta(seconds=s.fire_together_seconds), recorder=self.recorder,
            limits=QueueLimits(s.queue_max_length, round(s.queue_min_wait_seconds * 1000)),
            starting=self.consumer.starting,
        )

    async def run(self, stop: asyncio.Event) -> None:
        await self.broker.ensure_groups()
        await self._announce()
        await self._load_policies(stop)
        recorder_task = asyncio.create_task(self.recorder.run())

        async def housekeeping() -> None:
            await self._housekeeping(stop)

        loops = [self._every(REDIS_CHECK_SECONDS, self._repair_redis, stop),
                 self._every(self.settings.visibility_timeout_seconds / 3, self._heartbeat, stop),
                 self._every(HOUSEKEEPING_SECONDS, housekeeping, stop),
                 self._prune_continuously(stop),
                 self._every(GAUGES_SECONDS, self._export_gauges, stop),
                 self._every(self.settings.policy_refresh_seconds, self.policy.refresh_quietly, stop)]
        if self.settings.consumer_enabled:
            for shard in self.broker.keys.all_shards():
                loops += [self.consumer.consume(shard, stop), self.consumer.reclaim_loop(shard, stop)]
        if self.settings.ticker_enabled:
            loops.append(self.ticker.run(stop))
        tasks = [asyncio.create_task(loop) for loop in loops]
        log.info("worker %s serving targets: %s", self.settings.worker_id, ", ".join(self.registry.names()))
        await stop.wait()
        log.info("worker %s stopping: finishing %d runs in flight", self.settings.worker_id,
                 len(self.consumer.in_flight))
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.consumer.shutdown(self.settings.shutdown_grace_seconds)
        await self.recorder.close()
        await recorder_task
        await self.broker.remove_worker(self.settings.worker_id)

    async def drain(self, *, tick: bool = True, max_rounds: int = 10_000) -> int:
        """Fire what is due, process until the queue is empty, return runs processed."""
        await self.broker.ensure_groups()
        await self.policy.refresh()
        recorder_task = asyncio.create_task(self.recorder.run())
        start = self.consumer.processed
        try:
            for _ in range(max_rounds):
                if tick:
                    await self.ticker.tick()
                taken = 0
                for shard in self.broker.keys.all_shards():
                    if self.consumer.free_slots > 0:
                        deliveries = await self.broker.read(shard, self.settings.worker_id,
                                                            self.consumer.free_slots, block_ms=None)
                        taken += len(deliveries)
                        self.consumer.start_all(deliveries)
                    taken += await self.consumer.reclaim_once(shard)
                if not taken and not self.consumer.in_flight:
                    break
                await asyncio.sleep(0)
                await self.consumer.wait_for_room()
            await self.consumer.wait_idle()
        finally:
            await self.recorder.close()
            await recorder_task
        return self.consumer.processed - start

    async def _load_policies(self, stop: asyncio.Event) -> None:
        """Nothing is consumed before the namespace policies are read: the default alone would
        refuse (and record as failed) runs their namespace's policy allows."""
        while not stop.is_set():
            try:
                await self.policy.refresh()
                return
            except Exception as exc:
                log.warning("cannot read the namespace policies yet (%s); consuming waits", exc)
                await sleep_unless_stopped(stop, 1.0)

    async def _every(self, seconds: float, action: Callable[[], Awaitable[None]], stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await action()
            except Exception:
                log.exception("%s failed", getattr(action, "__name__", "periodic task"))
            await sleep_unless_stopped(stop, seconds)

    async def _repair_redis(self) -> None:
        """Re-arm entries from PostgreSQL if Redis lost its data (see sundial.core.recovery).

        Also at a first start, or a restart against a Redis emptied before any worker noticed:
        a missing marker is a loss to whoever sees it, and the rebuild only adds what is missing.
        """
        if await self.broker.is_intact():
            return  # the common case, without listing thousands of runs in flight every second
        in_flight = [(run.message.job_id, run.message.run_id) for run in self.consumer.in_flight.values()]
        until = to_ms(self.clock.now()) + round(self.settings.visibility_timeout_seconds * 3000)
        rebuilt = await repair_if_lost(self.broker, self.store, self.clock, self.settings.worker_id, in_flight, until,
                                       pool=self.settings.worker_pool)
        if rebuilt is not None:
            metrics.REDIS_REBUILDS.labels(rebuilt.cause).inc()
            metrics.LOST_RUNS_REQUEUED.inc(rebuilt.lost_runs)
            await self._announce()

    async def _probe_backends(self) -> None:
        """sundial_backend_up for the outage alerts; firing and running do not depend on it."""
        probes = {"redis": self.broker.redis.ping(), "postgresql": self.store.ping(BACKEND_PROBE_SECONDS)}
        for backend, probe in probes.items():
            try:
                async with asyncio.timeout(BACKEND_PROBE_SECONDS + 1):
                    await probe
                metrics.BACKEND_UP.labels(backend).set(1)
            except Exception:
                metrics.BACKEND_UP.labels(backend).set(0)

    async def _heartbeat(self) -> None:
        await self.consumer.heartbeat()
        await self._announce()
        abandoned = max(0, running_threads() - self.consumer.executing)
        metrics.ABANDONED_THREADS.set(abandoned)
        # Threads of timed-out synchronous targets cannot be killed; once as many pile up as
        # runs may execute, liveness fails and Kubernetes restarts this worker.
        self.healthy = abandoned < self.settings.concurrency

    async def _announce(self) -> None:
        now_ms = to_ms(self.clock.now())
        await self.broker.heartbeat_worker(self.settings.worker_id, WorkerHeartbeat(
            seen_ms=now_ms, targets=tuple(self.registry.names()), concurrency=self.settings.concurrency,
            in_flight=len(self.consumer.in_flight),
        ))

    async def _housekeeping(self, stop: asyncio.Event | None = None) -> None:
        """Keep partitions ahead, close abandoned runs, forget old run-now requests and buffered
        slots, heal the due indexes. (History is pruned by its own loop, `_prune_continuously`.)"""
        await self.store.ensure_partitions(self.clock.now() - timedelta(days=31), 4)
        abandoned = await self.store.stale_running(self.clock.now(), self.settings.visibility_timeout_seconds * 4 + 60)
        if abandoned:
            log.warning("marking %d abandoned runs as failed", len(abandoned))
            await self.store.record_runs(abandoned)
        now_ms = to_ms(self.clock.now())
        await self.broker.forget_manual_requests(now_ms - MANUAL_REQUEST_MEMORY_MS)
        await self.store.prune_buffered_runs(self.clock.now() - BUFFER_LOOKBACK)
        for shard in self.broker.keys.all_shards():
            await self.broker.heal(shard)

    async def _prune_continuously(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self._prune_histories(stop)
            except Exception:
                log.exception("pruning job histories failed")
                await sleep_unless_stopped(stop, PRUNE_PERIOD_SECONDS)

    async def _prune_histories(self, stop: asyncio.Event | None) -> None:
        """Trim the tombstones of earlier prunes, then prune the histories of the jobs that finished
        runs since the last pass, a batch at a time, unless another worker just did.

        Given `stop`, the pass lasts PRUNE_PERIOD_SECONDS, a batch at the start of each of its
        equal parts; once stopped, what is left goes at once. Without, it does not pause."""
        await self.store.trim_tombstones()
        jobs = sorted(self.recorder.take_finished_jobs() | self._prune_later)
        self._prune_later = set()
        batches = [jobs[start:start + PRUNE_CHUNK_JOBS] for start in range(0, len(jobs), PRUNE_CHUNK_JOBS)]
        pause = PRUNE_PERIOD_SECONDS / max(len(batches), 1)
        for batch in batches:
            claimed = await self._claim_prunes(batch)
            if claimed:
                await self.store.prune_histories(await self.store.history_limits(claimed))
            if stop is not None:
                await sleep_unless_stopped(stop, pause)
        if not batches and stop is not None:
            await sleep_unless_stopped(stop, pause)

    async def _claim_prunes(self, jobs: list[str]) -> list[str]:
        """The jobs of `jobs` to prune now. The others another worker pruned moments ago, perhaps
        before this worker's runs of them committed: they wait for this worker's next pass."""
        try:
            claimed = await self.broker.claim_prunes(jobs, to_ms(self.clock.now()), round(PRUNE_CLAIM_SECONDS * 1000))
        except Exception:
            log.warning("cannot claim pruning in Redis; pruning %d jobs regardless", len(jobs), exc_info=True)
            return jobs
        self._prune_later.update(set(jobs).difference(claimed))
        return claimed

    async def _export_gauges(self) -> None:
        await self._probe_backends()
        now_ms = to_ms(self.clock.now())
        for shard in self.broker.keys.all_shards():
            stats = await self.broker.queue_stats(shard, now_ms)
            label = str(shard.shard)
            metrics.QUEUE_LENGTH.labels(label).set(stats.length)
            metrics.QUEUE_PENDING.labels(label).set(stats.pending)
            metrics.QUEUE_DELAYED.labels(label).set(stats.delayed)
            metrics.OLDEST_PENDING.labels(label).set((stats.oldest_pending_ms or 0) / 1000)
            metrics.QUEUE_LAG.labels(label).set(stats.lag)
            metrics.QUEUE_LAG_SECONDS.labels(label).set((stats.oldest_waiting_ms or 0) / 1000)
            metrics.DEAD_LETTERS.labels(label).set(await self.broker.dead_letter_count(shard))
        metrics.LIVE_WORKERS.set(len(await self.broker.live_workers(now_ms)))
