"""Overload degrades predictably: with workers too slow for the offered load, late scheduled runs
are recorded missed instead of running ever later, the queue stays bounded, and once the load
falls every slot runs again. Counts and states only; the figures are in bench/."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from sundial.core.broker import Broker
from sundial.core.clock import SYSTEM_CLOCK, to_ms
from sundial.core.jobs import disarm_job
from sundial.core.keys import Keyspace
from sundial.core.store import Store
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
