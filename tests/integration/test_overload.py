"""Overload degrades predictably: with workers too slow for the offered load, late scheduled runs
are recorded missed instead of running ever later, the queue stays bounded, and once the load
falls every slot runs again. Counts and states only; the figures are in bench/."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from sundial.core.broker import Broker
from sundial.core.clock import SYSTEM_CLOCK, ManualClock, to_ms
from sundial.core.jobs import disarm_job
from sundial.core.keys import CONSUMER_GROUP, Keyspace
from sundial.core.store import Store
from sundial.worker.ticker import Ticker
from tests.integration.engine import armed, runs_of, settings, worker

pytestmark = pytest.mark.services

JOBS = 4
QUEUE_LIMIT = 6
OVERLOAD_SECONDS = 8.0
RECOVERY_SECONDS = 8.0


async def test_slow_workers_shed_late_runs_and_recover(
    broker: Broker, store: Store, database_url: str, redis_url: str, keyspace: Keyspace
) -> None:
    # Offered: 4 runs a second of 0.5 s each; one slot executes them: capacity 2 a second.
    jobs = [(await armed(broker, store, SYSTEM_CLOCK.now(), f"slow{i}", schedule="* * * * * *", target="sleep",
                         params={"seconds": 0.5}))[0] for i in range(JOBS)]
    config = settings(database_url, redis_url, keyspace, concurrency=1, queue_max_length=QUEUE_LIMIT,
                      queue_min_wait_seconds=1.0, ticker_lookahead_seconds=0.5)
    serving = worker(broker, store, SYSTEM_CLOCK, config)
    stop = asyncio.Event()
    runner = asyncio.create_task(serving.run(stop))
    queue = keyspace.all_shards()[0].queue
    lengths = []
    try:
        for _ in range(int(OVERLOAD_SECONDS * 5)):
            lengths.append(await broker.redis.xlen(queue))
            await asyncio.sleep(0.2)
        # The load falls below capacity: one job of 0.5 s a second is left.
        for job in jobs[1:]:
            await disarm_job(broker, store, job.job_id, retain_history=True)
        recovered_from_ms = to_ms(SYSTEM_CLOCK.now()) + 3000
        await asyncio.sleep(RECOVERY_SECONDS)
    finally:
        stop.set()
        await runner

    assert max(lengths) <= QUEUE_LIMIT + 1, "the queue grew past its limit"
    rows = [run for job in jobs for run in await runs_of(store, job)]
    per_slot = Counter((run["job_id"], run["scheduled_for"], run["attempt"]) for run in rows)
    assert [key for key, n in per_slot.items() if n > 1] == []
    outcomes = Counter(run["status"] for run in rows)
    assert set(outcomes) <= {"success", "skipped", "running"}
    expired = [run for run in rows if run["status"] == "skipped"]
    assert expired, "no late run was recorded missed"
    assert all(run["error_message"].startswith("missed:") for run in expired)
    queue_full = sum(row["missed_count"] for row in (await store.jobs_by_id([job.job_id for job in jobs])).values())
    assert queue_full > 0, "no slot was recorded missed while the queue was full"

    # After the load fell, the remaining job's slots all ran.
    remaining = [run for run in await runs_of(store, jobs[0])
                 if to_ms(run["scheduled_for"]) >= recovered_from_ms and run["status"] != "running"]
    assert remaining, "nothing ran after the load fell"
    assert {run["status"] for run in remaining} == {"success"}


async def test_a_run_that_would_expire_before_a_worker_reaches_it_is_recorded_missed_not_queued(
    broker: Broker, store: Store, keyspace: Keyspace
) -> None:
    clock = ManualClock(datetime(2026, 3, 1, 12, 0, 59, 500_000, tzinfo=UTC))
    every_second, _ = await armed(broker, store, clock.now(), "second", schedule="* * * * * *")
    every_minute, _ = await armed(broker, store, clock.now(), "minute", schedule="0 * * * * *")
    await broker.ensure_groups()
    queue = await _queue_a_message_waiting_since(broker, keyspace, 10_000)
    ticker = Ticker(broker, store, clock)

    clock.advance(timedelta(seconds=0.7))  # 12:01:00.2: both jobs' slot of 12:01:00 is due
    assert (await ticker.tick()).fired == 1
    queued = [fields["run"] for _id, fields in await broker.queued(keyspace.all_shards()[0])]
    # The every-second run expires 5 s after its slot, before a worker could reach it; the
    # every-minute run may wait until its next slot, so it is queued behind the 10 s wait.
    assert queued == ["waiting", f"{every_minute.job_id}:{to_ms(clock.now()) - 200}"]
    job = await store.job(every_second.job_id)
    assert job is not None
    assert job["missed_count"] == 1

    # Once a worker has taken the waiting message, the next slot is queued again.
    await broker.redis.xreadgroup(CONSUMER_GROUP, "w", {queue: ">"}, count=10)
    clock.advance(timedelta(seconds=1))
    assert (await ticker.tick()).fired == 1
    assert f"{every_second.job_id}:{to_ms(clock.now()) - 200}" in {
        fields["run"] for _id, fields in await broker.queued(keyspace.all_shards()[0])}


async def test_a_shorter_wait_sheds_a_share_of_the_slots_spread_over_the_jobs(
    broker: Broker, store: Store, keyspace: Keyspace
) -> None:
    """Between a wait as long as the time it leaves (none shed) and one that leaves nothing (all
    shed), a share is shed: the deployment sheds what it cannot run, not whole seconds of slots."""
    clock = ManualClock(datetime(2026, 3, 1, 12, 0, 59, 500_000, tzinfo=UTC))
    jobs = [(await armed(broker, store, clock.now(), f"share{i}", schedule="* * * * * *"))[0] for i in range(200)]
    await broker.ensure_groups()
    await _queue_a_message_waiting_since(broker, keyspace, 3_500)
    clock.advance(timedelta(seconds=0.7))  # 12:01:00.2: every job's slot of 12:01:00 is due
    # A run queued now waits about 3.5 s and reaches a worker with about 1.3 s of its 5 s left:
    # a share of 2 * 3.5 / 4.8 - 1, about 46 %, is shed (a little more as the test's time passes).
    fired = (await Ticker(broker, store, clock).tick()).fired
    rows = await store.jobs_by_id([job.job_id for job in jobs])
    missed = sum(row["missed_count"] for row in rows.values())
    assert fired + missed == len(jobs)
    assert 40 <= missed <= 160, missed


async def _queue_a_message_waiting_since(broker: Broker, keyspace: Keyspace, waited_ms: int) -> str:
    """Queue a message no worker has taken for `waited_ms` (by Redis' clock, which stamps every
    message id, as the overload policy reads it); return the queue's key."""
    queue = keyspace.all_shards()[0].queue
    seconds, micros = await broker.redis.time()
    await broker.redis.xadd(queue, {"run": "waiting"}, id=f"{seconds * 1000 + micros // 1000 - waited_ms}-0")
    return queue
