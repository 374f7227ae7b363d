"""Real `sundial-worker` processes: killed mid-run, stopped gracefully."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from sundial.core.broker import Broker
from sundial.core.clock import SYSTEM_CLOCK
from sundial.core.jobs import run_now
from sundial.core.keys import Keyspace
from sundial.core.store import Store
from tests.integration.engine import armed, runs_of

pytestmark = pytest.mark.services

WORKER = str(Path(sys.executable).with_name("sundial-worker"))


@contextmanager
def worker_process(database_url: str, redis_url: str, keyspace: Keyspace, name: str, log: Path,
                   **env: str) -> Iterator[subprocess.Popen[bytes]]:
    environment = {
        **os.environ, "DATABASE_URL": database_url, "REDIS_URL": redis_url, "SUNDIAL_REDIS_PREFIX": keyspace.prefix,
        "SUNDIAL_WORKER_ID": name, "SUNDIAL_METRICS_PORT": "0", **env,
    }
    process = subprocess.Popen([WORKER], env=environment, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(10)


async def wait_for(predicate: Any, seconds: float, what: str) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        result = await predicate()
        if result:
            return result
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out after {seconds}s waiting for {what}")


async def test_a_killed_workers_run_is_reclaimed_and_finished_by_another(
    broker: Broker, store: Store, database_url: str, redis_url: str, keyspace: Keyspace, tmp_path: Path
) -> None:
    job, job_spec = await armed(broker, store, SYSTEM_CLOCK.now(), schedule="0 0 1 1 *", target="sleep",
                                params={"seconds": 2}, retry={"attempts": 1})
    fast_reclaim = {"SUNDIAL_VISIBILITY_TIMEOUT_SECONDS": "2", "SUNDIAL_TICKER_ENABLED": "false"}
    with worker_process(database_url, redis_url, keyspace, "doomed", tmp_path / "a.log", **fast_reclaim) as doomed:
        await run_now(broker, job, job_spec, "kill-test", SYSTEM_CLOCK.now())

        async def running_on_doomed() -> bool:
            return any(r["status"] == "running" and r["worker"] == "doomed" for r in await runs_of(store, job))

        await wait_for(running_on_doomed, 20, "the run to start on the first worker")
        os.kill(doomed.pid, signal.SIGKILL)
        doomed.wait(10)

    with worker_process(database_url, redis_url, keyspace, "rescuer", tmp_path / "b.log", **fast_reclaim):
        async def finished() -> list[dict[str, Any]]:
            return [r for r in await runs_of(store, job) if r["status"] != "running"]

        [run] = await wait_for(finished, 30, "the run to be reclaimed and finished")

        async def counted() -> tuple[int, int] | None:
            row = await store.job(job.job_id)
            assert row is not None
            return (row["run_count"], row["success_count"]) if row["run_count"] else None

        # Counted by the rescuer's next fold (SUNDIAL_JOB_ROW_INTERVAL_SECONDS), once.
        assert await wait_for(counted, 15, "the run to be counted") == (1, 1)
    assert (run["status"], run["worker"], run["deliveries"], run["attempt"]) == ("success", "rescuer", 2, 1)


async def test_sigterm_finishes_in_flight_runs_before_exiting(
    broker: Broker, store: Store, database_url: str, redis_url: str, keyspace: Keyspace, tmp_path: Path
) -> None:
    job, job_spec = await armed(broker, store, SYSTEM_CLOCK.now(), schedule="0 0 1 1 *", target="sleep",
                                params={"seconds": 1})
    with worker_process(database_url, redis_url, keyspace, "graceful", tmp_path / "w.log",
                        SUNDIAL_TICKER_ENABLED="false") as process:
        await run_now(broker, job, job_spec, "sigterm-test", SYSTEM_CLOCK.now())

        async def started() -> bool:
            return bool(await runs_of(store, job))

        await wait_for(started, 20, "the run to start")
        process.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(process.wait, 20) == 0
    [run] = await runs_of(store, job)
    assert run["status"] == "success"
    assert await broker.live_workers(0, 10**15) == {}, "a stopped worker deregisters itself"


async def test_sigterm_hands_back_runs_that_outlast_the_grace_period(
    broker: Broker, store: Store, database_url: str, redis_url: str, keyspace: Keyspace, tmp_path: Path
) -> None:
    job, job_spec = await armed(broker, store, SYSTEM_CLOCK.now(), schedule="0 0 1 1 *", target="sleep",
                                params={"seconds": 3})
    quick = {"SUNDIAL_TICKER_ENABLED": "false", "SUNDIAL_SHUTDOWN_GRACE_SECONDS": "0.5"}
    with worker_process(database_url, redis_url, keyspace, "leaving", tmp_path / "a.log", **quick) as process:
        await run_now(broker, job, job_spec, "handback-test", SYSTEM_CLOCK.now())

        async def started() -> bool:
            return bool(await runs_of(store, job))

        await wait_for(started, 20, "the run to start")
        process.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(process.wait, 20) == 0
    with worker_process(database_url, redis_url, keyspace, "next", tmp_path / "b.log", **quick):
        async def finished() -> list[dict[str, Any]]:
            return [r for r in await runs_of(store, job) if r["status"] == "success"]

        [run] = await wait_for(finished, 30, "the handed-back run to finish on the next worker")
    assert (run["worker"], run["deliveries"]) == ("next", 2)


async def test_runs_a_killed_worker_recorded_are_counted_once_by_the_next(
    broker: Broker, store: Store, database_url: str, redis_url: str, keyspace: Keyspace, tmp_path: Path
) -> None:
    """A worker killed before its fold leaves its runs' ends uncounted in its job's row, not lost:
    the next worker to start counts them, once, from the rows."""
    job, _ = await armed(broker, store, SYSTEM_CLOCK.now(), schedule="* * * * * *")

    async def ended() -> int:
        return sum(r["status"] == "success" for r in await runs_of(store, job))

    async def run_count() -> int:
        row = await store.job(job.job_id)
        assert row is not None
        return int(row["run_count"])

    never_folds = {"SUNDIAL_JOB_ROW_INTERVAL_SECONDS": "3600"}
    with worker_process(database_url, redis_url, keyspace, "first", tmp_path / "a.log", **never_folds) as first:
        await wait_for(lambda: _at_least(ended, 3), 30, "three runs recorded")
        os.kill(first.pid, signal.SIGKILL)
        first.wait(10)
    await broker.disarm(job.job_id)  # no new slot fires: the count must reach the rows' and stay there
    assert await run_count() == 0, "the first worker never folded"

    async def counted_as_recorded() -> bool:
        return await run_count() == await ended() >= 3

    # Runs the first left queued start at once (their slots were due); the ones it was running
    # would only be reclaimed after the visibility timeout, after this test.
    with worker_process(database_url, redis_url, keyspace, "second", tmp_path / "b.log",
                        SUNDIAL_JOB_ROW_INTERVAL_SECONDS="0.5", SUNDIAL_TICKER_ENABLED="false",
                        SUNDIAL_VISIBILITY_TIMEOUT_SECONDS="600"):
        await wait_for(counted_as_recorded, 20, "the second worker's fold")
        await asyncio.sleep(2)  # more folds: none counts them again
        assert await counted_as_recorded()


async def _at_least(value: Any, least: int) -> bool:
    return bool(await value() >= least)
