"""Dashboard settings come from the environment; a bad one is named in one line."""

from __future__ import annotations

import pytest

from sundial.core.config import AuthMode, ConfigError, load_dashboard_settings


@pytest.fixture(autouse=True)
def backends(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://db/sundial")
    monkeypatch.setenv("REDIS_URL", "redis://cache:6379/0")


def test_defaults() -> None:
    settings = load_dashboard_settings()
    assert (settings.auth, settings.read_only, settings.port, settings.namespaces) == (AuthMode.TOKEN, False, 8080, [])
    assert settings.keyspace.prefix == "sundial"


def test_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUNDIAL_DASHBOARD_AUTH", "proxy")
    monkeypatch.setenv("SUNDIAL_DASHBOARD_NAMESPACES", "team-a, team-b,")
    monkeypatch.setenv("SUNDIAL_DASHBOARD_READ_ONLY", "true")
    monkeypatch.setenv("SUNDIAL_REDIS_PREFIX", "prod")
    settings = load_dashboard_settings()
    assert (settings.auth, settings.namespaces, settings.read_only) == (AuthMode.PROXY, ["team-a", "team-b"], True)
    assert settings.keyspace.prefix == "prod"


def test_bad_values_name_their_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUNDIAL_DASHBOARD_AUTH", "oauth")
    monkeypatch.delenv("REDIS_URL")
    with pytest.raises(ConfigError) as caught:
        load_dashboard_settings()
    assert "SUNDIAL_DASHBOARD_AUTH" in str(caught.value)
    assert "REDIS_URL is not set" in str(caught.value)
