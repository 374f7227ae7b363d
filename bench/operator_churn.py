"""The operator under churn: mass apply, suspend and mass delete against a running operator.

Per size N, in a fresh namespace, with one `sundial-operator --standalone` already running
over it and two workers firing:

1. N ScheduledJobs are created through the API, 32 requests at a time (as fast as the
   kube-apiserver accepts them): the apply rate, and when every job was armed (its row in
   PostgreSQL and its cron entry in Redis), counted from the first create;
2. `probes` of them, which fire every second and retain their history, are suspended at once
   (one PATCH each): the latest slot any of them fired after its PATCH was accepted;
3. `kubectl delete scheduledjobs --all --wait=false` (kubectl's own wait is client-bound):
   when the bench's watch saw the last object go, when the last row and entry went, and the
   latest slot any job firing every second fired after the API server accepted its deletion (the bench's own watch sees
   the deletionTimestamp appear; the probes are named to be deleted last).

Peak RSS is the operator's VmHWM over the whole cycle. `--before DIR` runs the same cycle with
the operator from another checkout (say `git worktree add /tmp/before main`) first, beside us.

    python -m bench.operator_churn [--sizes 2000,10000] [--probes 100] [--before DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx2
import psycopg
import redis
from lightkube import AsyncClient, Client, KubeConfig
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.types import PatchType

from bench.common import peak_rss_mb, process_cpu_seconds, start_worker
from bench.cronjob_side_by_side import signals_raise
from bench.operator_reconcile import Sampler, armed_entries, cluster_stack, scrape, stop, wait_for
from sundial.core.keys import Keyspace
from sundial.devstack.controlplane import ControlPlane
from sundial.devstack.services import Services, free_port
from sundial.kube.resources import ScheduledJob

CONCURRENCY = 32
EVERY_SECOND = "* * * * * *"
RETAIN = {"sundial.dev/history-on-delete": "Retain"}


def probe_name(kind: str, index: int) -> str:
    # kubectl deletes in name order: the probes go last, when the operator is most behind.
    return f"zz-{kind}-{index:04d}"


def manifest(namespace: str, name: str, schedule: str, annotations: dict[str, str] | None = None) -> Any:
    return ScheduledJob(
        metadata=ObjectMeta(name=name, namespace=namespace, annotations=annotations),
        spec={"target": "noop", "schedule": schedule, "timeZone": "UTC", "missedRunPolicy": "Skip"},
    )


async def create_jobs(kubeconfig: Path, namespace: str, size: int, probes: int, uids: dict[str, str]
                      ) -> tuple[float, float, dict[str, datetime]]:
    """(monotonic time of the first create, seconds until the API server had accepted the last,
    name -> when its create was answered); fills `uids` (name -> uid)."""
    client = AsyncClient(KubeConfig.from_file(kubeconfig))
    gate = asyncio.Semaphore(CONCURRENCY)
    objects = [manifest(namespace, f"job-{i:05d}", f"{i % 60} * * * * *") for i in range(size - 2 * probes)]
    objects += [manifest(namespace, probe_name(kind, i), EVERY_SECOND, RETAIN)
                for kind in ("delete", "suspend") for i in range(probes)]
    accepted: dict[str, datetime] = {}

    async def create(obj: Any) -> None:
        async with gate:
            created = await client.create(obj)
            accepted[obj.metadata.name] = datetime.now(UTC)
            uids[obj.metadata.name] = str(created.metadata.uid)

    started = time.monotonic()
    await asyncio.gather(*(create(obj) for obj in objects))
    await client.close()
    return started, time.monotonic() - started, accepted


def arming_lags(dsn: str, namespace: str, accepted: dict[str, datetime]) -> str:
    """Per job, from its create answered to its row written (its Redis entry is written just
    before): p50, p99 and max; a job armed before the answer reached the bench counts 0."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT name, created_at FROM scheduled_jobs WHERE namespace = %s AND name = ANY(%s)",
                            (namespace, list(accepted))).fetchall()
    lags: list[float] = sorted(max(0.0, (at - accepted[str(name)]).total_seconds()) for name, at in rows)
    if not lags:
        return "no job armed"

    def pick(q: float) -> float:
        return lags[min(len(lags) - 1, int(q * len(lags)))]

    return f"arming lag per job p50 {pick(0.5):.2f} s, p99 {pick(0.99):.2f} s, max {lags[-1]:.2f} s"


async def create_canary(kubeconfig: Path, namespace: str) -> None:
    client = AsyncClient(KubeConfig.from_file(kubeconfig))
    await client.create(manifest(namespace, "aa-canary", "0 0 * * * *"))
    await client.close()


async def delete_all(kubeconfig: Path, namespace: str, names: list[str]) -> None:
    """A DELETE per object, CONCURRENCY in flight, as the apply: as fast as the API server
    accepts them (kubectl sends one at a time; one DELETE of the whole collection outlived the
    API server's 60 s request timeout at 10,000 objects and was cut off part-way)."""
    client = AsyncClient(KubeConfig.from_file(kubeconfig))
    gate = asyncio.Semaphore(CONCURRENCY)

    async def delete(name: str) -> None:
        async with gate:
            await client.delete(ScheduledJob, name, namespace=namespace)

    await asyncio.gather(*(delete(name) for name in names))
    await client.close()


def delete_elsewhere(kubeconfig: Path, namespace: str, names: list[str]) -> None:
    """`delete_all` from a process of its own, as kubectl would send them: in this one, the
    threads following the objects (each event a parsed 8-16 KB object) hold the GIL often
    enough to stall the event loop's sends and reads. A DELETE the API server answered in
    96 ms on average (its own measure) took the loop ~450 ms to complete."""
    context = multiprocessing.get_context("spawn")
    child = context.Process(target=_delete_all_sync, args=(kubeconfig, namespace, names))
    child.start()
    child.join()
    if child.exitcode != 0:
        raise RuntimeError(f"the deleting process failed (exit {child.exitcode})")


def _delete_all_sync(kubeconfig: Path, namespace: str, names: list[str]) -> None:
    asyncio.run(delete_all(kubeconfig, namespace, names))


async def suspend(kubeconfig: Path, namespace: str, names: list[str]) -> dict[str, datetime]:
    """Suspend each job; name -> when the API server answered its PATCH."""
    client = AsyncClient(KubeConfig.from_file(kubeconfig))
    accepted: dict[str, datetime] = {}

    async def one(name: str) -> None:
        await client.patch(ScheduledJob, name, {"spec": {"suspend": True}}, namespace=namespace,
                           patch_type=PatchType.MERGE)
        accepted[name] = datetime.now(UTC)

    await asyncio.gather(*(one(name) for name in names))
    await client.close()
    return accepted


class DeletionWatch:
    """When each object's deletion became visible (deletionTimestamp, or gone), and how many are left."""

    def __init__(self, kubeconfig: Path, namespace: str) -> None:
        self.accepted: dict[str, datetime] = {}
        self.gone: set[str] = set()
        self.gone_at: float | None = None
        self.size = 0
        self._client = Client(KubeConfig.from_file(kubeconfig))
        self._namespace = namespace
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, daemon=True)
        self._thread.start()

    def _follow(self) -> None:
        while not self._stop.is_set():
            try:
                for kind, obj in self._client.watch(ScheduledJob, namespace=self._namespace, server_timeout=60):
                    meta = obj["metadata"]
                    if (kind == "DELETED" or meta.get("deletionTimestamp")) and meta["name"] not in self.accepted:
                        self.accepted[meta["name"]] = datetime.now(UTC)
                    if kind == "DELETED":
                        self.gone.add(meta["name"])
                        if self.size and len(self.gone) >= self.size and self.gone_at is None:
                            self.gone_at = time.monotonic()
                    if self._stop.is_set():
                        return
            except httpx2.HTTPError:
                time.sleep(0.2)

    def close(self) -> None:
        self._stop.set()
        self._client.close()


def last_fires(dsn: str, namespace: str, names: list[str]) -> dict[str, datetime]:
    """name -> the latest slot each of these jobs fired (runs retained with their rows)."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT j.name, max(r.scheduled_for) FROM scheduled_jobs j JOIN job_runs r ON r.job_id = j.id"
            " WHERE j.namespace = %s AND j.name = ANY(%s) AND r.scheduled_for IS NOT NULL GROUP BY j.name",
            (namespace, names),
        ).fetchall()
    return {str(name): at for name, at in rows}


class EntryWatch:
    """Polls the Redis entries of some jobs every 20 ms and notes when each one went: how long
    the operator took to disarm, apart from any slot the ticker had fired just before."""

    def __init__(self, client: redis.Redis, keyspace: Keyspace, uids: dict[str, str]) -> None:
        self.gone: dict[str, datetime] = {}
        self._keys = {name: keyspace.for_job(uid).entry(uid) for name, uid in uids.items()}
        self._client = client
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        deadline = time.monotonic() + 120
        while len(self.gone) < len(self._keys) and time.monotonic() < deadline:
            left = [name for name in self._keys if name not in self.gone]
            with self._client.pipeline(transaction=False) as pipe:
                for name in left:
                    pipe.exists(self._keys[name])
                found = pipe.execute()
            now = datetime.now(UTC)
            self.gone.update({name: now for name, exists in zip(left, found, strict=True) if not exists})
            time.sleep(0.02)

    def lag(self, accepted: dict[str, datetime]) -> str:
        self._thread.join()
        lags = sorted((self.gone[n] - at).total_seconds() for n, at in accepted.items() if n in self.gone)
        left = len(accepted) - len(lags)
        if not lags:
            return "no entry went"
        return (f"entries gone p50 {lags[len(lags) // 2]:+.2f} s, max {lags[-1]:+.2f} s after the PATCH was answered"
                + (f" ({left} still there after 2 min)" if left else ""))


def late_fire(fires: dict[str, datetime], accepted: dict[str, datetime]) -> str:
    """The worst (last fire - acceptance) over the jobs; negative: none fired after."""
    worst = max(((fires[n] - at).total_seconds() for n, at in accepted.items() if n in fires), default=None)
    return "n/a" if worst is None else f"{worst:+.2f} s"


def live_rows(conn: psycopg.Connection[Any], namespace: str) -> int:
    """`conn` is the bench's one polling connection: a connection per poll (10 a second) had
    PostgreSQL fork and reap a backend each time, beside the operator's pool."""
    row = conn.execute("SELECT count(*) FROM scheduled_jobs WHERE namespace = %s AND deleted_at IS NULL",
                       (namespace,)).fetchone()
    return int(row[0]) if row else 0


class ArmingTrace:
    """Samples how many jobs are armed (entry in Redis and live row) every 0.1 s, so the report
    says when half, 90 % and all of them were, against when the API server accepted them."""

    def __init__(self, count: Callable[[], int], target: int) -> None:
        self.count = count
        self.target = target
        self.samples: list[tuple[float, int]] = []

    def done(self) -> bool:
        armed = self.count()
        self.samples.append((time.monotonic(), armed))
        return armed >= self.target

    def reached(self, fraction: float, since: float) -> str:
        at = next((when for when, armed in self.samples if armed >= fraction * self.target), None)
        return "never" if at is None else f"{at - since:.1f} s"


def wait_until_armed(entries: redis.Redis, keyspace: Keyspace, polls: psycopg.Connection[Any], namespace: str,
                     count: int, timeout: float) -> ArmingTrace:
    def armed() -> int:
        return min(armed_entries(entries, keyspace), live_rows(polls, namespace))

    trace = ArmingTrace(armed, count)
    wait_for("every job armed", trace.done, timeout, interval=0.1)
    return trace


def scheduledjob_writes(plane: ControlPlane) -> dict[str, int]:
    """The API server's count of answered writes to ScheduledJobs, by verb (status apart), from
    its /metrics: the bench writes only creates, deletes and the probes' suspends, so the PATCHes
    are the operator's (kopf's annotations, the status sync's status)."""
    counts: dict[str, int] = {}
    for line in plane.kubectl("get", "--raw", "/metrics").stdout.splitlines():
        if not line.startswith("apiserver_request_total{") or 'resource="scheduledjobs"' not in line:
            continue
        labels = dict(part.split("=", 1) for part in line[line.index("{") + 1:line.rindex("}")].split(","))
        verb = labels["verb"].strip('"') + ("/status" if labels.get("subresource") == '"status"' else "")
        code = labels.get("code", '""').strip('"')
        verb += f" {code}" if not code.startswith("2") else ""
        if verb.startswith(("PATCH", "POST", "DELETE", "PUT")):
            counts[verb] = counts.get(verb, 0) + int(float(line.rsplit(" ", 1)[1]))
    return counts


def delete_seconds(plane: ControlPlane) -> tuple[float, int]:
    """The seconds the API server spent answering DELETEs of ScheduledJobs, and how many it
    answered, by its own measure (`apiserver_request_duration_seconds`)."""
    total, count = 0.0, 0
    for line in plane.kubectl("get", "--raw", "/metrics").stdout.splitlines():
        series = line.split("{", 1)[0]
        if series not in ("apiserver_request_duration_seconds_sum", "apiserver_request_duration_seconds_count"):
            continue
        if 'resource="scheduledjobs"' not in line or 'verb="DELETE"' not in line:
            continue
        value = float(line.rsplit(" ", 1)[1])
        if series.endswith("_sum"):
            total += value
        else:
            count += int(value)
    return total, count


def writes_between(before: dict[str, int], after: dict[str, int], seconds: float) -> str:
    grown = {verb: count - before.get(verb, 0) for verb, count in sorted(after.items())}
    return ", ".join(f"{verb} {n} ({n / seconds:.0f}/s)" for verb, n in grown.items() if n > 0)


def start_operator(env: dict[str, str], namespace: str, log: Path, checkout: Path | None) -> subprocess.Popen[bytes]:
    if checkout is not None:
        # The other checkout's packages first on the path: its operator, our interpreter.
        parts = ("core", "kube", "operator", "worker", "dashboard")
        env = {**env, "PYTHONPATH": os.pathsep.join(str(checkout / part) for part in parts)}
    return subprocess.Popen([sys.executable, "-m", "sundial.operator.main", "--standalone", "--namespace", namespace],
                            env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT)


def cycle(plane: ControlPlane, services: Services, size: int, probes: int, logs: Path, label: str,
          checkout: Path | None, options: argparse.Namespace) -> str:
    apply_after: float | None = options.apply_after
    parallel_delete: bool = options.delete == "parallel"
    log_level: str = options.log_level
    load = os.getloadavg()
    # Each wait scales with the size: kubectl sends its deletes one at a time (11-17 a second
    # at load 12-16 with 2,000 jobs), so 10,000 outlast a fixed 15 minutes on a loaded machine.
    budget = max(900.0, 0.3 * size)
    namespace = f"churn-{uuid.uuid4().hex[:6]}"
    plane.kubectl("create", "namespace", namespace)
    keyspace = Keyspace(prefix=f"bench{uuid.uuid4().hex[:8]}")
    env = {**plane.env(), "DATABASE_URL": services.postgres.dsn, "REDIS_URL": services.redis.url,
           "SUNDIAL_REDIS_PREFIX": keyspace.prefix, "SUNDIAL_METRICS_PORT": str(free_port()),
           "SUNDIAL_METRICS_HOST": "127.0.0.1", "SUNDIAL_LOG_LEVEL": log_level}
    workers = [start_worker(services.postgres.dsn, services.redis.url, keyspace, f"churn-w{i}",
                            logs / f"worker-{label}-{size}-{i}.log") for i in range(2)]
    operator = start_operator(env, namespace, logs / f"operator-{label}-{size}.log", checkout)
    entries = redis.Redis.from_url(services.redis.url)
    dsn = services.postgres.dsn
    polls = psycopg.connect(dsn, autocommit=True)
    try:
        if apply_after is None:
            # The operator up and arming: a canary job armed (it stays, one job more).
            asyncio.run(create_canary(plane.kubeconfig, namespace))
            wait_until_armed(entries, keyspace, polls, namespace, 1, 600)  # a loaded machine starts slowly
        else:
            time.sleep(apply_after)  # as a `helm install` followed by `kubectl apply` would
        total = size + (apply_after is None)
        writes_at_apply = scheduledjob_writes(plane)
        sampler = Sampler(operator.pid)
        load_before = os.getloadavg()
        uids: dict[str, str] = {}
        cpu_at_apply = process_cpu_seconds(operator.pid)
        started, created_in, accepted = asyncio.run(create_jobs(plane.kubeconfig, namespace, size, probes, uids))
        trace = wait_until_armed(entries, keyspace, polls, namespace, total, budget)
        arming = (f"all armed {trace.samples[-1][0] - started - created_in:+.1f} s after the API server accepted "
                  f"the last; {arming_lags(dsn, namespace, accepted)}")
        print(f"  {label} {size}: apply {size / created_in:.0f}/s accepted ({created_in:.1f} s, load "
              f"{load_before[0]:.2f}); {arming}; operator RSS {peak_rss_mb(operator.pid):.0f} MB so far", flush=True)
        applied_in = time.monotonic() - started
        cpu_applied = process_cpu_seconds(operator.pid) - cpu_at_apply
        writes_applied = scheduledjob_writes(plane)
        time.sleep(3)  # every probe has fired a few times

        suspending = [probe_name("suspend", i) for i in range(probes)]
        disarms = EntryWatch(entries, keyspace, {name: uids[name] for name in suspending})
        suspended = asyncio.run(suspend(plane.kubeconfig, namespace, suspending))
        time.sleep(5)
        suspend_late = (f"{late_fire(last_fires(dsn, namespace, list(suspended)), suspended)} after the PATCH "
                        f"was accepted; {disarms.lag(suspended)}")

        watch = DeletionWatch(plane.kubeconfig, namespace)
        watch.size = total
        time.sleep(1)
        writes_at_delete = scheduledjob_writes(plane)
        served_before = delete_seconds(plane)
        load_at_delete = os.getloadavg()
        cpu_at_delete = process_cpu_seconds(operator.pid)
        apiserver = plane.pids["kube-apiserver"]
        apiserver_at_delete = process_cpu_seconds(apiserver)
        bench_cpu_before = time.process_time()
        began = time.monotonic()
        # --wait=false: kubectl's own wait (a request per object, client-side rate-limited) took
        # minutes for 2,000 objects already gone; the watch sees when they really are.
        if parallel_delete:
            # The probes last, as kubectl orders them.
            # The canary too, as `kubectl delete --all` does: the watch waits for every object.
            canary = ["aa-canary"] if apply_after is None else []
            delete_elsewhere(plane.kubeconfig, namespace, canary + sorted(accepted))
        else:
            plane.kubectl("delete", "scheduledjobs", "--all", "-n", namespace, "--wait=false", timeout=budget)
        kubectl_in = time.monotonic() - began
        bench_cpu = time.process_time() - bench_cpu_before
        cpu_deleting = process_cpu_seconds(operator.pid) - cpu_at_delete
        apiserver_deleting = process_cpu_seconds(apiserver) - apiserver_at_delete
        writes_deleted = scheduledjob_writes(plane)
        served_after = delete_seconds(plane)
        served = (served_after[0] - served_before[0]) / max(served_after[1] - served_before[1], 1)
        wait_for("every object gone", lambda: watch.gone_at is not None, budget)
        wait_for("rows and entries gone", lambda: armed_entries(entries, keyspace) == 0
                 and live_rows(polls, namespace) == 0, budget, interval=0.1)
        cleared_in = time.monotonic() - began
        time.sleep(3)  # any late fire lands in job_runs
        deleting = [probe_name("delete", i) for i in range(probes)]
        delete_late = late_fire(last_fires(dsn, namespace, deleting),
                                {n: at for n, at in watch.accepted.items() if n in deleting})
        assert watch.gone_at is not None
        gone_in = watch.gone_at - began
        watch.close()
        time.sleep(5)
        rss = peak_rss_mb(operator.pid)
        sampler.stop()
        # 0 from an operator that has no such filter (the series is absent).
        try:
            echoes = scrape(f"http://127.0.0.1:{env['SUNDIAL_METRICS_PORT']}/metrics",
                            "sundial_operator_kopf_echoes_dropped_total")
        except httpx2.HTTPError:
            echoes = float("nan")
    finally:
        stop(operator)
        for worker in workers:
            stop(worker)
        entries.close()
        polls.close()
    how_deleted = f"{CONCURRENCY} in flight: the API server answered" if parallel_delete else \
        "--all: kubectl sent the deletes"
    return (f"{label:>6} {size:>6} jobs (load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at the start, "
            f"{load_before[0]:.2f} at the apply):\n"
            f"        apply: the API server accepted {size / created_in:.0f} objects/s ({created_in:.1f} s); "
            f"{arming}\n"
            f"        suspend {probes}: last fire {suspend_late}\n"
            f"        delete (load {load_at_delete[0]:.2f}) {how_deleted} in {kubectl_in:.1f} s, "
            f"all objects gone {gone_in:.1f} s, "
            f"rows and entries gone {cleared_in:.1f} s; last fire {delete_late} after the deletion was accepted; "
            f"a DELETE took the API server {served * 1000:.0f} ms on average by its own measure; "
            f"this bench process used {bench_cpu / kubectl_in:.2f} CPU-s/s meanwhile\n"
            f"        writes the API server answered: apply until all armed "
            f"{writes_between(writes_at_apply, writes_applied, applied_in)}; "
            f"deletes {writes_between(writes_at_delete, writes_deleted, kubectl_in)}\n"
            f"        operator CPU: apply until all armed {cpu_applied:.1f} s ({cpu_applied / applied_in:.2f} of a "
            f"core); deletes until answered {cpu_deleting:.1f} s ({cpu_deleting / kubectl_in:.2f} of a core; the "
            f"kube-apiserver meanwhile {apiserver_deleting / kubectl_in:.2f})\n"
            f"        ScheduledJob events kept from kopf (echoes that change nothing it acts on): {echoes:.0f}\n"
            f"        operator peak RSS {rss:.0f} MB; RSS MB per 10 s {sampler.rss_per()}; CPU s per 10 s "
            f"{sampler.cpu_per()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="2000,10000")
    parser.add_argument("--probes", type=int, default=100, help="jobs firing every second, per check")
    parser.add_argument("--before", type=Path, help="a checkout whose operator runs the same cycle first")
    parser.add_argument("--log-level", default="WARNING", help="the operator's SUNDIAL_LOG_LEVEL")
    parser.add_argument("--logs", type=Path, help="keep the operators' and workers' logs here")
    parser.add_argument("--apply-after", type=float,
                        help="start the apply this many seconds after starting the operator (default: once a "
                             "canary job is armed, i.e. with the operator running)")
    parser.add_argument("--delete", choices=("kubectl", "parallel"), default="kubectl",
                        help=f"kubectl delete --all (one request at a time), or {CONCURRENCY} DELETEs in flight")
    args = parser.parse_args()
    when = ("apply to a running operator" if args.apply_after is None
            else f"apply {args.apply_after:g} s after the operator starts")
    # SIGTERM and SIGHUP too stop the operators, workers and services on the way out.
    with signals_raise(), cluster_stack("sundial-churn-") as (tmp, services, plane):
        print(f"operator under churn ({os.cpu_count()} cores; PostgreSQL fsync off, Redis hz 10 as the harness "
              f"starts them; 2 workers; apply {CONCURRENCY} creates in flight; "
              f"{when})", flush=True)
        logs = args.logs or tmp / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        for size in (int(s) for s in args.sizes.split(",")):
            if args.before is not None:
                print(cycle(plane, services, size, args.probes, logs, "before", args.before, args), flush=True)
            print(cycle(plane, services, size, args.probes, logs, "after", None, args), flush=True)


if __name__ == "__main__":
    main()
