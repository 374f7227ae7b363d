"""Redis that stops answering (SIGSTOP: a hung primary, or a partition): every call gives up
within its socket timeout instead of holding the worker's loop.

The bound is Sundial's own (`REDIS_SOCKET_TIMEOUT_SECONDS`, and a few connect retries), not
redis-py's defaults: those waited forever before redis-py 6, and in 8.1 retry a failed
connection 10 times, about a minute against a host that drops packets.
"""

from __future__ import annotations

import signal
import time

import pytest
from redis.exceptions import TimeoutError as RedisTimeout

from sundial.core.broker import REDIS_SOCKET_TIMEOUT_SECONDS, Broker
from sundial.devstack.services import RedisServer
from tests.chaos.harness import Figures, report, signal_tree

pytestmark = [pytest.mark.services, pytest.mark.chaos]


async def test_a_read_from_a_hung_redis_fails_after_its_timeout_and_works_once_it_answers(
    own_broker: Broker, own_redis: RedisServer
) -> None:
    assert own_redis.process is not None
    shard = own_broker.keys.all_shards()[0]
    await own_broker.read(shard, "c1", 10, block_ms=500)
    signal_tree(own_redis.process.pid, signal.SIGSTOP)
    started = time.monotonic()
    try:
        with pytest.raises(RedisTimeout):
            await own_broker.read(shard, "c1", 10, block_ms=500)
        failed_after = time.monotonic() - started
    finally:
        signal_tree(own_redis.process.pid, signal.SIGCONT)
    resumed = time.monotonic()
    assert await own_broker.read(shard, "c1", 10, block_ms=100) == []
    recovered_after = time.monotonic() - resumed
    report(Figures("Redis hung (SIGSTOP), a consumer's read", 0, 0, 0, 0, 0.0, recovered_after,
                   f"read_failed_after_s={failed_after:.2f} (timeout {REDIS_SOCKET_TIMEOUT_SECONDS:g} s)"))
    # Generous over the 5 s timeout (a loaded machine is slow to run the loop), far under a minute.
    assert failed_after < 3 * REDIS_SOCKET_TIMEOUT_SECONDS
