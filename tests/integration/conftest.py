"""Fixtures the engine tests share: a manual clock at T0 and a worker's settings."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from sundial.core.clock import ManualClock
from sundial.core.config import Settings
from sundial.core.keys import Keyspace
from tests.integration.engine import settings

T0 = datetime(2026, 3, 1, 12, 0, 0, 500_000, tzinfo=UTC)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def config(database_url: str, redis_url: str, keyspace: Keyspace) -> Settings:
    return settings(database_url, redis_url, keyspace, concurrency=5)
