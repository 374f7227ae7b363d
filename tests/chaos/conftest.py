"""Fixtures for the chaos tests: a worker fleet, and a Redis of their own where they wipe or restart it."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol, TypeVar

import psycopg
import pytest
from psycopg import conninfo, sql

from sundial.core.broker import Broker
from sundial.core.keys import Keyspace
from sundial.core.migrate import migrate
from sundial.core.store import Store
from sundial.devstack.controlplane import ControlPlane
from sundial.devstack.services import RedisServer, ServiceError
from tests.chaos.harness import Fleet
from tests.conftest import unavailable
from tests.k8s.conftest import controlplane, sundial_crds  # noqa: F401  (fixtures the kill soak needs)


class Service(Protocol):
    def start(self) -> object: ...
    def stop(self) -> None: ...


ServiceT = TypeVar("ServiceT", bound=Service)


@contextmanager
def running(service: ServiceT) -> Iterator[ServiceT]:
    """A service started for one test (failing in CI, skipping elsewhere, if it cannot start)."""
    try:
        service.start()
    except (ServiceError, OSError) as exc:
        unavailable(str(exc))
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis only this test uses: FLUSHALL or a restart here hurts no other test."""
    with running(RedisServer(tmp_path / "redis")) as server:
        yield server


@pytest.fixture
async def own_broker(own_redis: RedisServer, keyspace: Keyspace) -> AsyncIterator[Broker]:
    opened = Broker.from_url(own_redis.url, keyspace)
    await opened.ensure_groups()
    yield opened
    await opened.close()


@pytest.fixture
async def own_store(database_url: str) -> AsyncIterator[Store]:
    """A database only this test uses, on the session's server.

    A worker that finds Redis wiped re-arms every live job its database holds: on the shared test
    database that would be every other test's jobs too.
    """
    name = f"chaos_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    dsn = conninfo.make_conninfo(database_url, dbname=name)
    migrate(dsn)
    opened = await Store.open(dsn, max_size=4)
    yield opened
    await opened.close()
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def store_dsn(store: Store) -> str:
    return str(store.pool.conninfo)


def fleet_for(database_url: str, redis_url: str, keyspace: Keyspace, root: Path) -> Fleet:
    root.mkdir(parents=True, exist_ok=True)
    return Fleet(database_url, redis_url, keyspace, root)


@pytest.fixture
def soak_plane(sundial_crds: ControlPlane) -> ControlPlane:  # noqa: F811
    """The local kube-apiserver with Sundial's CRDs, for the kill soak's operator."""
    return sundial_crds
