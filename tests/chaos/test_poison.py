"""Poison and malformed messages in the queue go to the dead letters with why, and never loop."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, cast

import pytest
from redis.asyncio import Redis

from sundial.core.broker import MAX_DELIVERIES, Broker
from sundial.core.clock import SYSTEM_CLOCK
from sundial.core.jobs import run_now
from sundial.core.keys import CONSUMER_GROUP, Keyspace
from sundial.core.store import Store
from tests.chaos.conftest import fleet_for
from tests.chaos.harness import wait_for
from tests.integration.engine import armed, runs_of

pytestmark = [pytest.mark.services, pytest.mark.chaos]

GARBAGE: dict[str, dict[bytes, bytes]] = {
    "missing fields": {b"junk": b"1"},
    "spec not JSON": {b"run": b"r1", b"spec": b"{not json", b"trigger": b"scheduled", b"attempt": b"1",
                      b"logical": b"0", b"enq": b"0"},
    "deeply nested spec": {b"run": b"r2", b"spec": b"[" * 100_000, b"trigger": b"scheduled", b"attempt": b"1",
                           b"logical": b"0", b"enq": b"0"},
    "bytes that are not UTF-8": {b"run": b"\xff\xfe\xfd", b"spec": b"\xc3\x28", b"attempt": b"\x80"},
    "attempt not a number": {b"run": b"r3", b"spec": b"{}", b"trigger": b"scheduled", b"attempt": b"NaN",
                             b"logical": b"0", b"enq": b"0"},
    "2 MB spec": {b"run": b"r4", b"spec": b"x" * 2_000_000, b"trigger": b"x", b"attempt": b"1"},
}


async def test_malformed_messages_are_dead_lettered_and_the_queue_keeps_flowing(
    broker: Broker, store: Store, database_url: str, redis_url: str, keyspace: Keyspace, tmp_path: Path
) -> None:
    shard = keyspace.all_shards()[0]
    raw = Redis.from_url(redis_url)  # bytes in, bytes out: a foreign writer
    try:
        for fields in GARBAGE.values():
            await raw.xadd(shard.queue, fields)  # type: ignore[arg-type]
    finally:
        await raw.aclose()
    job, job_spec = await armed(broker, store, SYSTEM_CLOCK.now(), schedule="0 0 1 1 *")
    await run_now(broker, job, job_spec, "after-the-garbage", SYSTEM_CLOCK.now())
    fleet = fleet_for(database_url, redis_url, keyspace, tmp_path / "fleet")
    try:
        fleet.start("w1", SUNDIAL_TICKER_ENABLED="false")

        async def ran() -> bool:
            return any(run["status"] == "success" for run in await runs_of(store, job))

        await wait_for(ran, 30, "the good run behind the garbage")
        await asyncio.sleep(1.0)
        assert fleet.live() == ["w1"]
    finally:
        fleet.stop_all()
    dead = await broker.dead_letters(shard)
    reasons = [letter["dead_reason"] for _, letter in dead]
    assert len(dead) == len(GARBAGE), reasons
    assert all(reason.startswith("malformed run message: ") for reason in reasons)
    assert any("RecursionError" in reason for reason in reasons)
    assert await broker.redis.xlen(shard.queue) == 0, "nothing left to loop on"


async def test_a_run_delivered_too_often_is_dead_lettered_not_retried_forever(broker: Broker, store: Store) -> None:
    shard = broker.keys.all_shards()[0]
    job, job_spec = await armed(broker, store, SYSTEM_CLOCK.now(), schedule="0 0 1 1 *")
    await run_now(broker, job, job_spec, "poison", SYSTEM_CLOCK.now())
    # Five workers took it and died (each XCLAIM counts a delivery), the last one a while ago.
    await broker.redis.xreadgroup(CONSUMER_GROUP, "ghost", {shard.queue: ">"}, count=1)
    [(message_id, _)] = cast(list[tuple[str, dict[str, str]]], await broker.redis.xrange(shard.queue))
    for _ in range(MAX_DELIVERIES - 1):
        await broker.redis.xclaim(shard.queue, CONSUMER_GROUP, "ghost", 0, [message_id])
    await asyncio.sleep(0.05)
    assert await broker.reclaim(shard, "rescuer", min_idle_ms=10, count=10) == []
    [(_, letter)] = await broker.dead_letters(shard)
    assert letter["message_id"] == message_id
    assert letter["dead_reason"].startswith(f"delivered {MAX_DELIVERIES} times and never finished")
    pending: Any = await broker.redis.xpending(shard.queue, CONSUMER_GROUP)
    assert pending["pending"] == 0
    assert await broker.reclaim(shard, "rescuer", min_idle_ms=0, count=10) == []
