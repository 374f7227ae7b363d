"""The kill soak: workers SIGKILLed at random every 10 s and restarted 2 s later, Redis restarted
once without persistence; at the end nothing is lost, nothing fired twice, every run terminal.

Minutes long, so only `make chaos` runs it (marker chaos_long). SUNDIAL_SOAK_SECONDS and
SUNDIAL_SOAK_JOBS size it; the defaults fit a shared 2-core machine. The operator is not part
of it yet: entries are armed straight into PostgreSQL and Redis.
"""

from __future__ import annotations

import asyncio
import os
import random
from datetime import timedelta
from pathlib import Path

import pytest

from sundial.core.broker import Broker
from sundial.core.clock import SYSTEM_CLOCK
from sundial.core.keys import Keyspace
from sundial.core.store import Store
from sundial.devstack.services import RedisServer
from tests.chaos.conftest import fleet_for, store_dsn
from tests.chaos.harness import account, per_second_jobs, wait_until_recorded

pytestmark = [pytest.mark.services, pytest.mark.chaos_long]

SECONDS = float(os.environ.get("SUNDIAL_SOAK_SECONDS", "180"))
JOBS = int(os.environ.get("SUNDIAL_SOAK_JOBS", "60"))
WORKERS = ("w1", "w2", "w3")


@pytest.mark.timeout(SECONDS + 420)
async def test_kill_soak(
    own_broker: Broker, own_store: Store, own_redis: RedisServer, keyspace: Keyspace, tmp_path: Path,
) -> None:
    store, database_url = own_store, store_dsn(own_store)
    fleet = fleet_for(database_url, own_redis.url, keyspace, tmp_path / "fleet")
    jobs = await per_second_jobs(own_broker, store, JOBS)
    chance = random.Random(int(os.environ.get("SUNDIAL_SOAK_SEED", "11")))
    kills = 0
    try:
        await fleet.start_firing(list(WORKERS), JOBS)
        start = SYSTEM_CLOCK.now()
        redis_restarted = False
        while (SYSTEM_CLOCK.now() - start).total_seconds() < SECONDS:
            await asyncio.sleep(8.0)
            victim = chance.choice(fleet.live())
            fleet.kill(victim)
            kills += 1
            await asyncio.sleep(2.0)
            fleet.start(victim)
            if not redis_restarted and (SYSTEM_CLOCK.now() - start).total_seconds() > SECONDS / 2:
                own_redis.stop()
                await asyncio.sleep(1.0)
                own_redis.start()
                redis_restarted = True
        end = SYSTEM_CLOCK.now()
        # Runs of killed workers are reclaimed after the 3 s visibility timeout; a backlog drains.
        await wait_until_recorded(store, jobs, start, end - timedelta(seconds=1), 120)
    finally:
        fleet.stop_all()
    figures, examples = await account(
        store, fleet.ledger, jobs, start, end - timedelta(seconds=1),
        fault=f"kill soak {SECONDS:g}s", notes=f"jobs={JOBS} workers=3 kills={kills} redis_restarts=1",
        kills=fleet.kills)
    assert (figures.lost, figures.duplicates, figures.not_terminal) == (0, 0, 0), (examples, fleet.logs())
