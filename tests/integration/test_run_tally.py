"""Run ends written untallied are counted into their job's row by a fold, exactly once (migration
0013, `Store.tally_runs`).

The workers' recorders write runs without touching their jobs' rows, and fold every few seconds;
which ends a fold counts is read from PostgreSQL (each end's writing transaction against the
folded watermark), so a worker that dies before its fold loses no count, two folds never count
an end twice, and retention waits for the fold. Real PostgreSQL throughout.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from sundial.core.broker import Broker
from sundial.core.keys import run_id_for_slot
from sundial.core.runs import JobRef, RunStatus, Trigger
from sundial.core.store import RunRecord, Store
from sundial.worker.recorder import Recorder
from tests.integration.engine import new_job, spec

pytestmark = pytest.mark.services

SLOT = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def ended(job: JobRef, second: int, status: RunStatus = RunStatus.SUCCESS) -> RunRecord:
    at = SLOT + timedelta(seconds=second)
    return RunRecord(run_id=run_id_for_slot(job.job_id, round(at.timestamp() * 1000)), job_id=job.job_id,
                     logical_time=at, scheduled_for=at, trigger=Trigger.SCHEDULED, status=status, attempt=1,
                     started_at=at, completed_at=None if status is RunStatus.RUNNING else at + timedelta(seconds=1))


async def counts(store: Store, job: JobRef) -> tuple[object, ...]:
    row = await store.job(job.job_id)
    assert row is not None
    return row["run_count"], row["success_count"], row["fail_count"], row["last_status"], row["last_run_id"]


async def a_job(store: Store, name: str) -> JobRef:
    job = new_job(name)
    await store.upsert_job(job, spec(), 1, SLOT)
    return job


async def test_untallied_ends_are_counted_by_the_next_fold_once(store: Store) -> None:
    job = await a_job(store, "folded")
    await store.record_untallied_runs([ended(job, 0), ended(job, 1, RunStatus.FAILED), ended(job, 2),
                                       ended(job, 3, RunStatus.RUNNING)])
    assert await counts(store, job) == (0, 0, 0, None, None), "written, not yet counted"

    assert await store.tally_runs() is not None
    assert await counts(store, job) == (3, 2, 1, "success", ended(job, 2).run_id)
    await store.record_untallied_runs([ended(job, 3)])  # the running attempt ends
    await store.tally_runs()
    await store.tally_runs()
    assert await counts(store, job) == (4, 3, 1, "success", ended(job, 3).run_id)


async def test_ends_counted_when_written_are_not_counted_again(store: Store) -> None:
    job = await a_job(store, "inline")
    await store.record_runs([ended(job, 0), ended(job, 1)])
    await store.tally_runs()
    assert await counts(store, job) == (2, 2, 0, "success", ended(job, 1).run_id)


async def test_a_fold_stops_below_a_writer_still_running(store: Store, database_url: str) -> None:
    """An end whose version is above a transaction still running may have company below it
    that commits later: the fold leaves it for the next one, which counts both."""
    job = await a_job(store, "horizon")
    async with await psycopg.AsyncConnection.connect(database_url) as writer:
        await writer.execute("SELECT pg_current_xact_id()")  # a writer that began first, still open
        version = await store.record_untallied_runs([ended(job, 0)])
        through = await store.tally_runs()
        assert through is not None
        assert through <= version
        assert await counts(store, job) == (0, 0, 0, None, None)
        await writer.commit()
    through = await store.tally_runs()
    assert through is not None
    assert through > version
    assert (await counts(store, job))[:3] == (1, 1, 0)


async def test_concurrent_folds_count_every_end_exactly_once(store: Store, database_url: str) -> None:
    jobs = [await a_job(store, f"busy-{i}") for i in range(5)]
    other = await Store.open(database_url, max_size=4)
    try:
        for second in range(20):
            await store.record_untallied_runs([ended(job, second) for job in jobs])
            await asyncio.gather(store.tally_runs(), other.tally_runs(), store.tally_runs(), other.tally_runs())
        assert await store.tally_runs() is not None, "no fold is left holding the watermark's row"
    finally:
        await other.close()
    assert [(await counts(store, job))[:3] for job in jobs] == [(20, 20, 0)] * 5


async def test_a_fold_soon_after_another_leaves_its_ends_to_the_next(store: Store) -> None:
    """One fold a period counts every worker's ends (migration 0014): a periodic fold within
    `spacing` of the last does nothing, and the ends it found wait for a later one."""
    job = await a_job(store, "spaced")
    await store.record_untallied_runs([ended(job, 0)])
    assert await store.tally_runs(spacing=0) is not None  # a closing recorder's: never too soon
    await store.record_untallied_runs([ended(job, 1)])
    assert await store.tally_runs(spacing=3600) is None
    assert (await counts(store, job))[:3] == (1, 1, 0)
    async with store.pool.connection() as conn:
        await conn.execute("UPDATE run_tally SET folded_at = folded_at - interval '2 hours'")
    assert await store.tally_runs(spacing=3600) is not None
    assert (await counts(store, job))[:3] == (2, 2, 0)


async def test_retention_keeps_an_end_until_it_is_counted(store: Store) -> None:
    job = await a_job(store, "kept")
    await store.record_untallied_runs([ended(job, second) for second in range(3)])
    assert await store.prune_histories({job.job_id: (0, 0)}) == 0, "no end is pruned before its fold"
    await store.tally_runs()
    assert await store.prune_histories({job.job_id: (0, 0)}) == 3
    assert (await counts(store, job))[:3] == (3, 3, 0)


async def test_a_recorder_folds_what_a_dead_worker_left(store: Store, broker: Broker) -> None:
    """A worker that wrote its runs and died before its fold: the next recorder to start counts them."""
    job = await a_job(store, "orphaned")
    await store.record_untallied_runs([ended(job, 0), ended(job, 1)])
    recorder = Recorder(store, broker, max_delay=0.001)
    task = asyncio.create_task(recorder.run())
    await asyncio.sleep(0)  # running: a recorder that starts runs until closed again
    await recorder.close()
    await asyncio.wait_for(task, 10)
    assert (await counts(store, job))[:3] == (2, 2, 0)


async def test_a_recorder_counts_its_runs_at_the_end_of_a_period(store: Store, broker: Broker) -> None:
    job = await a_job(store, "periodic")
    recorder = Recorder(store, broker, max_delay=0.001, row_interval=0.2)
    task = asyncio.create_task(recorder.run())
    try:
        await recorder.finished(ended(job, 0), None, release_active=False)
        for _ in range(200):  # 10 s
            if (await counts(store, job))[0] == 1:
                break
            await asyncio.sleep(0.05)
    finally:
        await recorder.close()
        await asyncio.wait_for(task, 10)
    assert await counts(store, job) == (1, 1, 0, "success", ended(job, 0).run_id)
