"""Redis Cluster: shards spread over the primaries; firing exactly once, and recovering from a wipe."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from bench.common import arm_bulk
from redis.asyncio.cluster import RedisCluster

from sundial.core.broker import Broker, redis_from_url
from sundial.core.clock import SYSTEM_CLOCK
from sundial.core.keys import Keyspace
from sundial.core.store import Store
from sundial.devstack.services import RedisClusterSet
from tests.chaos.conftest import fleet_for, running, store_dsn
from tests.chaos.harness import account, per_second_jobs

pytestmark = [pytest.mark.services, pytest.mark.chaos]

JOBS = 24
SHARDS = 8


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[RedisClusterSet]:
    with running(RedisClusterSet(tmp_path / "cluster")) as started:
        yield started


@pytest.mark.chaos_long  # 3 cluster nodes and 2 workers for ~25 s: `make chaos` runs it
async def test_a_three_primary_cluster_fires_every_slot_once_and_survives_a_wipe(
    cluster: RedisClusterSet, own_store: Store, keyspace: Keyspace, tmp_path: Path
) -> None:
    store, database_url = own_store, store_dsn(own_store)
    sharded = Keyspace(keyspace.prefix, SHARDS)
    client = redis_from_url(cluster.url)
    assert isinstance(client, RedisCluster)
    broker = Broker(client, sharded)
    await client.initialize()  # learns the slot map from the nodes
    owners = {client.get_node_from_key(shard.due).name for shard in sharded.all_shards()}
    assert len(owners) >= 2, f"{SHARDS} shards all hashed to one primary: {owners}"
    fleet = fleet_for(database_url, cluster.url, sharded, tmp_path / "fleet")
    try:
        await broker.ensure_groups()
        jobs = await per_second_jobs(broker, store, JOBS)
        await fleet.start_firing(["w1", "w2"], JOBS)
        await asyncio.sleep(3.0)
        wiped_at = SYSTEM_CLOCK.now()
        await client.flushall(target_nodes=RedisCluster.PRIMARIES)
        await asyncio.sleep(8.0)
        end = SYSTEM_CLOCK.now() - timedelta(seconds=1)
        await asyncio.sleep(2.0)
        assert fleet.live() == ["w1", "w2"]
    finally:
        fleet.stop_all()
        await broker.close()
    figures, examples = await account(
        store, fleet.ledger, jobs, wiped_at - timedelta(seconds=3), end,
        fault="Redis Cluster (3 primaries, 8 shards): FLUSHALL on every primary", fault_at=wiped_at,
        notes=f"shards_on_primaries={len(owners)}")
    assert (figures.lost, figures.duplicates, figures.not_terminal) == (0, 0, 0), (examples, fleet.logs())


# Only in `make chaos`: on this shared machine about 1 run in 4 still fails inside redis-py's
# cluster client (AttributeError on a connection whose writer another task closed, after the
# client reset its nodes on a slow connect; redis-py #3546/#4217). Without the groups of
# CLUSTER_CONCURRENCY it failed 2 runs of 2.
@pytest.mark.chaos_long
@pytest.mark.timeout(120)
async def test_a_bulk_arm_of_thousands_of_entries_on_a_cluster(cluster: RedisClusterSet, own_store: Store) -> None:
    """One script call per entry, 2,000 at once: far more than the client's 100 connections
    per node, which once failed the operator's bulk arm (and a ticker's batch of 500) with
    MaxConnectionsError."""
    client = redis_from_url(cluster.url)
    assert isinstance(client, RedisCluster)
    broker = Broker(client, Keyspace(f"bulk{uuid.uuid4().hex[:6]}", SHARDS))
    try:
        ids = await arm_bulk(broker, own_store, ["0 0 1 1 *"] * 2000, SYSTEM_CLOCK.now())
        entries = await broker.entries(ids)
        assert all(entry is not None for entry in entries.values())
    finally:
        await broker.close()
