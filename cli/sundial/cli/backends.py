"""PostgreSQL and Redis as the CLI opens them: small pools, short timeouts, passwords hidden."""

from __future__ import annotations

from typing import Final

from sundial.core.broker import Broker, redis_from_url
from sundial.core.keys import Keyspace
from sundial.core.store import Store

# A person is waiting: an unreachable backend is reported within seconds, not minutes.
CONNECT_TIMEOUT_SECONDS: Final = 5.0


async def open_store(database_url: str) -> Store:
    return await Store.open(database_url, min_size=1, max_size=2, wait_seconds=CONNECT_TIMEOUT_SECONDS)


def open_broker(redis_url: str, prefix: str) -> Broker:
    redis = redis_from_url(
        redis_url, socket_connect_timeout=CONNECT_TIMEOUT_SECONDS, socket_timeout=CONNECT_TIMEOUT_SECONDS * 2,
    )
    # The shard count does not matter to the CLI: it reads only per-deployment keys.
    return Broker(redis, Keyspace(prefix))
