"""A ticker SIGKILLed while it holds claim leases costs lateness, never slots."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import cast

import pytest

from sundial.core.broker import Broker
from sundial.core.clock import SYSTEM_CLOCK
from sundial.core.keys import Keyspace
from sundial.core.runs import JobRef
from sundial.core.store import Store
from tests.chaos.conftest import fleet_for
from tests.chaos.harness import account, executions, per_second_jobs, wait_for

pytestmark = [pytest.mark.services, pytest.mark.chaos]

JOBS = 30


async def leased_entries(broker: Broker) -> int:
    """Entries whose index score is past their due time: leased by some ticker right now."""
    shard = broker.keys.all_shards()[0]
    scores = dict(cast(list[tuple[str, float]], await broker.redis.zrange(shard.due, 0, -1, withscores=True)))
    entries = await broker.entries(list(scores))
    return sum(1 for job_id, entry in entries.items() if entry and scores[job_id] > entry.next_due_ms)


async def test_a_ticker_killed_holding_leases_loses_no_slot(
    broker: Broker, store: Store, database_url: str, redis_url: str, keyspace: Keyspace, tmp_path: Path
) -> None:
    fleet = fleet_for(database_url, redis_url, keyspace, tmp_path / "fleet")
    jobs = await per_second_jobs(broker, store, JOBS)
    try:
        # The victim claims a second ahead, so it wins nearly every entry and dies holding leases.
        fleet.start("survivor", SUNDIAL_TICKER_LOOKAHEAD_SECONDS="0")
        fleet.start("victim", SUNDIAL_TICKER_LOOKAHEAD_SECONDS="1", SUNDIAL_CONSUMER_ENABLED="false")
        await wait_for(lambda: _true(len(executions(fleet.ledger)) >= JOBS * 3), 60, "the jobs to run")
        await asyncio.sleep(2.0)

        async def victim_holds_leases() -> bool:
            return await leased_entries(broker) >= JOBS // 2

        await wait_for(victim_holds_leases, 10, "the victim to hold leases", interval=0.01)
        missed_before = await missed_slots(store, jobs)
        killed_at = SYSTEM_CLOCK.now()
        fleet.kill("victim")
        held = await leased_entries(broker)
        await asyncio.sleep(8.0)
        end = SYSTEM_CLOCK.now() - timedelta(seconds=1)
        await asyncio.sleep(2.0)
    finally:
        fleet.stop_all()
    figures, examples = await account(store, fleet.ledger, jobs, killed_at - timedelta(seconds=2), end,
                                      fault="ticker SIGKILLed holding leases", fault_at=killed_at,
                                      notes=f"leases_held_at_kill={held}")
    assert held > 0, "the victim held no lease when it died: the test proved nothing"
    assert (figures.lost, figures.duplicates, figures.not_terminal) == (0, 0, 0), (examples, fleet.logs())
    # (Slots missed before the kill are the workers' start-up on a busy machine, not the fault.)
    assert await missed_slots(store, jobs) == missed_before


async def _true(value: bool) -> bool:
    return value


async def missed_slots(store: Store, jobs: list[JobRef]) -> int:
    rows = await store.jobs_by_id([job.job_id for job in jobs])
    return sum(int(row["missed_count"]) for row in rows.values())
