"""Exactly once per slot with tickers racing in separate processes, on the real clock."""

from __future__ import annotations

import asyncio
import multiprocessing
from collections import Counter
from datetime import timedelta

import pytest

from sundial.core.aio import sleep_unless_stopped
from sundial.core.broker import Broker, QueueLimits
from sundial.core.clock import SYSTEM_CLOCK, from_ms
from sundial.core.keys import Keyspace
from sundial.core.store import Store
from sundial.worker.ticker import Ticker
from tests.integration.engine import armed

pytestmark = pytest.mark.services

JOBS = 200
TICKERS = 3
SECONDS = 20


def _ticker_process(redis_url: str, database_url: str, prefix: str, seconds: float) -> None:
    async def main() -> None:
        broker = Broker.from_url(redis_url, Keyspace(prefix))
        store = await Store.open(database_url)
        stop = asyncio.Event()
        # No worker takes these runs, so the oldest waits the whole test: with the default
        # deadline (5 s) the tickers would record later slots missed instead of queueing them
        # (the overload policy), so the runs here may wait longer than the test.
        limits = QueueLimits(min_wait_ms=round(seconds * 1000) + 60_000)
        runner = asyncio.create_task(Ticker(broker, store, SYSTEM_CLOCK, limits=limits).run(stop))
        await sleep_unless_stopped(stop, seconds)
        stop.set()
        await runner
        await broker.close()
        await store.close()

    asyncio.run(main())


async def test_racing_tickers_fire_every_slot_exactly_once(
    broker: Broker, store: Store, redis_url: str, database_url: str, keyspace: Keyspace
) -> None:
    first_slot = {}
    for i in range(JOBS):
        job, _ = await armed(broker, store, SYSTEM_CLOCK.now(), f"race{i}", schedule="* * * * * *")
        entry = await broker.entry(job.job_id)
        assert entry is not None
        first_slot[job.job_id] = entry.next_due_ms

    spawn = multiprocessing.get_context("spawn")
    tickers = [spawn.Process(target=_ticker_process, args=(redis_url, database_url, keyspace.prefix, SECONDS))
               for _ in range(TICKERS)]
    for process in tickers:
        process.start()
    for process in tickers:
        await asyncio.to_thread(process.join, SECONDS + 60)
    assert [process.exitcode for process in tickers] == [0] * TICKERS
    stopped_at = SYSTEM_CLOCK.now()

    fired = Counter(fields["run"] for _id, fields in await broker.queued(broker.keys.all_shards()[0]))
    duplicates = {run_id: n for run_id, n in fired.items() if n > 1}
    assert duplicates == {}

    for job_id, first in first_slot.items():
        entry = await broker.entry(job_id)
        assert entry is not None
        expected = {f"{job_id}:{slot}" for slot in range(first, entry.next_due_ms, 1000)}
        mine = {run_id for run_id in fired if run_id.startswith(job_id)}
        missed, extra = sorted(expected - mine)[:3], sorted(mine - expected)[:3]
        assert mine == expected, f"job {job_id}: missed {missed}, extra {extra}"
        # The tickers kept up to the end: the last slot fired is within a couple of seconds of the stop.
        assert stopped_at - from_ms(entry.next_due_ms) < timedelta(seconds=3)
    assert len(fired) >= JOBS * (SECONDS - 5)
