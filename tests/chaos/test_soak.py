"""The kill soak (issue goal 4): ScheduledJobs applied to a real kube-apiserver and armed by a real
operator; 3 workers, one SIGKILLed at random every 10 s and restarted 2 s later; the operator
SIGKILLed and restarted twice; Redis restarted once without persistence. At the end nothing is
lost, no (job, slot) ran twice, and every run is terminal.

`full` is the issue's soak: SUNDIAL_SOAK_SECONDS (600) x SUNDIAL_SOAK_JOBS (1,000 schedules),
each firing every SUNDIAL_SOAK_EVERY (30) seconds, only in `make chaos` (marker chaos_long).
`short` is the same soak for 60 s x 100 schedules every 5 s, in `make test`. Schedules are
staggered over their period (`<i % every>/<every> * * * * *`): 1,000 schedules every 30 s are
33 runs a second (every 5 s, 200 a second: more than 3 workers sharing 2 cores with everything
else could run, so slots went past their deadline). missedRunPolicy RunAll, so a slot delayed
by a fault runs late rather than being folded into the next one.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from sundial.core.broker import Broker
from sundial.core.clock import SYSTEM_CLOCK
from sundial.core.keys import Keyspace
from sundial.core.runs import JobRef
from sundial.core.store import Store
from sundial.devstack.controlplane import ControlPlane
from sundial.devstack.services import RedisServer
from tests.chaos.conftest import fleet_for, store_dsn
from tests.chaos.harness import (
    Fleet,
    account,
    every_n_seconds,
    executions,
    wait_for,
    wait_until_recorded,
    write_evidence,
)
from tests.k8s.conftest import SundialProcess, create_namespace, operator_process

pytestmark = [pytest.mark.services, pytest.mark.k8s]

SECONDS = float(os.environ.get("SUNDIAL_SOAK_SECONDS", "600"))
JOBS = int(os.environ.get("SUNDIAL_SOAK_JOBS", "1000"))
EVERY = int(os.environ.get("SUNDIAL_SOAK_EVERY", "30"))
WORKERS = ("w1", "w2", "w3")
KILL_EVERY_SECONDS = 10.0
RESTART_AFTER_SECONDS = 2.0


def manifests(namespace: str, jobs: int, every: int) -> str:
    """`jobs` ScheduledJobs firing every `every` seconds, spread evenly over the period."""
    return "".join(
        f"---\napiVersion: sundial.dev/v1alpha1\nkind: ScheduledJob\nmetadata:\n  name: soak-{index}\n"
        f"  namespace: {namespace}\nspec:\n  target: chaos-ledger\n"
        f"  schedule: \"{index % every}/{every} * * * * *\"\n  missedRunPolicy: RunAll\n  maxCatchUpRuns: 100\n"
        for index in range(jobs)
    )


@dataclass
class Faults:
    """When each fault of the soak happens, as seconds into it, and what was done."""

    seconds: float
    operator_kills: list[float] = field(init=False)
    redis_restart: float = field(init=False)
    done: list[str] = field(default_factory=list)
    at: list[tuple[float, str]] = field(default_factory=list)  # (wall time, fault) for reading a failed soak

    def __post_init__(self) -> None:
        self.operator_kills = [self.seconds / 3 + 4, 2 * self.seconds / 3 + 4]
        self.redis_restart = self.seconds / 2 + 4


def kill_operator(operator: SundialProcess) -> None:
    assert operator.popen is not None
    with contextlib.suppress(ProcessLookupError):
        os.killpg(operator.popen.pid, signal.SIGKILL)
    operator.popen.wait(10)


@contextlib.contextmanager
def operator_running(env: dict[str, str], log: Path, namespace: str) -> Iterator[SundialProcess]:
    operator = operator_process(env, log, "--standalone", "--namespace", namespace).start()
    try:
        operator.wait_for_log(r"Activity 'configure' succeeded", timeout=120)
        yield operator
    finally:
        operator.stop()


async def armed_jobs(store: Store, broker: Broker, namespace: str, count: int) -> list[JobRef]:
    """The jobs the operator projected into PostgreSQL and armed in Redis, once all of them are."""
    refs: list[JobRef] = []

    async def all_armed() -> bool:
        nonlocal refs
        rows = [row for row in await store.jobs_changed_since(None) if row["namespace"] == namespace]
        refs = [JobRef(str(row["id"]), namespace, str(row["name"])) for row in rows]
        return len(refs) == count and {ref.job_id for ref in refs} <= await broker.armed_job_ids()

    await wait_for(all_armed, 900, f"the operator to arm {count} jobs", interval=2.0)
    return refs


async def sample_queue(broker: Broker, samples: list[tuple[float, int, float]]) -> None:
    """(wall time, runs no worker has taken, seconds the oldest of them waited) every 5 s: tells a
    backlog (workers starved of CPU: slots pass their deadline and are recorded missed) from a loss."""
    while True:
        with contextlib.suppress(Exception):  # Redis restarting
            now = time.time()
            stats = [await broker.queue_stats(shard, round(now * 1000)) for shard in broker.keys.all_shards()]
            samples.append((now, sum(s.lag for s in stats), max((s.oldest_waiting_ms or 0) / 1000 for s in stats)))
        await asyncio.sleep(5.0)


async def soak(
    fleet: Fleet, operator: SundialProcess, redis: RedisServer, seconds: float, chance: random.Random,
) -> tuple[datetime, datetime, Faults]:
    """Kill a random worker every 10 s (back 2 s later), the operator twice, Redis once."""
    faults = Faults(seconds)
    loop = asyncio.get_running_loop()
    begin = loop.time()
    start = SYSTEM_CLOCK.now()
    while (elapsed := loop.time() - begin) < seconds:
        await asyncio.sleep(max(0.0, KILL_EVERY_SECONDS - RESTART_AFTER_SECONDS - (elapsed % KILL_EVERY_SECONDS)))
        elapsed = loop.time() - begin
        if faults.operator_kills and elapsed >= faults.operator_kills[0]:
            faults.operator_kills.pop(0)
            kill_operator(operator)
            faults.done.append(f"operator killed at {elapsed:.0f}s")
            faults.at.append((time.time(), "operator killed"))
        if faults.redis_restart and elapsed >= faults.redis_restart:
            redis.stop()
            redis.start()
            faults.redis_restart = 0.0
            faults.done.append(f"Redis restarted empty at {elapsed:.0f}s")
            faults.at.append((time.time(), "Redis restarted empty"))
        victim = chance.choice(fleet.live())
        fleet.kill(victim)
        await asyncio.sleep(RESTART_AFTER_SECONDS)
        fleet.start(victim)
        if not operator.running:
            operator.start()
            faults.at.append((time.time(), "operator started"))
    return start, SYSTEM_CLOCK.now(), faults


@pytest.mark.parametrize(("seconds", "jobs", "every"), [
    pytest.param(60.0, 100, 5, marks=[pytest.mark.chaos, pytest.mark.timeout(900)], id="short"),
    pytest.param(SECONDS, JOBS, EVERY, marks=[pytest.mark.chaos_long, pytest.mark.timeout(SECONDS + 1800)],
                 id="full"),
])
async def test_kill_soak(
    seconds: float, jobs: int, every: int, own_broker: Broker, own_store: Store, own_redis: RedisServer,
    keyspace: Keyspace, soak_plane: ControlPlane, tmp_path: Path,
) -> None:
    store, database_url = own_store, store_dsn(own_store)
    namespace = create_namespace(soak_plane, "soak")
    # The operator's policy grants the ledger target as the workers' does: a refused job stays
    # armed, but its handler fails and is retried every few seconds, 1,000 jobs at once.
    env = {**soak_plane.env(), "DATABASE_URL": database_url, "REDIS_URL": own_redis.url,
           "SUNDIAL_REDIS_PREFIX": keyspace.prefix, "SUNDIAL_METRICS_PORT": "0", "PYTHONUNBUFFERED": "1",
           "SUNDIAL_POLICY_DEFAULT_TARGETS": "*"}
    fleet = fleet_for(database_url, own_redis.url, keyspace, tmp_path / "fleet")
    chance = random.Random(int(os.environ.get("SUNDIAL_SOAK_SEED", "11")))
    (tmp_path / "jobs.yaml").write_text(manifests(namespace, jobs, every))
    # Workers first, as in production: the operator checks that a live worker offers each
    # job's target, and no job starts with a backlog of slots it missed while none ran.
    for name in WORKERS:
        fleet.start(name)
    queue: list[tuple[float, int, float]] = []
    sampling: asyncio.Task[None] | None = None
    with operator_running(env, tmp_path / "fleet" / "operator.log", namespace) as operator:
        try:
            soak_plane.kubectl("apply", "--server-side", "-f", str(tmp_path / "jobs.yaml"), timeout=900)
            refs = await armed_jobs(store, own_broker, namespace, jobs)
            offsets = {ref.job_id: int(ref.name.removeprefix("soak-")) % every for ref in refs}
            await wait_for(lambda: _ran_every_job(fleet, refs), 180, "every job to run once", interval=1.0)
            sampling = asyncio.create_task(sample_queue(own_broker, queue))
            start, end, faults = await soak(fleet, operator, own_redis, seconds, chance)
            window_end = end - timedelta(seconds=1)
            slots_of = every_n_seconds(start, window_end, offsets, every)
            # Runs of killed workers are reclaimed after the 3 s visibility timeout; a backlog drains.
            await wait_until_recorded(store, refs, start, window_end, 300, slots_of)
        finally:
            fleet.stop_all()
            if sampling is not None:
                sampling.cancel()
    start_up, killed_first = fleet.start_up_seconds()
    figures, examples = await account(
        store, fleet.ledger, refs, start, window_end, fault=f"kill soak {seconds:g}s",
        notes=(f"schedules={jobs} every={every}s workers=3 worker_kills={len(fleet.kills)} "
               f"{'; '.join(faults.done)}; max_queue_wait_s={max((q[2] for q in queue), default=0):.0f} "
               f"worker_start_s_p50={start_up[len(start_up) // 2] if start_up else 0:.1f} "
               f"max={max(start_up, default=0):.1f} killed_before_serving={killed_first}/{len(fleet.starts)} "
               f"load={os.getloadavg()[0]:.1f}"),
        kills=fleet.kills, slots_of=slots_of, evidence=tmp_path / "evidence.json")
    write_evidence(tmp_path / "faults.json", {"faults": faults.at, "queue": queue})
    assert len(faults.done) == 3, faults.done
    assert (figures.lost, figures.duplicates, figures.not_terminal) == (0, 0, 0), (examples, fleet.logs())


async def _ran_every_job(fleet: Fleet, refs: list[JobRef]) -> bool:
    ran = {run_id.rpartition(":")[0] for run_id in executions(fleet.ledger)}
    return ran >= {ref.job_id for ref in refs}
