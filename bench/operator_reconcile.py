"""Operator at scale: cold-start reconcile time, API traffic during steady firing, peak RSS.

For each size, N ScheduledJobs are created while no operator runs; then a cold
`sundial-operator --standalone` starts and the clock runs until every job has its row in
PostgreSQL and its cron entry in Redis. Two workers then fire the jobs (every 10 s each) for a
while: the kube-apiserver's own request counters give the operator's API requests per second
(by verb), its metrics the status PATCHes per second. Peak RSS is the operator's VmHWM.

    python -m bench.operator_reconcile [--sizes 1000,10000] [--steady-seconds 30]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx2
import psycopg
from lightkube import AsyncClient, KubeConfig
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Namespace

from bench.common import start_worker
from sundial.core.keys import Keyspace
from sundial.core.migrate import migrate
from sundial.devstack.controlplane import ControlPlane, find_repo_root
from sundial.devstack.services import Services, free_port
from sundial.operator.kube import ScheduledJob

OPERATOR = str(Path(sys.executable).with_name("sundial-operator"))
CREATE_CONCURRENCY = 32


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


def apiserver_requests(plane: ControlPlane, user_agent_prefix: str) -> Counter[str]:
    """apiserver_request_total has no per-client label; count all, excluding our own scrapes."""
    text = plane.kubectl("get", "--raw", "/metrics").stdout
    totals: Counter[str] = Counter()
    for line in text.splitlines():
        if line.startswith("apiserver_request_total{"):
            labels, value = line.rsplit(" ", 1)
            verb = re.search(r'verb="([^"]+)"', labels)
            resource = re.search(r'resource="([^"]+)"', labels)
            if verb and resource and resource.group(1) in {"scheduledjobs", "events", "kopfpeerings"}:
                totals[f"{verb.group(1)} {resource.group(1)}"] += int(float(value))
    return totals


def scrape(url: str, metric: str) -> float:
    text = httpx2.get(url, timeout=5).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(metric + " "))


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def wait_for(what: str, check: Any, timeout: float) -> float:
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise SystemExit(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.2)
    return time.monotonic() - started


def scenario(plane: ControlPlane, services: Services, size: int, steady_seconds: float, logs: Path,
             profile: bool = False) -> str:
    namespace = f"bench-{uuid.uuid4().hex[:6]}"
    created_in = asyncio.run(create_jobs(plane, namespace, size))
    keyspace = Keyspace(prefix=f"bench{uuid.uuid4().hex[:8]}")
    metrics_port = free_port()
    env = {**plane.env(), "DATABASE_URL": services.postgres.dsn, "REDIS_URL": services.redis.url,
           "SUNDIAL_REDIS_PREFIX": keyspace.prefix, "SUNDIAL_METRICS_PORT": str(metrics_port),
           "SUNDIAL_METRICS_HOST": "127.0.0.1", "SUNDIAL_LOG_LEVEL": "WARNING"}
    # Workers first, as in a running cluster: the operator then finds every target offered.
    workers = [start_worker(services.postgres.dsn, services.redis.url, keyspace, f"bench-w{i}",
                            logs / f"worker-{size}-{i}.log") for i in range(2)]
    time.sleep(2)
    operator = subprocess.Popen([OPERATOR, "--standalone", "--namespace", namespace], env=env,
                                stdout=(logs / f"operator-{size}.log").open("wb"), stderr=subprocess.STDOUT)
    if profile:
        subprocess.Popen([str(Path(sys.executable).with_name("py-spy")), "record", "-p", str(operator.pid), "-d",
                          "25", "-f", "raw", "-o", str(Path(tempfile.gettempdir()) / "operator-spy.txt")],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        reconciled_in = wait_for(f"{size} jobs armed", lambda: armed_rows(services.postgres.dsn, namespace) >= size,
                                 timeout=900)
        time.sleep(5)  # let the first runs land before the steady window opens
        url = f"http://127.0.0.1:{metrics_port}/metrics"
        requests_before, patches_before = apiserver_requests(plane, "sundial"), scrape(
            url, "sundial_operator_status_patches_total")
        time.sleep(steady_seconds)
        requests_after, patches_after = apiserver_requests(plane, "sundial"), scrape(
            url, "sundial_operator_status_patches_total")
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        for worker in workers:
            worker.wait(60)
        rss = peak_rss_mb(operator.pid)
    finally:
        operator.send_signal(signal.SIGTERM)
        operator.wait(60)
    requests = requests_after - requests_before
    per_verb = ", ".join(f"{key} {count / steady_seconds:.1f}/s" for key, count in sorted(requests.items()))
    return (f"{size:>6} jobs: created in {created_in:5.1f} s; cold operator armed all in {reconciled_in:5.1f} s; "
            f"peak RSS {rss:.0f} MB\n        steady firing ({size // 10}/s runs): status PATCHes "
            f"{(patches_after - patches_before) / steady_seconds:.1f}/s; API requests {per_verb}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--steady-seconds", type=float, default=30)
    parser.add_argument("--profile", action="store_true", help="py-spy the operator's first 25 s")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sundial-bench-") as tmp, Services(Path(tmp) / "svc") as services, \
            ControlPlane(Path(tmp) / "cp") as plane:
        migrate(services.postgres.dsn)
        plane.kubectl("apply", "-f", str(find_repo_root() / "deploy" / "crds"))
        plane.kubectl("wait", "--for=condition=Established", "crd/scheduledjobs.sundial.dev", "--timeout=60s")
        print(f"operator at scale ({os.cpu_count()} cores), {args.steady_seconds:g} s of steady firing per size")
        for size in (int(s) for s in args.sizes.split(",")):
            print(scenario(plane, services, size, args.steady_seconds, Path(tmp), args.profile), flush=True)


if __name__ == "__main__":
    main()
