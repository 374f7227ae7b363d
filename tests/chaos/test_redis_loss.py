"""Redis loses its data under running workers: runs resume within seconds, none lost or doubled."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path

import pytest

from sundial.core.broker import Broker
from sundial.core.clock import SYSTEM_CLOCK
from sundial.core.jobs import run_now
from sundial.core.keys import Keyspace
from sundial.core.store import Store
from sundial.devstack.services import RedisServer
from tests.chaos.conftest import fleet_for, store_dsn
from tests.chaos.harness import Figures, account, per_second_jobs, wait_for
from tests.integration.engine import armed, runs_of

pytestmark = [pytest.mark.services, pytest.mark.chaos]

JOBS = 20


async def lose_data(
    fault: str, do: Callable[[], Awaitable[None]], broker: Broker, store: Store, database_url: str,
    redis: RedisServer, keyspace: Keyspace, root: Path,
) -> Figures:
    fleet = fleet_for(database_url, redis.url, keyspace, root)
    jobs = await per_second_jobs(broker, store, JOBS)
    try:
        await fleet.start_firing(["w1", "w2"], JOBS)
        await asyncio.sleep(2.0)
        fault_at = SYSTEM_CLOCK.now()
        await do()
        await asyncio.sleep(10.0)
        end = SYSTEM_CLOCK.now() - timedelta(seconds=1)
        await asyncio.sleep(2.0)
        assert fleet.live() == ["w1", "w2"], "no worker may need a restart"
    finally:
        fleet.stop_all()
    figures, examples = await account(store, fleet.ledger, jobs, fault_at - timedelta(seconds=2), end,
                                      fault=fault, fault_at=fault_at)
    assert (figures.lost, figures.duplicates, figures.not_terminal) == (0, 0, 0), (examples, fleet.logs())
    assert figures.recovery_s <= 10.0
    return figures


async def test_flushall_mid_firing(
    own_broker: Broker, own_store: Store, own_redis: RedisServer, keyspace: Keyspace, tmp_path: Path,
) -> None:
    store, database_url = own_store, store_dsn(own_store)
    async def flushall() -> None:
        await own_broker.redis.flushall()

    await lose_data("Redis FLUSHALL", flushall, own_broker, store, database_url, own_redis, keyspace, tmp_path)


@pytest.mark.chaos_long  # the same recovery as FLUSHALL, which `make test` runs
async def test_redis_restarted_without_persistence(
    own_broker: Broker, own_store: Store, own_redis: RedisServer, keyspace: Keyspace, tmp_path: Path,
) -> None:
    store, database_url = own_store, store_dsn(own_store)
    async def restart() -> None:
        own_redis.stop()
        await asyncio.sleep(1.0)
        own_redis.start()

    await lose_data("Redis restarted empty (1 s down)", restart, own_broker, store, database_url, own_redis,
                    keyspace, tmp_path)


async def test_a_retry_waiting_in_redis_survives_flushall(
    own_broker: Broker, own_store: Store, own_redis: RedisServer, keyspace: Keyspace, tmp_path: Path,
) -> None:
    store, database_url = own_store, store_dsn(own_store)
    job, job_spec = await armed(own_broker, store, SYSTEM_CLOCK.now(), schedule="0 0 1 1 *", target="fail",
                                params={"retry_delay": 3}, retry={"attempts": 2})
    fleet = fleet_for(database_url, own_redis.url, keyspace, tmp_path / "fleet")
    try:
        fleet.start("w1")  # its ticker promotes due retries
        await run_now(own_broker, job, job_spec, "retry-me", SYSTEM_CLOCK.now())

        async def waiting_for_retry() -> bool:
            return any(r["next_retry_at"] is not None for r in await runs_of(store, job))

        await wait_for(waiting_for_retry, 30, "the first attempt to fail and park its retry")
        await own_broker.redis.flushall()

        async def retried() -> bool:
            return any(r["attempt"] == 2 and r["status"] != "running" for r in await runs_of(store, job))

        await wait_for(retried, 30, "the retry to run after Redis lost it")
    finally:
        fleet.stop_all()
    assert sorted(r["attempt"] for r in await runs_of(store, job)) == [1, 2]
