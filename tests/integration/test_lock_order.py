"""Multi-row writes to scheduled_jobs lock their rows in one order (by job id), so they never deadlock.

Under load the workers' fire records (`record_fires`, an UPDATE of many job rows) and the
operator's bulk upserts (`upsert_jobs`, one INSERT .. ON CONFLICT per job in one transaction)
deadlocked in PostgreSQL: each took its rows in its own order (the operator's in the order of
its batch, the UPDATE in whatever order its join plan gave), so each could hold a row the other
was waiting for. PostgreSQL breaks such a cycle after `deadlock_timeout` by failing one side,
which is retried (nothing is lost, but a second passes and the write is done twice).

A trigger that sleeps after each row is locked makes the interleaving certain: both writers take
their first row, sleep, and then ask for the other's. In one order they only queue. (Fire records
now skip a row another writer holds, and are written again later: they cannot wait at all.)
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable
from datetime import timedelta

import psycopg
import pytest
from psycopg import errors

from sundial.core.clock import SYSTEM_CLOCK
from sundial.core.runs import JobRef
from sundial.core.store import FireRecord, Store
from tests.integration.engine import spec

pytestmark = pytest.mark.services

SLOW_NAMESPACE = f"lock-order-{uuid.uuid4().hex[:8]}"
ROW_SLEEP_SECONDS = 1.5  # longer than both writers take to start, so each holds its first row


@pytest.fixture
async def slow_rows(database_url: str) -> AsyncIterator[None]:
    """A trigger that sleeps after locking a row of SLOW_NAMESPACE (and only of it: other tests share the table)."""
    function, trigger = f"sleep_{SLOW_NAMESPACE.replace('-', '_')}", f"trg_{SLOW_NAMESPACE.replace('-', '_')}"
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute(
            f"CREATE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $$"
            f" BEGIN PERFORM pg_sleep({ROW_SLEEP_SECONDS}); RETURN NEW; END $$")
        await conn.execute(
            f"CREATE TRIGGER {trigger} BEFORE UPDATE ON scheduled_jobs FOR EACH ROW"
            f" WHEN (NEW.namespace = '{SLOW_NAMESPACE}') EXECUTE FUNCTION {function}()")
        try:
            yield
        finally:
            await conn.execute(f"DROP TRIGGER {trigger} ON scheduled_jobs")
            await conn.execute(f"DROP FUNCTION {function}()")


def two_jobs() -> tuple[JobRef, JobRef]:
    """Two jobs whose ids sort first and second."""
    low, high = (str(uuid.UUID(int=uuid.uuid4().int & ~(0xF << 124) | (nibble << 124))) for nibble in (1, 14))
    return JobRef(low, SLOW_NAMESPACE, f"low-{low[:8]}"), JobRef(high, SLOW_NAMESPACE, f"high-{high[:8]}")


async def created(store: Store) -> tuple[JobRef, JobRef]:
    """Both jobs stored, the low one first (so a scan of the table meets it first too)."""
    low, high = two_jobs()
    for job in (low, high):
        await store.upsert_jobs([(job, spec(), 1, None)])
    return low, high


async def both(first: Awaitable[object], second: Awaitable[object]) -> list[object]:
    """Start `first`, then `second` while `first` sleeps holding its first row."""
    one = asyncio.ensure_future(first)
    await asyncio.sleep(ROW_SLEEP_SECONDS / 3)
    two = asyncio.ensure_future(second)
    return list(await asyncio.gather(one, two, return_exceptions=True))


def fire(job: JobRef) -> FireRecord:
    now = SYSTEM_CLOCK.now()
    return FireRecord(job.job_id, now + timedelta(seconds=1), now, 0)


async def test_a_bulk_upsert_and_fire_records_in_opposite_orders_do_not_deadlock(
    store: Store, slow_rows: None
) -> None:
    low, high = await created(store)
    # The operator's batch lists the high id first; the ticker's fires list the low one first.
    outcomes = await both(store.upsert_jobs([(high, spec(), 2, None), (low, spec(), 2, None)]),
                          store.record_fires([fire(low), fire(high)]))
    assert not any(isinstance(outcome, errors.DeadlockDetected) for outcome in outcomes), outcomes
    upserted, held = outcomes
    assert upserted is None
    assert isinstance(held, set)
    assert held <= {low.job_id, high.job_id}  # skipped, for a later batch


async def test_two_bulk_upserts_in_opposite_orders_do_not_deadlock(store: Store, slow_rows: None) -> None:
    low, high = await created(store)
    outcomes = await both(store.upsert_jobs([(high, spec(), 2, None), (low, spec(), 2, None)]),
                          store.upsert_jobs([(low, spec(), 3, None), (high, spec(), 3, None)]))
    assert outcomes == [None, None]
