"""The operator's own outages, with real processes.

- Jobs deleted while no operator ran: ScheduledJobs carry no finalizer, so their objects go at
  once and nothing holds them for the operator. Once it is back, its start-up sweep disarms
  them before kopf watches: nothing fires for them after that, and their rows and entries go.
- SIGTERM ends the operator within seconds even while PostgreSQL hangs (SIGSTOP: a hung
  primary, a partition). It used to take over a minute.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from sundial.core.broker import Broker
from sundial.core.keys import Keyspace
from sundial.core.store import Store
from sundial.devstack.controlplane import ControlPlane
from sundial.devstack.services import Postgres
from tests.conftest import private_postgres_server
from tests.integration.test_postgres_stall import _server_processes, _signal_all
from tests.k8s.conftest import (
    SundialProcess,
    create_namespace,
    eventually,
    operator_process,
    running_operator,
    wait_until,
)

pytestmark = pytest.mark.k8s

EVERY_SECOND = "* * * * * *"
# A slot the ticker planned just before the entry went may still fire.
FIRE_SLACK = timedelta(seconds=1)

# Shutdown of a healthy operator takes a few seconds here (kopf's own goodbyes); a hung
# PostgreSQL may add a couple more, not a minute.
EXIT_WITHIN_SECONDS = 15.0


@pytest.fixture
def stoppable_postgres(tmp_path: Path) -> Iterator[Postgres]:
    with private_postgres_server(tmp_path / "pg") as server:
        yield server


@pytest.fixture
def keyspace(sundial_env: dict[str, str]) -> Keyspace:
    """The processes' own key prefix, so `broker` sees what they wrote."""
    return Keyspace(prefix=sundial_env["SUNDIAL_REDIS_PREFIX"])


def manifest(namespace: str, name: str, annotations: dict[str, str] | None = None) -> str:
    return json.dumps({"apiVersion": "sundial.dev/v1alpha1", "kind": "ScheduledJob",
                       "metadata": {"name": name, "namespace": namespace, "annotations": annotations or {}},
                       "spec": {"target": "noop", "schedule": EVERY_SECOND, "timeZone": "UTC"}})


def listed(namespace: str, names: list[str]) -> str:
    """One `kubectl apply` for many jobs."""
    items = [json.loads(manifest(namespace, name)) for name in names]
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": items})


async def last_slot(store: Store, uid: str) -> datetime | None:
    slots = [run["scheduled_for"] for run in await store.runs(uid, limit=10_000) if run["scheduled_for"]]
    return max(slots, default=None)


@pytest.mark.timeout(600)
async def test_jobs_deleted_while_no_operator_ran_never_fire_once_it_is_back(
    sundial_env: dict[str, str], sundial_crds: ControlPlane, sundial_worker: SundialProcess, store: Store,
    broker: Broker, tmp_path: Path,
) -> None:
    namespace = create_namespace(sundial_crds, "down")
    uids: dict[str, str] = {}
    with running_operator(sundial_env, tmp_path / "operator.log", "--standalone", "--namespace", namespace):
        for name, annotations in (("gone", None), ("kept", {"sundial.dev/history-on-delete": "Retain"}),
                                  ("stays", None)):
            sundial_crds.kubectl("apply", "-f", "-", input=manifest(namespace, name, annotations))
            uids[name] = sundial_crds.kubectl("get", "sdj", name, "-n", namespace, "-o",
                                              "jsonpath={.metadata.uid}").stdout.strip()
        for name in ("gone", "kept"):
            uid = uids[name]

            async def fired(uid: str = uid) -> bool:
                return await last_slot(store, uid) is not None

            await eventually(f"{name} fired", fired)
    # The operator is down; the workers fire on.
    sundial_crds.kubectl("delete", "sdj", "gone", "kept", "-n", namespace, "--timeout=30s")
    assert not sundial_crds.kubectl("get", "sdj", "-n", namespace, "-o", "name",
                                    "--field-selector=metadata.name!=stays").stdout.strip(), "no finalizer holds them"
    assert await broker.entry(uids["gone"]) is not None, "still armed while no operator runs"

    with running_operator(sundial_env, tmp_path / "operator.log", "--standalone", "--namespace", namespace):
        back = datetime.now(UTC)  # the start-up sweep is done: it runs before kopf's handlers succeed
        for name in ("gone", "kept"):
            assert await broker.entry(uids[name]) is None, f"{name} still armed"
            assert await store.job_by_name(namespace, name) is None, f"{name} still live"
            row = await store.job(uids[name])
            assert row is not None, "retained (no object is left to say otherwise)"
            assert row["enabled"] is False
        assert await broker.entry(uids["stays"]) is not None, "a live job is left alone"
        await asyncio.sleep(3)  # a slot fired late would be recorded by now
        for name in ("gone", "kept"):
            latest = await last_slot(store, uids[name])
            assert latest is not None
            assert latest <= back + FIRE_SLACK, f"{name} fired at {latest}, the operator back at {back}"
        sundial_crds.kubectl("delete", "sdj", "stays", "-n", namespace)


def armed_rows(dsn: str, namespace: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT count(*) FROM scheduled_jobs WHERE namespace = %s", (namespace,)).fetchone()
    return int(row[0]) if row else 0


@pytest.mark.timeout(600)
def test_sigterm_ends_the_operator_within_seconds_while_postgres_hangs(
    sundial_env: dict[str, str], sundial_crds: ControlPlane, stoppable_postgres: Postgres, tmp_path: Path
) -> None:
    namespace = create_namespace(sundial_crds, "hang")
    env = {**sundial_env, "DATABASE_URL": stoppable_postgres.dsn}
    operator = operator_process(env, tmp_path / "operator.log", "--standalone", "--namespace", namespace,
                                "--status-poll-seconds", "0.2").start()
    assert stoppable_postgres.process is not None
    stalled = _server_processes(stoppable_postgres.process.pid)
    try:
        operator.wait_for_log(r"Activity 'configure' succeeded")
        sundial_crds.kubectl("apply", "-f", "-", input=listed(namespace, [f"busy-{i}" for i in range(20)]))
        wait_until("the jobs armed", lambda: armed_rows(stoppable_postgres.dsn, namespace) == 20)
        # More arrive, and PostgreSQL hangs while the operator arms them.
        sundial_crds.kubectl("apply", "-f", "-", input=listed(namespace, [f"more-{i}" for i in range(200)]))
        _signal_all(stalled, signal.SIGSTOP)
        # Changes keep coming: handlers, the churn watch and the status sync all wait on it.
        for i in range(5):
            sundial_crds.kubectl("patch", "sdj", f"busy-{i}", "-n", namespace, "--type=merge",
                                 "-p", '{"spec": {"suspend": true}}')
        time.sleep(3)
        assert operator.popen is not None
        began = time.monotonic()
        os.killpg(operator.popen.pid, signal.SIGTERM)
        wait_until("the operator to exit", lambda: not operator.running, timeout=60)
        took = time.monotonic() - began
        print(f"operator exited {took:.1f} s after SIGTERM with PostgreSQL stopped")
        assert took <= EXIT_WITHIN_SECONDS, f"SIGTERM took {took:.1f} s:\n{operator.log()[-4000:]}"
    finally:
        _signal_all(stalled, signal.SIGCONT)
        operator.stop(timeout=5)
