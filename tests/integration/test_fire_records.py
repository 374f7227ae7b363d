"""Fire records never wait for a job row another writer holds (`RECORD_FIRES` skips it), and
an every-second job's are written once per interval, not once per fire.

With a ticker-only worker and a consumer-only worker, the ticker's fire records and the
consumer's run records update the same job rows from two processes. Waiting for each other's
row locks made them a convoy, each batch waiting for the other's whole batch to commit, and at
10,000 every-second jobs most slots expired in the queue (docs/performance.md, "Twelfth
session"). A fire record now skips a held row and names its job; the recorder folds it into its
next fire batch. Real PostgreSQL; the other writer is a transaction that locks the row.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from sundial.core.broker import Broker
from sundial.core.runs import JobRef
from sundial.core.store import FireRecord, Store
from sundial.worker.recorder import Recorder
from tests.integration.engine import new_job, spec

pytestmark = pytest.mark.services

SLOT = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
SECOND = timedelta(seconds=1)


@asynccontextmanager
async def row_held(database_url: str, job: JobRef) -> AsyncIterator[Callable[[], Awaitable[None]]]:
    """The job's row locked by another transaction, as a run batch (`RECORD_RUNS`) holds it;
    what is yielded lets it go."""
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        await conn.execute("SELECT 1 FROM scheduled_jobs WHERE id = %s FOR UPDATE", (job.job_id,))
        yield conn.commit


async def job_row(store: Store, job: JobRef) -> dict[str, object]:
    row = await store.job(job.job_id)
    assert row is not None
    return row


async def test_a_fire_record_skips_a_held_job_row_and_names_it(store: Store, database_url: str) -> None:
    held_job, free_job, gone_job = new_job("held"), new_job("free"), new_job("gone")
    for job in (held_job, free_job):
        await store.upsert_job(job, spec(), 1, SLOT)
    async with row_held(database_url, held_job):
        async with asyncio.timeout(5):  # a fire record that waited would hang here until the lock went
            held = await store.record_fires([FireRecord(job.job_id, SLOT + SECOND, SLOT, 0)
                                             for job in (held_job, free_job, gone_job)])
    assert held == {held_job.job_id}  # a job without a row (deleted) is not asked for again
    assert (await job_row(store, free_job))["last_schedule_time"] == SLOT
    assert (await job_row(store, held_job))["last_schedule_time"] is None


async def test_a_late_record_of_an_earlier_slot_keeps_the_next_run_of_the_later_one(store: Store) -> None:
    """Two workers fire one job in turn and each holds its records: the older can land last."""
    job = new_job("two-tickers")
    await store.upsert_job(job, spec(), 1, SLOT)
    await store.record_fires([FireRecord(job.job_id, SLOT + 3 * SECOND, SLOT + 2 * SECOND, 0)])
    await store.record_fires([FireRecord(job.job_id, SLOT + SECOND, SLOT, missed=1)])
    row = await job_row(store, job)
    assert (row["next_run_at"], row["last_schedule_time"], row["missed_count"]) == (SLOT + 3 * SECOND,
                                                                                   SLOT + 2 * SECOND, 1)


async def test_the_recorder_writes_a_skipped_fire_record_once_the_row_is_free(
    store: Store, broker: Broker, database_url: str,
) -> None:
    job = new_job("later")
    await store.upsert_job(job, spec(), 1, SLOT)
    recorder = Recorder(store, broker, max_delay=0.001)
    writing = asyncio.create_task(recorder.run())
    try:
        async with row_held(database_url, job) as release:
            recorder.fired([FireRecord(job.job_id, SLOT + SECOND, SLOT, missed=1)])
            await asyncio.sleep(0.3)
            assert (await job_row(store, job))["last_schedule_time"] is None
            recorder.fired([FireRecord(job.job_id, SLOT + 2 * SECOND, SLOT + SECOND, missed=2)])
            await release()
    finally:
        await recorder.close()  # returns once every fire record taken is written
        async with asyncio.timeout(5):
            await writing
    row = await job_row(store, job)
    # The two fires, folded: the later next run and slot, the missed slots of both.
    assert (row["next_run_at"], row["last_schedule_time"], row["missed_count"]) == (SLOT + 2 * SECOND,
                                                                                   SLOT + SECOND, 3)


async def test_a_jobs_fire_records_are_written_at_once_then_once_per_interval(store: Store, broker: Broker) -> None:
    """The first fire after a quiet spell is written at once (an hourly job's status moves when it
    fires); an every-second job's later fires fold and wait for the end of the interval."""
    job = new_job("every-second")
    await store.upsert_job(job, spec(), 1, SLOT)
    recorder = Recorder(store, broker, max_delay=0.001, row_interval=2.0)
    writing = asyncio.create_task(recorder.run())

    async def recorded() -> tuple[object, ...]:
        row = await job_row(store, job)
        return row["next_run_at"], row["last_schedule_time"], row["missed_count"]

    async def until_recorded(expected: tuple[object, ...], seconds: float) -> None:
        for _ in range(round(seconds / 0.01)):
            if await recorded() == expected:
                return
            await asyncio.sleep(0.01)
        assert await recorded() == expected

    try:
        recorder.fired([FireRecord(job.job_id, SLOT + SECOND, SLOT, missed=0)])
        await until_recorded((SLOT + SECOND, SLOT, 0), 1)
        recorder.fired([FireRecord(job.job_id, SLOT + 2 * SECOND, SLOT + SECOND, missed=1)])
        recorder.fired([FireRecord(job.job_id, SLOT + 3 * SECOND, SLOT + 2 * SECOND, missed=1)])
        await asyncio.sleep(0.3)
        assert await recorded() == (SLOT + SECOND, SLOT, 0)  # held for the rest of the interval
        await until_recorded((SLOT + 3 * SECOND, SLOT + 2 * SECOND, 2), 5)
        recorder.fired([FireRecord(job.job_id, SLOT + 4 * SECOND, SLOT + 3 * SECOND, missed=0)])
    finally:
        await recorder.close()  # a closing recorder writes what it held at once
        async with asyncio.timeout(1):
            await writing
    assert await recorded() == (SLOT + 4 * SECOND, SLOT + 3 * SECOND, 2)
