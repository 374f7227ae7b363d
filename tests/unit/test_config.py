from __future__ import annotations

import pytest

from sundial.core.config import ConfigError, load_settings


def test_missing_urls_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DATABASE_URL", "REDIS_URL", "SUNDIAL_DATABASE_URL", "SUNDIAL_REDIS_URL"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert "DATABASE_URL is not set" in str(caught.value)
    assert "REDIS_URL is not set" in str(caught.value)


def test_reads_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://x@localhost/db")
    monkeypatch.setenv("REDIS_URL", "redis://localhost:6379/0")
    monkeypatch.setenv("SUNDIAL_CONCURRENCY", "9")
    settings = load_settings()
    assert settings.concurrency == 9
    assert settings.keyspace.prefix == "sundial"


def test_bad_numbers_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://x@localhost/db")
    monkeypatch.setenv("REDIS_URL", "redis://localhost:6379/0")
    monkeypatch.setenv("SUNDIAL_CONCURRENCY", "0")
    with pytest.raises(ConfigError, match="SUNDIAL_CONCURRENCY"):
        load_settings()
