"""`scheduled_jobs.armed_since`: since when a job has fired as it is, for the rebuild's lost runs.

It moves to the arming `now` only when the job is suspended, resumed or changed (its
generation); a re-arm of the same generation (an operator restart, a drift repair) keeps it, so
the slots fired since still count as fired. Real PostgreSQL.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from sundial.core.clock import to_ms
from sundial.core.runs import JobRef, RunStatus, Trigger
from sundial.core.store import FireRecord, RunRecord, Store
from tests.integration.engine import new_job, spec

pytestmark = pytest.mark.services

T = datetime.fromisoformat("2026-11-30T12:00:00Z")


async def armed_since(store: Store, job: JobRef) -> datetime:
    [row] = [row for row in await store.armable_jobs() if row["id"] == job.job_id]
    since: datetime = row["armed_since"]
    return since


async def test_armed_since_moves_only_when_the_job_is_suspended_resumed_or_changed(store: Store) -> None:
    job = new_job("armed")
    await store.upsert_job(job, spec(), 1, None, armed_at=T)
    assert await armed_since(store, job) == T
    await store.upsert_jobs([(job, spec(), 1, None)], armed_at=T + timedelta(minutes=1))
    assert await armed_since(store, job) == T, "a re-arm of the same generation keeps it"
    await store.upsert_job(job, spec(suspend=True), 2, None, armed_at=T + timedelta(minutes=2))
    await store.upsert_job(job, spec(), 3, None, armed_at=T + timedelta(minutes=3))
    assert await armed_since(store, job) == T + timedelta(minutes=3), "resumed"
    await store.upsert_job(job, spec(schedule="*/2 * * * * *"), 4, None, armed_at=T + timedelta(minutes=4))
    assert await armed_since(store, job) == T + timedelta(minutes=4), "rescheduled"
    await store.upsert_job(job, spec(schedule="*/2 * * * * *"), 4, None)
    assert await armed_since(store, job) == T + timedelta(minutes=4)


async def test_a_fire_record_with_missed_slots_marks_when(store: Store) -> None:
    job = new_job("missed")
    await store.upsert_job(job, spec(), 1, None, armed_at=T)
    await store.record_fires([FireRecord(job.job_id, None, T, missed=0)])
    [row] = [row for row in await store.armable_jobs() if row["id"] == job.job_id]
    assert row["last_missed_at"] is None
    await store.record_fires([FireRecord(job.job_id, None, T + timedelta(seconds=1), missed=2)])
    [row] = [row for row in await store.armable_jobs() if row["id"] == job.job_id]
    assert row["last_missed_at"] is not None, "the rebuild looks for lost runs only after it"


async def test_recorded_slots_leave_manual_runs_and_older_rows_out(store: Store) -> None:
    job = new_job("recorded")
    await store.upsert_job(job, spec(), 1, None, armed_at=T)

    def row(run_id: str, at: datetime, trigger: Trigger) -> RunRecord:
        return RunRecord(run_id=run_id, job_id=job.job_id, logical_time=at, scheduled_for=None, trigger=trigger,
                         status=RunStatus.SUCCESS, attempt=1, completed_at=at)

    await store.record_runs([
        row(f"{job.job_id}:1", T, Trigger.SCHEDULED),
        row(f"{job.job_id}:2", T - timedelta(hours=1), Trigger.SCHEDULED),  # before the lookback
        row(f"{job.job_id}:manual:x", T + timedelta(seconds=1), Trigger.MANUAL),  # its request's time, no slot
        row(f"{job.job_id}:3", T + timedelta(seconds=2), Trigger.BACKFILL),
    ])
    recorded = await store.recorded_slots([job.job_id], T - timedelta(minutes=10))
    assert recorded == {job.job_id: {to_ms(T), to_ms(T + timedelta(seconds=2))}}
