"""Fixtures for the chaos tests: a worker fleet, and a Redis of their own where they wipe or restart it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from sundial.core.broker import Broker
from sundial.core.keys import Keyspace
from sundial.devstack.services import RedisServer, ServiceError
from tests.chaos.harness import Fleet
from tests.conftest import unavailable


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis only this test uses: FLUSHALL or a restart here hurts no other test."""
    try:
        server = RedisServer(tmp_path / "redis").start()
    except (ServiceError, OSError) as exc:
        unavailable(str(exc))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def own_broker(own_redis: RedisServer, keyspace: Keyspace) -> AsyncIterator[Broker]:
    opened = Broker.from_url(own_redis.url, keyspace)
    await opened.ensure_groups()
    yield opened
    await opened.close()


def fleet_for(database_url: str, redis_url: str, keyspace: Keyspace, root: Path) -> Fleet:
    root.mkdir(parents=True, exist_ok=True)
    return Fleet(database_url, redis_url, keyspace, root)
