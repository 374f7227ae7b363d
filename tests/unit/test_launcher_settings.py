"""The launcher's lanes: a run holds one until its Job ends, so the default is thousands."""

from __future__ import annotations

import pytest

from sundial.core.config import load_settings
from sundial.core.pools import LAUNCHER_POOL
from sundial.launcher.main import TRACKED_JOBS, launcher_settings


@pytest.fixture(autouse=True)
def backends(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://sundial@localhost/sundial")
    monkeypatch.setenv("REDIS_URL", "redis://localhost:6379/0")
    monkeypatch.delenv("SUNDIAL_CONCURRENCY", raising=False)


def test_an_unset_concurrency_gives_the_launcher_thousands_of_lanes_not_the_workers_five() -> None:
    settings = launcher_settings(load_settings())
    assert settings.concurrency == TRACKED_JOBS >= 1000
    assert settings.worker_pool == LAUNCHER_POOL


def test_a_set_concurrency_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUNDIAL_CONCURRENCY", "50")
    assert launcher_settings(load_settings()).concurrency == 50
