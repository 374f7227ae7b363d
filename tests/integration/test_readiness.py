"""A worker stays ready while PostgreSQL is hung: firing and running go on (records wait in a
bounded buffer), so readiness must not pause rollouts; it reports PostgreSQL as degraded."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from sundial.core.keys import Keyspace
from sundial.devstack.services import Postgres, free_port
from sundial.worker.readiness import Probe, readiness
from tests.chaos.harness import signal_tree
from tests.integration.test_postgres_stall import private_postgres  # noqa: F401  (a fixture)

WORKER = str(Path(sys.executable).with_name("sundial-worker"))


def _probe(**overrides: Any) -> Probe:
    fields: dict[str, Any] = {"stopping": False, "redis_error": None, "postgres_error": None, "unrecorded": 0,
                              "max_unrecorded": 100, "in_flight": 0}
    return Probe(**{**fields, **overrides})


@pytest.mark.parametrize(("overrides", "status", "reason"), [
    ({}, 200, None),
    ({"postgres_error": "timed out"}, 200, None),
    ({"redis_error": "Connection refused"}, 503, "redis: Connection refused"),
    ({"unrecorded": 100, "postgres_error": "timed out"}, 503, "record buffer full"),
    ({"stopping": True}, 503, "shutting down"),
])
def test_readiness_follows_redis_and_the_record_buffer(
    overrides: dict[str, Any], status: int, reason: str | None,
) -> None:
    code, body = readiness(_probe(**overrides))
    assert (code, body["ready"]) == (status, status == 200)
    assert reason is None or str(body["reason"]).startswith(reason)
    if overrides.get("postgres_error"):
        assert body["postgresql"] == f"unreachable: {overrides['postgres_error']}"
        assert body["degraded"]
    else:
        assert (body["postgresql"], "degraded" in body) == ("ok", False)


def _readyz(port: int) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as response:
            return int(response.status), json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())
    except OSError:
        return 0, {}


def _wait_for(port: int, want: Any, seconds: float = 30.0) -> tuple[int, dict[str, Any]]:
    deadline = time.monotonic() + seconds
    answer = _readyz(port)
    while not want(*answer) and time.monotonic() < deadline:
        time.sleep(0.2)
        answer = _readyz(port)
    return answer


@pytest.mark.services
def test_a_worker_stays_ready_while_postgres_is_hung(
    private_postgres: Postgres, redis_url: str, keyspace: Keyspace, tmp_path: Path,  # noqa: F811
) -> None:
    port = free_port()
    env = {"DATABASE_URL": private_postgres.dsn, "REDIS_URL": redis_url, "SUNDIAL_REDIS_PREFIX": keyspace.prefix,
           "SUNDIAL_METRICS_PORT": str(port), "SUNDIAL_WORKER_ID": "ready-w1", "PATH": str(Path(WORKER).parent)}
    with (tmp_path / "worker.log").open("ab") as log:
        process = subprocess.Popen([WORKER], env=env, stdout=log, stderr=subprocess.STDOUT)
    assert private_postgres.process is not None
    try:
        status, body = _wait_for(port, lambda status, _: status == 200)
        assert (status, body["postgresql"]) == (200, "ok"), (status, body)
        signal_tree(private_postgres.process.pid, signal.SIGSTOP)
        try:
            status, body = _wait_for(port, lambda _, body: body.get("postgresql", "ok") != "ok")
            assert (status, body["ready"]) == (200, True), body
            assert body["postgresql"].startswith("unreachable"), body
            assert body["degraded"], body
        finally:
            signal_tree(private_postgres.process.pid, signal.SIGCONT)
        status, body = _wait_for(port, lambda _, body: body.get("postgresql") == "ok")
        assert (status, body["postgresql"]) == (200, "ok"), body
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
