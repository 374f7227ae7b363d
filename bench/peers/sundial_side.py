"""Sundial in the side-by-side run: real `sundial-worker` processes, jobs armed in Redis and PostgreSQL.

Lateness is `job_runs.started_at - scheduled_for`; throughput counts `success` rows by the time
their transaction committed (`pg_xact_commit_timestamp`, so the server runs with
`track_commit_timestamp`), per worker, under the same window rule as the peers. A row's
`completed_at` is when its run ended, which comes before its batch commits, and in a drain a
worker ends runs faster than PostgreSQL takes them for as long as its recorder's buffer has room:
counted by their ends, a short window counted runs not yet committed.

Throughput is measured two ways:
- `drain` (the figure beside the peers', system "Sundial"): the queue is filled with no-op runs
  beforehand, from this process, through the path a backfill or run-now request takes
  (`Broker.enqueue_once`), then the workers start and empty it. This is the same work BullMQ's
  and arq's throughput scenario measures.
- `fired` (system "Sundial, firing"): `offered` every-second jobs, so each worker's ticker fires
  runs in the same process (and on the same core) as its consumer runs them.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from importlib.metadata import version

from bench.common import fill_queue, new_keyspace, start_worker, until_first_run
from bench.peers.arming import arm_bulk
from bench.peers.cpu import CpuSampler
from bench.peers.figures import LatenessFigure, Start, ThroughputFigure, lateness_figure, throughput_figure
from bench.peers.run import Run, log_tail
from sundial.core.broker import Broker
from sundial.core.clock import SYSTEM_CLOCK
from sundial.core.keys import Keyspace
from sundial.core.store import Store

EVERY_SECOND = "* * * * * *"
NEVER = "0 0 1 1 *"  # the drained runs' jobs: armed, but not due during the run
FILL_JOBS = 1000
# arm_bulk arms over 1,000 jobs a second here even when loaded; the first slot is put after
# arming ends so no run is fired for a slot that passed while the rest were being armed.
ARM_RATE = 800


class SundialSystem:
    name = "Sundial"

    def __init__(self, offered: int = 10_000, fill: int = 200_000) -> None:
        # `fired` offers this many no-op runs a second (one every-second job each), more than
        # the workers take, and counts what they record.
        self.offered = offered
        # `drain` queues this many no-op runs before the workers start, as the peers do.
        self.fill = fill

    def prepare(self) -> None:
        return None

    def versions(self) -> dict[str, str]:
        return {"Sundial": version("sundial"), "Python": sys.version.split()[0]}

    async def throughput(self, run: Run, processes: int) -> list[ThroughputFigure]:
        return [await self.drain(run, processes), await self.fired(run, processes)]

    async def drain(self, run: Run, processes: int) -> ThroughputFigure:
        """Workers started on a queue filled beforehand with `fill` no-op runs of 1,000 jobs."""
        keyspace = new_keyspace()
        broker = Broker.from_url(run.redis_url, keyspace)
        try:
            async with _store(run, connections=4) as store:
                job_ids = await arm_bulk(broker, store, NEVER, FILL_JOBS, SYSTEM_CLOCK.now())
            await broker.ensure_groups()
            await fill_queue(broker, job_ids, self.fill)
        finally:
            await broker.close()
        async with self._running(run, processes, "drain", keyspace) as (broker, workers):
            sampler = CpuSampler([w.pid for w in workers], run.redis_url, run.postgres_pid)
            async with sampler.sampling():
                await _first_run_then(run, job_ids, run.throughput_s)
                stopping = time.time()
        return await self._figure(run, keyspace, job_ids, processes, 0.0, stopping, sampler,
                                  f"queue filled with {self.fill} runs first")

    async def fired(self, run: Run, processes: int) -> ThroughputFigure:
        """`offered` every-second jobs: each worker fires and runs, on one core."""
        keyspace = new_keyspace()
        async with self._running(run, processes, "throughput", keyspace) as (broker, workers):
            job_ids, first_slot = await self._arm(run, broker, self.offered)
            sampler = CpuSampler([w.pid for w in workers], run.redis_url, run.postgres_pid)
            async with sampler.sampling():
                await asyncio.sleep(max(first_slot - time.time(), 0.0))
                await _first_run_then(run, job_ids, run.throughput_s)
                stopping = time.time()
        figure = await self._figure(run, keyspace, job_ids, processes, first_slot, stopping, sampler,
                                    f"offered {self.offered} runs/s", system=f"{self.name}, firing")
        capped = ", so capped by the offer" if figure.runs_per_s >= 0.95 * self.offered else ""
        return dataclasses.replace(figure, note=figure.note + capped)

    async def _figure(self, run: Run, keyspace: Keyspace, job_ids: list[str], processes: int, since: float,
                      until: float, sampler: CpuSampler, note: str, system: str | None = None) -> ThroughputFigure:
        async with _store(run) as store:
            per_worker = await _completions(store, job_ids, since, until)
            await _forget_jobs(store, job_ids)
        figure = throughput_figure(system or self.name,
                                   [per_worker.get(_worker_id(keyspace, i), []) for i in range(processes)],
                                   run.concurrency, warm_up_s=2.0)
        why_none = f" ({figure.note})" if figure.note else ""  # why there is no window
        return dataclasses.replace(figure, cpu=sampler.share(figure.opens_ms, figure.closes_ms),
                                   note=note + why_none)

    async def lateness(self, run: Run, schedules: int, seconds: float, processes: int) -> LatenessFigure:
        async with self._running(run, processes, f"lateness-{schedules}", new_keyspace()) as (broker, _):
            job_ids, first_slot = await self._arm(run, broker, schedules)
            await asyncio.sleep(first_slot - time.time() + run.worker_seconds(seconds))
        window = run.window(first_slot, seconds)
        async with _store(run) as store:
            starts = await _starts(store, job_ids, window.from_ms, window.to_ms)
            await _forget_jobs(store, job_ids)
        return lateness_figure(self.name, job_ids, starts, window, processes)

    @contextlib.asynccontextmanager
    async def _running(self, run: Run, processes: int, scenario: str,
                       keyspace: Keyspace) -> AsyncIterator[tuple[Broker, list[subprocess.Popen[bytes]]]]:
        """Worker processes on a keyspace, seen alive before anything is armed.

        A Sundial worker takes seconds to start on a loaded machine; arming only once all are up
        keeps their start-up out of the figures (the peers start within the warm-up).
        """
        broker = Broker.from_url(run.redis_url, keyspace)
        # Without the marker the workers would first "rebuild" the fresh key space from PostgreSQL,
        # arming (and firing) every job the earlier scenarios left there: in the 2-process runs
        # that was 11,000 jobs, seconds of one worker's CPU and 10,000 foreign runs a second.
        await broker.mark_intact(round(time.time() * 1000))
        logs = [run.log(f"sundial-{scenario}-w{i}") for i in range(processes)]
        workers = [start_worker(run.database_url, run.redis_url, keyspace, _worker_id(keyspace, i), log,
                                SUNDIAL_CONCURRENCY=str(run.concurrency))
                   for i, log in enumerate(logs)]
        try:
            await _until_alive(broker, workers)
            yield broker, workers
        except (RuntimeError, TimeoutError) as exc:
            # The bench folder is often gone by the time anyone reads the failure (a test's
            # temporary directory): what the workers said goes with it.
            said = "\n".join(f"--- {log.name}:\n{log_tail(log)}" for log in logs)
            raise RuntimeError(f"Sundial {scenario} with {processes} worker(s): {exc}\n{said}") from exc
        finally:
            await _stop(workers)
            await broker.close()

    @staticmethod
    async def _arm(run: Run, broker: Broker, jobs: int) -> tuple[list[str], float]:
        """Arm `jobs` every-second jobs whose first slot comes after arming ends; return it too."""
        first_slot_after = SYSTEM_CLOCK.now() + timedelta(seconds=1 + jobs / ARM_RATE)
        async with _store(run, connections=10) as store:
            job_ids = await arm_bulk(broker, store, EVERY_SECOND, jobs, first_slot_after)
        first_slot = float(math.ceil(first_slot_after.timestamp()))
        return job_ids, first_slot


async def _first_run_then(run: Run, job_ids: list[str], seconds: float) -> None:
    """Wait for the first recorded run, then `seconds` more: on a loaded machine the first runs
    take seconds to fire, run and commit, and the window must not be spent on that."""
    async with _store(run) as store:
        await until_first_run(store, job_ids)
    await asyncio.sleep(seconds)


async def _forget_jobs(store: Store, job_ids: list[str]) -> None:
    """Mark a scenario's jobs deleted once measured: the next scenario's workers rebuild their
    emptied Redis from every live enabled row, and would fire these schedules too."""
    await store.delete_jobs(job_ids, retain_history=True)


def _worker_id(keyspace: Keyspace, index: int) -> str:
    return f"{keyspace.prefix}-w{index}"


async def _until_alive(broker: Broker, workers: list[subprocess.Popen[bytes]]) -> None:
    timeout = 120.0
    deadline = time.monotonic() + timeout
    while len(await broker.live_workers(round(time.time() * 1000))) < len(workers):
        if any(process.poll() is not None for process in workers):
            raise RuntimeError("a sundial-worker exited while starting")
        if time.monotonic() > deadline:
            raise RuntimeError(f"sundial-worker processes not alive within {timeout:g}s")
        await asyncio.sleep(0.2)


@contextlib.asynccontextmanager
async def _store(run: Run, connections: int = 2) -> AsyncIterator[Store]:
    store = await Store.open(run.database_url, max_size=connections)
    try:
        yield store
    finally:
        await store.close()


async def _stop(workers: list[subprocess.Popen[bytes]]) -> None:
    for process in workers:
        process.send_signal(signal.SIGTERM)
    for process in workers:
        try:
            await asyncio.to_thread(process.wait, 60)
        except subprocess.TimeoutExpired:
            # A worker still draining a backlog a minute later has given its figures already.
            process.kill()
            await asyncio.to_thread(process.wait)


async def _completions(store: Store, job_ids: list[str], since: float, until: float) -> dict[str, list[float]]:
    """When each success row was committed, per worker, up to the moment the workers were told to stop."""
    async with store.pool.connection() as conn:
        cursor = await conn.execute(
            "SELECT worker, committed_ms FROM ("
            " SELECT worker, extract(epoch FROM pg_xact_commit_timestamp(xmin)) * 1000 AS committed_ms FROM job_runs"
            " WHERE job_id = ANY(%s::uuid[]) AND status = 'success') AS success"
            " WHERE committed_ms >= %s AND committed_ms < %s",
            (job_ids, since * 1000, until * 1000))
        rows = await cursor.fetchall()
    per_worker: dict[str, list[float]] = {}
    for worker, committed_ms in rows:
        per_worker.setdefault(str(worker), []).append(float(committed_ms))
    return per_worker


async def _starts(store: Store, job_ids: list[str], from_ms: int, to_ms: int) -> list[Start]:
    async with store.pool.connection() as conn:
        cursor = await conn.execute(
            "SELECT job_id::text, extract(epoch FROM scheduled_for) * 1000, extract(epoch FROM started_at) * 1000"
            " FROM job_runs WHERE job_id = ANY(%s::uuid[]) AND attempt = 1 AND started_at IS NOT NULL"
            " AND scheduled_for >= to_timestamp(%s) AND scheduled_for < to_timestamp(%s)",
            (job_ids, from_ms / 1000, to_ms / 1000))
        rows = await cursor.fetchall()
    return [Start(str(job_id), round(float(slot)), float(started)) for job_id, slot, started in rows]
