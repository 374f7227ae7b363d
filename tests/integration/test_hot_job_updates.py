"""The hot path's updates of a job's row are HOT, and the status poll still sees them (migration 0010).

A fire record (`record_fires`) and a run's end (`record_runs`) each update the job's row; with
`updated_at` no longer indexed (only its 10-second `changed_bucket`), PostgreSQL updates the row
in its page without an index entry. The operator's status sync follows the same rows through
`job_states_changed_since`, now found by the bucket. Real PostgreSQL.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from bench.common import job_row_updates

from sundial.core.runs import JobRef, RunStatus, Trigger
from sundial.core.store import FireRecord, RunRecord, Store
from tests.integration.engine import new_job, spec

pytestmark = pytest.mark.services

SLOT = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


@pytest.fixture
async def one_backend(database_url: str) -> AsyncIterator[Store]:
    """A store on one connection: its table statistics are flushed on demand (`job_row_updates`)."""
    opened = await Store.open(database_url, min_size=1, max_size=1)
    yield opened
    await opened.close()


async def database_now(store: Store) -> datetime:
    async with store.pool.connection() as conn:
        cursor = await conn.execute("SELECT clock_timestamp()")
        row = await cursor.fetchone()
    assert row is not None
    moment: datetime = row[0]
    return moment


async def start_of_a_bucket(store: Store) -> None:
    """Wait, if need be, so the next few updates fall in one 10-second bucket: the update that
    moves a row into a new bucket changes an indexed value and is not HOT, by design."""
    seconds_in = (await database_now(store)).timestamp() % 10
    if seconds_in > 6:
        await asyncio.sleep(10.2 - seconds_in)


async def state(store: Store, job: JobRef, since: datetime) -> dict[str, object] | None:
    return next((row for row in await store.job_states_changed_since(since) if row["id"] == job.job_id), None)


async def test_a_fire_record_and_a_run_end_are_hot_and_the_poll_sees_both(one_backend: Store) -> None:
    store = one_backend
    job = new_job("hot")
    await start_of_a_bucket(store)
    await store.upsert_job(job, spec(), 1, SLOT)
    before = await database_now(store)
    upd, hot = await job_row_updates(store)

    await store.record_fires([FireRecord(job.job_id, SLOT + timedelta(seconds=1), SLOT, missed=0)])
    fired = await state(store, job, before)
    assert fired is not None, "the status poll sees the fire record"
    assert fired["last_schedule_time"] == SLOT
    after_fire = await database_now(store)

    await store.record_runs([RunRecord(
        run_id=f"{job.job_id}:{int(SLOT.timestamp() * 1000)}", job_id=job.job_id, logical_time=SLOT,
        scheduled_for=SLOT, trigger=Trigger.SCHEDULED, status=RunStatus.SUCCESS, attempt=1, started_at=SLOT,
        completed_at=SLOT + timedelta(milliseconds=5), duration_ms=5, worker="w0")])
    ended = await state(store, job, after_fire)
    assert ended is not None, "the status poll sees the run's end"
    assert ended["run_count"] == 1
    assert ended["last_status"] == "success"

    upd_after, hot_after = await job_row_updates(store)
    assert upd_after - upd == 2
    assert hot_after - hot == 2, "both updates were HOT: no index entry written"


async def test_the_poll_returns_exactly_the_rows_changed_after_the_cursor(store: Store) -> None:
    """Around bucket edges: the bucket bound (`changed_bucket >= bucket(since)`) loses no row."""
    edge = datetime(2026, 11, 30, 12, 0, 10, tzinfo=UTC)  # a bucket starts here
    stamps = [edge - timedelta(microseconds=1), edge, edge + timedelta(microseconds=1),
              edge + timedelta(seconds=9, microseconds=999_999), edge + timedelta(seconds=10)]
    jobs = [new_job("edge") for _ in stamps]
    for job in jobs:
        await store.upsert_job(job, spec(), 1, None)
    async with store.pool.connection() as conn:
        for job, stamp in zip(jobs, stamps, strict=True):
            await conn.execute("UPDATE scheduled_jobs SET updated_at = %s WHERE id = %s", (stamp, job.job_id))
    mine = {job.job_id: stamp for job, stamp in zip(jobs, stamps, strict=True)}
    for since in [*stamps, edge - timedelta(seconds=10), edge + timedelta(seconds=5)]:
        found = {row["id"] for row in await store.job_states_changed_since(since) if row["id"] in mine}
        assert found == {job_id for job_id, stamp in mine.items() if stamp > since}, since
    found = {row["id"] for row in await store.jobs_changed_since(edge) if row["id"] in mine}
    assert found == {job_id for job_id, stamp in mine.items() if stamp > edge}
