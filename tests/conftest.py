"""Shared harness: one real PostgreSQL and one real Redis per test session.

In CI (`CI` set) a missing service binary fails the run; locally the service tests skip
with the reason, so unit tests still run on a laptop without the Debian packages.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import NoReturn

import pytest
import redis

from sundial.core.broker import Broker
from sundial.core.keys import Keyspace
from sundial.core.migrate import migrate
from sundial.core.store import Store
from sundial.devstack.services import Postgres, ServiceError, Services

IN_CI = bool(os.environ.get("CI"))


def unavailable(reason: str, what: str = "service") -> NoReturn:
    """Fail in CI, skip elsewhere: nothing may silently skip where it counts."""
    if IN_CI:
        pytest.fail(f"required test {what} unavailable in CI: {reason}", pytrace=False)
    pytest.skip(reason)


@contextlib.contextmanager
def private_postgres_server(root: Path, *, migrated: bool = True, durable: bool = False,
                            extra_settings: tuple[str, ...] = ()) -> Iterator[Postgres]:
    """A PostgreSQL of one test's own, so stopping it (SIGSTOP) stalls no other test; migrated
    unless `migrated` is false (a cluster a dump is restored into); `durable` and
    `extra_settings` as `Postgres` takes them."""
    try:
        server = Postgres(root, durable=durable, extra_settings=extra_settings).start()
    except (ServiceError, OSError) as exc:
        unavailable(str(exc))
    try:
        if migrated:
            migrate(server.dsn)
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def services() -> Iterator[Services]:
    # Not under pytest's basetemp: a concurrent pytest session prunes old basetemps it thinks are its own.
    try:
        running = Services().start()
    except (ServiceError, OSError) as exc:
        unavailable(str(exc))
        raise AssertionError("unreachable") from exc
    try:
        migrate(running.postgres.dsn)
        yield running
    finally:
        running.remove()


@pytest.fixture(scope="session")
def database_url(services: Services) -> str:
    return services.postgres.dsn


@pytest.fixture(scope="session")
def redis_url(services: Services) -> str:
    return services.redis.url


@pytest.fixture
def keyspace() -> Keyspace:
    """A fresh key prefix per test: tests share one Redis without seeing each other."""
    return Keyspace(prefix=f"t{uuid.uuid4().hex[:10]}")


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    opened = await Store.open(database_url, max_size=8)
    yield opened
    await opened.close()


@pytest.fixture
async def broker(redis_url: str, keyspace: Keyspace) -> AsyncIterator[Broker]:
    opened = Broker.from_url(redis_url, keyspace)
    await opened.ensure_groups()
    # The database is shared: a worker finding this private prefix without its marker would
    # rebuild every other test's jobs into it (chaos tests that wipe Redis use a database of their own).
    await opened.mark_intact(0)
    yield opened
    await opened.close()


def mark_prefix_intact(redis_url: str, prefix: str) -> None:
    """`broker`'s marking, for a prefix that processes use on the shared database."""
    with redis.Redis.from_url(redis_url) as client:
        client.set(Keyspace(prefix=prefix).intact, 0)
