"""Fire records never wait for a job row another writer holds (`RECORD_FIRES` skips it).

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
