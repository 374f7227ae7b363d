"""Operator at scale: cold-start reconcile time, API traffic during steady firing, peak RSS.

For each size, N ScheduledJobs are created while no operator runs; then a cold
`sundial-operator --standalone` starts and the clock runs until every job is armed: its row in
PostgreSQL, its cron entry in Redis and `status.nextRunTime` on the resource (the three are
timed apart; a watch follows the objects). "kopf settled" is when every object also shows its
generation as observed (`status.observedGeneration`) and no longer carries the finalizer an
older Sundial added. The CPU seconds each process spent and the API
requests made until everything was armed say where the time went; the operator's CPU per
10 s and when its RSS peaked say what it did afterwards. Two workers
then fire the jobs (every 10 s each) for a while: the kube-apiserver's own request counters
give the operator's API requests per second (by verb), its metrics the status PATCHes per
second. With `--restart-seconds`, the operator is then restarted over the armed objects (the
everyday cold start: an upgrade) and its CPU and API requests over that window are reported.
Peak RSS is the operator's VmHWM.

    python -m bench.operator_reconcile [--sizes 1000,10000] [--steady-seconds 30]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import psycopg
import redis
from lightkube import AsyncClient, Client, KubeConfig
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Namespace

from bench.common import CLOCK_TICKS, peak_rss_mb, start_worker
from sundial.core.keys import Keyspace
from sundial.core.migrate import migrate
from sundial.devstack.controlplane import ControlPlane, find_repo_root
from sundial.devstack.services import Services, free_port
from sundial.kube.resources import ScheduledJob

OPERATOR = str(Path(sys.executable).with_name("sundial-operator"))
CREATE_CONCURRENCY = 32
FINALIZER = "sundial.dev/finalizer"


async def create_jobs(plane: ControlPlane, namespace: str, count: int) -> float:
    client = AsyncClient(KubeConfig.from_file(plane.kubeconfig))
    await client.create(Namespace(metadata=ObjectMeta(name=namespace)))
    started = time.monotonic()
    gate = asyncio.Semaphore(CREATE_CONCURRENCY)

    async def create(index: int) -> None:
        job = ScheduledJob(
            metadata=ObjectMeta(name=f"job-{index:05d}", namespace=namespace),
            spec={"target": "noop", "schedule": f"{index % 10}/10 * * * * *", "timeZone": "UTC",
                  "missedRunPolicy": "Skip"},
        )
        async with gate:
            await client.create(job)

    await asyncio.gather(*(create(i) for i in range(count)))
    await client.close()
    return time.monotonic() - started


def armed_rows(dsn: str, namespace: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT count(*) FROM scheduled_jobs WHERE namespace = %s AND next_run_at IS NOT NULL", (namespace,)
        ).fetchone()
    return int(row[0]) if row else 0


def armed_entries(client: redis.Redis, keyspace: Keyspace) -> int:
    return sum(int(client.zcard(shard.due)) for shard in keyspace.all_shards())


class ObjectTracker:
    """Follows the namespace's ScheduledJobs through a watch (one LIST-sized burst of events,
    then one per write) and notes when all show status.nextRunTime, and when kopf is done with
    all; polling full LISTs instead would load the apiserver more than the operator does."""

    def __init__(self, kubeconfig: Path, namespace: str, size: int) -> None:
        self.size = size
        self.next_run: set[str] = set()
        self.settled: set[str] = set()
        self.status_at: float | None = None
        self.settled_at: float | None = None
        self.listed = threading.Event()
        self._client = Client(KubeConfig.from_file(kubeconfig))
        self._namespace = namespace
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, daemon=True)
        self._thread.start()

    def _follow(self) -> None:
        seen: set[str] = set()
        while not self._stop.is_set():
            try:
                for kind, obj in self._client.watch(ScheduledJob, namespace=self._namespace, server_timeout=60):
                    self._note(kind, obj, seen)
                    if self._stop.is_set():
                        return
            except httpx2.HTTPError:
                time.sleep(0.5)

    def _note(self, kind: str, obj: Any, seen: set[str]) -> None:
        meta = obj["metadata"]
        uid = meta["uid"]
        seen.add(uid)
        if len(seen) >= self.size:
            self.listed.set()
        if kind == "DELETED":
            return
        if (obj.get("status") or {}).get("nextRunTime"):
            self.next_run.add(uid)
        observed = (obj.get("status") or {}).get("observedGeneration")
        if FINALIZER not in (meta.get("finalizers") or []) and observed == meta.get("generation"):
            self.settled.add(uid)
        now = time.monotonic()
        if self.status_at is None and len(self.next_run) >= self.size:
            self.status_at = now
        if self.settled_at is None and len(self.settled) >= self.size:
            self.settled_at = now

    def close(self) -> None:
        self._stop.set()
        self._client.close()


def apiserver_requests(plane: ControlPlane) -> Counter[str]:
    """apiserver_request_total by verb, resource and subresource for the resources the operator
    touches; it has no per-client label, but nothing else writes them during a scenario."""
    text = plane.kubectl("get", "--raw", "/metrics").stdout
    totals: Counter[str] = Counter()
    for line in text.splitlines():
        if line.startswith("apiserver_request_total{"):
            labels, value = line.rsplit(" ", 1)
            verb = re.search(r'verb="([^"]+)"', labels)
            resource = re.search(r'resource="([^"]+)"', labels)
            subresource = re.search(r'subresource="([^"]+)"', labels)
            if verb and resource and resource.group(1) in {"scheduledjobs", "events", "kopfpeerings"}:
                name = resource.group(1) + (f"/{subresource.group(1)}" if subresource else "")
                totals[f"{verb.group(1)} {name}"] += int(float(value))
    return totals


def scrape(url: str, metric: str) -> float:
    text = httpx2.get(url, timeout=5).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(metric + " "))


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()  # fields from the state on; comm may hold spaces


def cpu_seconds(root: int) -> float:
    """CPU time of a process and all its descendants, the reaped ones included (cutime)."""
    children: dict[int, list[int]] = {}
    stats: dict[int, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat(int(entry.name))) is not None:
            stats[int(entry.name)] = fields
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        fields = stats.get(pid)
        if fields is None:
            continue
        total += sum(int(value) for value in fields[11:15])  # utime stime cutime cstime
        todo.extend(children.get(pid, []))
    return total / CLOCK_TICKS


@dataclass
class CpuMeter:
    pids: Mapping[str, int]

    def read(self) -> dict[str, float]:
        return {name: cpu_seconds(pid) for name, pid in self.pids.items()}


def own_cpu_seconds() -> float:
    """This process's CPU time: the watch that follows the objects runs here, on the same cores."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def spent(before: Mapping[str, float], after: Mapping[str, float]) -> str:
    return ", ".join(f"{name} {after[name] - before[name]:.1f}" for name in before)


def traffic(before: Counter[str], after: Counter[str], per: float = 1.0, unit: str = "") -> str:
    delta = after - before
    return ", ".join(f"{key} {count / per:.1f}{unit}" if per != 1.0 else f"{key} {count}"
                     for key, count in sorted(delta.items())) or "none"


class Sampler:
    """The operator's CPU seconds and RSS every half second, from its start."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.started = time.monotonic()
        self.samples: list[tuple[float, float, float]] = []  # (seconds since start, CPU s, RSS MB)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(0.5):
            fields = _stat(self.pid)
            try:
                status = Path(f"/proc/{self.pid}/status").read_text()
            except OSError:
                return
            rss = next((int(line.split()[1]) / 1024 for line in status.splitlines() if line.startswith("VmRSS:")), 0)
            if fields is not None:
                cpu = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
                self.samples.append((time.monotonic() - self.started, cpu, rss))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def rss_per(self, window: float = 10.0) -> str:
        """The highest RSS (MB) in each `window` seconds since the start."""
        peaks: dict[int, float] = {}
        for at, _, rss in self.samples:
            peaks[int(at // window)] = max(peaks.get(int(at // window), 0.0), rss)
        return " ".join(f"{peaks[i]:.0f}" for i in sorted(peaks))

    def cpu_per(self, window: float = 10.0) -> str:
        """CPU seconds per `window` seconds since the start: when the operator was busy."""
        spent: list[str] = []
        last_cpu, edge = 0.0, window
        for at, cpu, _ in self.samples:
            if at >= edge:
                spent.append(f"{cpu - last_cpu:.1f}")
                last_cpu, edge = cpu, edge + window
        return " ".join(spent)


def wait_for(what: str, check: Callable[[], bool], timeout: float, interval: float = 0.2) -> float:
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)
    return time.monotonic() - started


def start_operator(env: dict[str, str], namespace: str, log: Path, profile: bool, name: str
                   ) -> subprocess.Popen[bytes]:
    operator = subprocess.Popen([OPERATOR, "--standalone", "--namespace", namespace], env=env,
                                stdout=log.open("ab"), stderr=subprocess.STDOUT)
    if profile:
        subprocess.Popen([str(Path(sys.executable).with_name("py-spy")), "record", "-p", str(operator.pid), "-d",
                          "25", "-f", "raw", "-o", str(Path(tempfile.gettempdir()) / f"operator-spy-{name}.txt")],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return operator


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(60)
    except subprocess.TimeoutExpired:
        process.kill()  # a bench must end, and report, even if a process hangs in its shutdown
        process.wait(10)


def scenario(plane: ControlPlane, services: Services, size: int, steady_seconds: float, restart_seconds: float,
             logs: Path, profile: bool = False, log_level: str = "WARNING") -> str:
    load = os.getloadavg()
    namespace = f"bench-{uuid.uuid4().hex[:6]}"
    created_in = asyncio.run(create_jobs(plane, namespace, size))
    keyspace = Keyspace(prefix=f"bench{uuid.uuid4().hex[:8]}")
    metrics_port = free_port()
    env = {**plane.env(), "DATABASE_URL": services.postgres.dsn, "REDIS_URL": services.redis.url,
           "SUNDIAL_REDIS_PREFIX": keyspace.prefix, "SUNDIAL_METRICS_PORT": str(metrics_port),
           "SUNDIAL_METRICS_HOST": "127.0.0.1", "SUNDIAL_LOG_LEVEL": log_level}
    # Workers first, as in a running cluster: the operator then finds every target offered.
    workers = [start_worker(services.postgres.dsn, services.redis.url, keyspace, f"bench-w{i}",
                            logs / f"worker-{size}-{i}.log") for i in range(2)]
    time.sleep(2)
    tracker = ObjectTracker(plane.kubeconfig, namespace, size)
    if not tracker.listed.wait(120):
        raise SystemExit("the watch never listed the objects")
    entries = redis.Redis.from_url(services.redis.url)
    assert services.postgres.process is not None
    assert services.redis.process is not None
    pids = {"kube-apiserver": plane.pids["kube-apiserver"], "etcd": plane.pids["etcd"],
            "postgres": services.postgres.process.pid, "redis": services.redis.process.pid,
            **{f"worker{i}": worker.pid for i, worker in enumerate(workers)}}
    requests_start = apiserver_requests(plane)
    cpu = CpuMeter(pids)
    cpu_start = {"operator": 0.0, **cpu.read(), "bench itself": own_cpu_seconds()}
    started = time.monotonic()
    operator = start_operator(env, namespace, logs / f"operator-{size}.log", profile, f"{size}")
    meter = CpuMeter({"operator": operator.pid, **pids})
    sampler = Sampler(operator.pid)
    try:
        rows_in = wait_for("rows", lambda: armed_rows(services.postgres.dsn, namespace) >= size, 900)
        entries_in = time.monotonic() - started + wait_for(
            "entries", lambda: armed_entries(entries, keyspace) >= size, 900)
        wait_for("status.nextRunTime", lambda: tracker.status_at is not None, 900, interval=0.1)
        cpu_armed, requests_armed = {**meter.read(), "bench itself": own_cpu_seconds()}, apiserver_requests(plane)
        wait_for("kopf to settle", lambda: tracker.settled_at is not None, 900, interval=0.5)
        assert tracker.status_at is not None
        assert tracker.settled_at is not None
        status_in, settled_in = tracker.status_at - started, tracker.settled_at - started
        time.sleep(5)  # let the first runs land before the steady window opens
        url = f"http://127.0.0.1:{metrics_port}/metrics"
        requests_before, patches_before = apiserver_requests(plane), scrape(
            url, "sundial_operator_status_patches_total")
        time.sleep(steady_seconds)
        requests_after, patches_after = apiserver_requests(plane), scrape(
            url, "sundial_operator_status_patches_total")
        rss = peak_rss_mb(operator.pid)
        sampler.stop()
        restart = ""
        if restart_seconds:
            stop(operator)
            cpu_before, restart_requests = meter.read(), apiserver_requests(plane)
            operator = start_operator(env, namespace, logs / f"operator-{size}-restart.log", profile,
                                      f"{size}-restart")
            meter = CpuMeter({"operator": operator.pid, **pids})
            cpu_before["operator"] = 0.0
            again = Sampler(operator.pid)
            time.sleep(restart_seconds)
            again.stop()
            restart = (f"\n        restart over {size} armed objects, first {restart_seconds:g} s: CPU s "
                       f"{spent(cpu_before, meter.read())}\n          API requests "
                       f"{traffic(restart_requests, apiserver_requests(plane))}\n          operator per 10 s: CPU s "
                       f"{again.cpu_per()}; RSS MB {again.rss_per()}")
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        for worker in workers:
            worker.wait(60)
    finally:
        stop(operator)
        tracker.close()
        entries.close()
    armed_in = max(rows_in, entries_in, status_in)
    return (f"{size:>6} jobs (load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}): created in {created_in:5.1f} s\n"
            f"        cold operator: all armed in {armed_in:5.1f} s (rows {rows_in:.1f} s, entries {entries_in:.1f} s, "
            f"status.nextRunTime {status_in:.1f} s); kopf settled {settled_in:.1f} s; peak RSS {rss:.0f} MB\n"
            f"        operator per 10 s: CPU s {sampler.cpu_per()}; RSS MB {sampler.rss_per()}\n"
            f"        until all armed: CPU s {spent(cpu_start, cpu_armed)}\n"
            f"          API requests {traffic(requests_start, requests_armed)}\n"
            f"        steady firing ({size // 10}/s runs): status PATCHes "
            f"{(patches_after - patches_before) / steady_seconds:.1f}/s; API requests "
            f"{traffic(requests_before, requests_after, steady_seconds, '/s')}{restart}")


@contextlib.contextmanager
def cluster_stack(prefix: str) -> Iterator[tuple[Path, Services, ControlPlane]]:
    """A private PostgreSQL (migrated), Redis and control plane (with the CRDs), in a temporary directory."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp, Services(Path(tmp) / "svc") as services, \
            ControlPlane(Path(tmp) / "cp") as plane:
        migrate(services.postgres.dsn)
        plane.kubectl("apply", "-f", str(find_repo_root() / "deploy" / "crds"))
        plane.kubectl("wait", "--for=condition=Established", "crd/scheduledjobs.sundial.dev", "--timeout=60s")
        yield Path(tmp), services, plane


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--steady-seconds", type=float, default=30)
    parser.add_argument("--restart-seconds", type=float, default=0,
                        help="then restart the operator and report this long a window (0: no restart)")
    parser.add_argument("--profile", action="store_true", help="py-spy the operator's first 25 s")
    parser.add_argument("--keep-logs", metavar="DIR", type=Path, help="copy the process logs here")
    parser.add_argument("--log-level", default="WARNING", help="the operator's SUNDIAL_LOG_LEVEL")
    args = parser.parse_args()
    with cluster_stack("sundial-bench-") as (tmp, services, plane):
        print(f"operator at scale ({os.cpu_count()} cores), {args.steady_seconds:g} s of steady firing per size")
        logs = Path(tmp) / "logs"
        logs.mkdir()
        try:
            for size in (int(s) for s in args.sizes.split(",")):
                print(scenario(plane, services, size, args.steady_seconds, args.restart_seconds, logs,
                               args.profile, args.log_level), flush=True)
        finally:
            if args.keep_logs:
                shutil.copytree(logs, args.keep_logs, dirs_exist_ok=True)


if __name__ == "__main__":
    main()
