"""concurrencyPolicy BufferOne and BufferAll on real Redis and PostgreSQL: slots that come due
while a run is in flight wait behind it instead of running beside it, being skipped or replacing it."""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from sundial.core.broker import Broker
from sundial.core.clock import ManualClock
from sundial.core.config import Settings
from sundial.core.jobs import ArmRequest, arm_jobs, run_now
from sundial.core.store import Store
from sundial.worker.app import Worker
from tests.integration.engine import armed, runs_of, worker

pytestmark = pytest.mark.services

MINUTE = timedelta(minutes=1)
SLOTS = [datetime(2026, 3, 1, 12, minute, tzinfo=UTC) for minute in (1, 2, 3)]


async def _three_slots_behind_a_manual_run(broker: Broker, store: Store, clock: ManualClock, config: Settings,
                                           policy: str) -> tuple[Any, Worker]:
    job, job_spec = await armed(broker, store, clock.now(), schedule="* * * * *", concurrencyPolicy=policy)
    # A manual run holds the job's claim (it is queued, not yet taken): the slots come due behind it.
    await run_now(broker, job, job_spec, "long one", clock.now())
    w = worker(broker, store, clock, config)
    for slot in SLOTS:
        clock.advance(slot - clock.now())
        await w.ticker.tick()
    return job, w


async def _drain_all(w: Worker) -> int:
    done = 0
    for _ in range(10):  # a buffered run is released on the tick after the run ahead is acknowledged
        done += await w.drain()
    return done


async def test_buffer_all_runs_every_slot_one_after_another(broker: Broker, store: Store, clock: ManualClock,
                                                             config: Settings) -> None:
    job, w = await _three_slots_behind_a_manual_run(broker, store, clock, config, "BufferAll")
    assert await _drain_all(w) == 4
    runs = await runs_of(store, job)
    assert sorted((r["trigger_type"], r["status"]) for r in runs) == [("manual", "success")] + [
        ("scheduled", "success")] * 3
    scheduled = sorted((r for r in runs if r["trigger_type"] == "scheduled"), key=lambda r: r["logical_time"])
    assert [r["logical_time"] for r in scheduled] == SLOTS
    ordered = sorted(runs, key=lambda r: r["started_at"])
    for earlier, later in itertools.pairwise(ordered):
        assert later["started_at"] >= earlier["completed_at"], "buffered runs never overlap"


async def test_buffer_one_keeps_one_waiting_and_skips_the_rest(broker: Broker, store: Store, clock: ManualClock,
                                                               config: Settings) -> None:
    job, w = await _three_slots_behind_a_manual_run(broker, store, clock, config, "BufferOne")
    assert await _drain_all(w) == 2
    runs = {r["logical_time"]: r for r in await runs_of(store, job) if r["trigger_type"] == "scheduled"}
    assert [runs[slot]["status"] for slot in SLOTS] == ["success", "skipped", "skipped"]
    assert "concurrencyPolicy BufferOne" in runs[SLOTS[1]]["error_message"]
    assert "a slot already waits" in runs[SLOTS[2]]["error_message"]


async def test_buffered_runs_of_a_deleted_job_are_dropped(broker: Broker, store: Store, clock: ManualClock,
                                                          config: Settings) -> None:
    job, w = await _three_slots_behind_a_manual_run(broker, store, clock, config, "BufferAll")
    await broker.disarm(job.job_id)
    assert await _drain_all(w) == 1  # the manual run only
    shard = broker.keys.for_job(job.job_id)
    assert await broker.redis.exists(shard.buffer(job.job_id)) == 0
    assert await broker.redis.zcard(shard.buffered) == 0


async def test_buffered_slots_wait_for_the_retries_of_the_run_ahead(broker: Broker, store: Store,
                                                                     clock: ManualClock, config: Settings) -> None:
    job, job_spec = await armed(broker, store, clock.now(), schedule="* * * * *", concurrencyPolicy="BufferAll",
                                target="fail", params={"message": "boom"},
                                retry={"attempts": 2, "backoff": {"type": "Fixed", "delaySeconds": 120}})
    w = worker(broker, store, clock, config)
    await run_now(broker, job, job_spec, "first", clock.now())
    assert await w.drain() == 1  # attempt 1 fails; attempt 2 waits 120 s, holding the job's claim
    clock.advance(SLOTS[0] - clock.now())
    assert await _drain_all(w) == 0, "the 12:01 slot waits behind the pending retry"
    clock.advance(timedelta(seconds=61))  # past the retry's backoff and the 12:02 slot
    assert await _drain_all(w) == 2, "the retry, then the 12:01 slot; 12:02 waits behind 12:01's retry"
    runs = await runs_of(store, job)
    retry = next(r for r in runs if r["trigger_type"] == "retry")
    [scheduled] = [r for r in runs if r["trigger_type"] == "scheduled"]
    assert scheduled["logical_time"] == SLOTS[0]
    assert scheduled["started_at"] >= retry["completed_at"]


async def test_two_tickers_racing_buffer_a_slot_once(broker: Broker, store: Store, clock: ManualClock,
                                                    config: Settings) -> None:
    job, job_spec = await armed(broker, store, clock.now(), schedule="* * * * *", concurrencyPolicy="BufferAll")
    await run_now(broker, job, job_spec, "long one", clock.now())
    tickers = [worker(broker, store, clock, config).ticker for _ in range(2)]
    clock.advance(SLOTS[0] - clock.now())
    for ticker in tickers:
        await ticker.tick()
    shard = broker.keys.for_job(job.job_id)
    assert await broker.redis.llen(shard.buffer(job.job_id)) == 1


async def test_buffered_slots_are_recorded_in_postgresql_and_forgotten_when_the_job_is_suspended(
        broker: Broker, store: Store, clock: ManualClock, config: Settings) -> None:
    job, job_spec = await armed(broker, store, clock.now(), schedule="* * * * *", concurrencyPolicy="BufferAll")
    await run_now(broker, job, job_spec, "long one", clock.now())
    w = worker(broker, store, clock, config)
    recording = asyncio.create_task(w.recorder.run())
    for slot in SLOTS[:2]:
        clock.advance(slot - clock.now())
        await w.ticker.tick()
    await w.recorder.close()
    await recording
    async def waiting() -> list[datetime]:  # the shared database holds other tests' jobs too
        rows = await store.waiting_buffered_runs(SLOTS[0] - MINUTE)
        return [row["logical_time"] for row in rows if row["job_id"] == job.job_id]

    assert await waiting() == SLOTS[:2]
    suspended = job_spec.model_copy(update={"suspend": True})
    await arm_jobs(broker, store, [ArmRequest(job, suspended, 2)], clock.now(), await store.jobs_by_id([job.job_id]))
    assert await waiting() == []
