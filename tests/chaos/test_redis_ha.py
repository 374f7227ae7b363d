"""Redis Sentinel: the primary dies mid-firing; workers follow the promoted replica by themselves."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from redis.exceptions import RedisError

from sundial.core.broker import Broker, parse_sentinel_url, redis_from_url
from sundial.core.clock import SYSTEM_CLOCK
from sundial.core.keys import Keyspace
from sundial.core.store import Store
from sundial.devstack.services import RedisSentinelSet
from tests.chaos.conftest import fleet_for, running
from tests.chaos.harness import account, per_second_jobs, wait_for

pytestmark = [pytest.mark.services, pytest.mark.chaos]

JOBS = 20


@pytest.fixture
def sentinel_set(tmp_path: Path) -> Iterator[RedisSentinelSet]:
    with running(RedisSentinelSet(tmp_path / "sentinel")) as started:
        yield started


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis+sentinel://a:1,b:2,[::1]:3/svc", ([("a", 1), ("b", 2), ("::1", 3)], "svc", 0)),
        ("redis+sentinel://:pw@a/svc/2", ([("a", 26379)], "svc", 2)),
    ],
)
def test_sentinel_urls(url: str, expected: tuple[list[tuple[str, int]], str, int]) -> None:
    assert parse_sentinel_url(url) == expected


def test_a_sentinel_url_without_a_service_is_refused() -> None:
    with pytest.raises(ValueError, match="names no service"):
        parse_sentinel_url("redis+sentinel://a:1")


@pytest.mark.chaos_long  # 35 s of a 3-server, 3-sentinel set: `make chaos` runs it
async def test_primary_failover_mid_firing(
    sentinel_set: RedisSentinelSet, store: Store, database_url: str, keyspace: Keyspace, tmp_path: Path
) -> None:
    broker = Broker(redis_from_url(sentinel_set.url), keyspace)
    fleet = fleet_for(database_url, sentinel_set.url, keyspace, tmp_path / "fleet")
    try:
        await broker.ensure_groups()
        jobs = await per_second_jobs(broker, store, JOBS)
        await fleet.start_firing(["w1", "w2"], JOBS)
        await asyncio.sleep(2.0)
        assert sentinel_set.primary.process is not None
        failed_at = SYSTEM_CLOCK.now()
        sentinel_set.primary.process.kill()  # SIGKILL: no chance to hand over

        async def promoted() -> bool:
            try:
                info = await broker.redis.info("replication")
            except (ConnectionError, OSError, RedisError):
                return False  # still the dead primary's address, until the sentinels agree
            return bool(info.get("role") == "master")

        await wait_for(promoted, 30, "a sentinel to promote the replica", interval=0.5)
        await asyncio.sleep(10.0)
        end = SYSTEM_CLOCK.now() - timedelta(seconds=1)
        await asyncio.sleep(3.0)
        assert fleet.live() == ["w1", "w2"]
    finally:
        fleet.stop_all()
        await broker.close()
    figures, examples = await account(store, fleet.ledger, jobs, failed_at - timedelta(seconds=2), end,
                                      fault="Redis Sentinel: primary SIGKILLed", fault_at=failed_at)
    # Asynchronous replication may lose the last writes before the failover: a slot fired or
    # delivered then is fired or delivered again (a duplicate), never lost (docs/reliability.md).
    assert (figures.lost, figures.not_terminal) == (0, 0), (examples, fleet.logs())
    assert figures.recovery_s <= 15.0
