"""Retention (`Store.prune_histories`): a job keeps its newest successes and, apart, its newest other
ends, counted by attempt; a running attempt and other jobs' runs are never touched."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from sundial.core.broker import Broker
from sundial.core.clock import ManualClock, to_ms
from sundial.core.keys import run_id_for_slot
from sundial.core.runs import JobRef, RunStatus, Trigger
from sundial.core.store import RunRecord, Store
from tests.integration.engine import armed

# (slot, attempt, status), oldest first: a failed run retried twice, then failures of other kinds.
HISTORY = [
    (0, 1, RunStatus.SUCCESS), (1, 1, RunStatus.SUCCESS), (2, 1, RunStatus.SUCCESS), (3, 1, RunStatus.SUCCESS),
    (4, 1, RunStatus.SUCCESS), (5, 1, RunStatus.FAILED), (5, 2, RunStatus.FAILED), (5, 3, RunStatus.TIMED_OUT),
    (6, 1, RunStatus.TIMED_OUT), (7, 1, RunStatus.RUNNING), (8, 1, RunStatus.CANCELLED), (9, 1, RunStatus.SKIPPED),
]
EVERY_ATTEMPT = {(slot, attempt) for slot, attempt, _ in HISTORY}


def _record(job: JobRef, start: datetime, slot: int, attempt: int, status: RunStatus) -> RunRecord:
    at = start + timedelta(seconds=slot)
    return RunRecord(run_id=run_id_for_slot(job.job_id, to_ms(at)), job_id=job.job_id, logical_time=at,
                     scheduled_for=at, trigger=Trigger.SCHEDULED if attempt == 1 else Trigger.RETRY,
                     status=status, attempt=attempt, started_at=at,
                     completed_at=None if status is RunStatus.RUNNING else at)


async def _attempts(store: Store, job: JobRef, start: datetime) -> set[tuple[int, int]]:
    async with store.pool.connection() as conn:
        cursor = await conn.execute("SELECT logical_time, attempt FROM job_runs WHERE job_id = %s", (job.job_id,))
        return {(round((at - start).total_seconds()), attempt) for at, attempt in await cursor.fetchall()}


@pytest.mark.parametrize(("keep_success", "keep_failed", "pruned"), [
    (2, 3, {(0, 1), (1, 1), (2, 1), (5, 1), (5, 2), (5, 3)}),
    (2, 4, {(0, 1), (1, 1), (2, 1), (5, 1), (5, 2)}),  # the newest attempt of slot 5 stays, its older go
    (0, 0, EVERY_ATTEMPT - {(7, 1)}),  # a running attempt stays whatever the limits
    (5, 6, set()),
    (100, 200, set()),
])
async def test_retention_keeps_the_newest_of_each_kind_by_attempt(
    broker: Broker, store: Store, clock: ManualClock, keep_success: int, keep_failed: int,
    pruned: set[tuple[int, int]],
) -> None:
    start = clock.now()
    job, _ = await armed(broker, store, start, schedule="0 0 1 1 *")
    other, _ = await armed(broker, store, start, schedule="0 0 1 1 *")
    for owner in (job, other):
        await store.record_runs([_record(owner, start, *row) for row in HISTORY])

    # One statement for both: each job is held to its own limits.
    assert await store.prune_histories({job.job_id: (keep_success, keep_failed), other.job_id: (100, 200)}) == len(
        pruned)

    assert await _attempts(store, job, start) == EVERY_ATTEMPT - pruned
    assert await _attempts(store, other, start) == EVERY_ATTEMPT
