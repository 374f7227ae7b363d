"""The dashboard's guard: security headers on every answer, body limits, failed-login throttling.

Requests go through the real app over ASGI; none of these paths reaches a backend, so none is started.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import httpx2 as httpx
import pytest

from sundial.core.clock import ManualClock
from sundial.core.config import DashboardSettings
from sundial.dashboard import main as dashboard_main
from sundial.dashboard.app import create_app
from sundial.dashboard.errors import ApiProblem
from sundial.dashboard.guard import SECURITY_HEADERS, LoginThrottle

ATTACKER = ("203.0.113.7", 40000)
NEIGHBOUR = ("203.0.113.8", 40000)


def settings(**overrides: Any) -> DashboardSettings:
    values: dict[str, Any] = {"database_url": "postgresql://x", "redis_url": "redis://x", "login_failures": 3,
                              "login_window_seconds": 60, "max_body_bytes": 4096}
    return DashboardSettings(**(values | overrides))


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime(2026, 1, 1, tzinfo=UTC))


def client_for(app: Any, address: tuple[str, int] = ATTACKER) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=address), base_url="http://dash")


async def reject_token(caller: Any) -> None:
    raise ApiProblem(401, "Unauthorized", "Kubernetes rejected the token")


@pytest.fixture
def app(clock: ManualClock) -> Any:
    application = create_app(settings(), clock=clock)
    # No lifespan, no backends: every token is one Kubernetes would reject.
    application.state.dashboard = SimpleNamespace(identity=reject_token)
    return application


def assert_guarded(response: httpx.Response) -> None:
    for name, value in SECURITY_HEADERS.items():
        assert response.headers[name] == value, name


# ---- headers -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path"), [("GET", "/agendamentos"), ("GET", "/healthz"), ("GET", "/api/me"),
                                              ("GET", "/nowhere"), ("GET", "/static/app.js")])
async def test_every_answer_carries_the_security_headers(app: Any, method: str, path: str) -> None:
    async with client_for(app) as client:
        assert_guarded(await client.request(method, path))


async def test_the_read_only_refusal_carries_them_too(clock: ManualClock) -> None:
    async with client_for(create_app(settings(read_only=True), clock=clock)) as client:
        response = await client.post("/api/jobs", json={})
    assert response.status_code == 403
    assert_guarded(response)


# ---- body size ---------------------------------------------------------------------------------


async def test_a_declared_oversized_body_is_413_in_the_error_shape(app: Any) -> None:
    async with client_for(app) as client:
        response = await client.post("/api/schedule/preview", content=b"x" * 5000,
                                     headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert response.json()["error"] == {"status": 413, "reason": "TooLarge",
                                        "message": "request body larger than 4096 bytes", "fields": []}
    assert_guarded(response)


async def test_a_chunked_oversized_body_is_413_once_it_passes_the_limit(app: Any) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b"x" * 1000

    async with client_for(app) as client:
        response = await client.post("/api/schedule/preview", content=chunks(),
                                     headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert response.json()["error"]["reason"] == "TooLarge"


async def test_a_body_within_the_limit_goes_through(app: Any) -> None:
    async with client_for(app) as client:
        response = await client.post("/api/schedule/preview", json={"schedule": "nonsense"})
    assert response.status_code != 413


# ---- failed logins -----------------------------------------------------------------------------


async def test_repeated_failed_logins_are_throttled_per_address(app: Any, clock: ManualClock) -> None:
    async with client_for(app) as attacker, client_for(app, NEIGHBOUR) as neighbour:
        for token in ("guess-1", "guess-2", "guess-3"):
            assert (await attacker.get("/api/me", headers={"Authorization": f"Bearer {token}"})).status_code == 401
        clock.advance(timedelta(seconds=20))
        throttled = await attacker.get("/api/me", headers={"Authorization": "Bearer maybe-right"})
        assert throttled.status_code == 429
        assert throttled.headers["Retry-After"] == "40"
        assert throttled.json()["error"]["reason"] == "TooManyRequests"
        assert_guarded(throttled)
        assert (await neighbour.get("/api/me")).status_code == 401  # another address is not affected
        clock.advance(timedelta(seconds=40))
        assert (await attacker.get("/api/me")).status_code == 401  # the window has passed


@pytest.mark.parametrize(
    ("failures", "asked_at", "expected"),
    [
        ([], 0.0, None),
        ([0.0, 1.0], 2.0, None),  # under the limit
        ([0.0, 1.0, 2.0], 2.0, 58.0),  # at the limit: until the oldest failure leaves the window
        ([0.0, 1.0, 2.0], 59.5, 0.5),
        ([0.0, 1.0, 2.0], 60.0, None),  # the oldest has left: two remain, under the limit
        ([0.0, 1.0, 2.0, 30.0], 60.5, 0.5),  # only the latest `limit` failures are kept: 1.0 is oldest
        ([0.0, 1.0, 2.0], 500.0, None),
    ],
)
def test_login_throttle(failures: list[float], asked_at: float, expected: float | None) -> None:
    throttle = LoginThrottle(limit=3, window=60)
    for when in failures:
        throttle.failed("a", when)
    assert throttle.retry_after("a", asked_at) == expected
    assert throttle.retry_after("b", asked_at) is None


def test_login_throttle_remembers_a_bounded_number_of_addresses() -> None:
    throttle = LoginThrottle(limit=1, window=60, max_clients=2)
    for client in ("a", "b", "c"):
        throttle.failed(client, 0.0)
    assert throttle.retry_after("a", 1.0) is None  # forgotten, oldest first
    assert throttle.retry_after("c", 1.0) == 59.0


# ---- logs --------------------------------------------------------------------------------------


async def test_no_token_reaches_a_log_line(app: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with client_for(app) as client:
        await client.get("/api/me?token=query-secret", headers={"Authorization": "Bearer header-secret"})
        await client.get("/api/me?access_token=query-secret")
    server_side = [record.getMessage() for record in caplog.records if not record.name.startswith("httpx")]
    assert not [line for line in server_side if "secret" in line]


def test_the_server_keeps_no_access_log(monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[Any] = []
    monkeypatch.setenv("DATABASE_URL", "postgresql://x")
    monkeypatch.setenv("REDIS_URL", "redis://x")
    monkeypatch.setattr(dashboard_main._Server, "run", lambda self, *a, **k: started.append(self.config))
    dashboard_main.main()
    assert started[0].access_log is False
    assert started[0].forwarded_allow_ips == "127.0.0.1"
