"""Dashboard API under the page's polling: latency of the calls it makes, and the process's RSS.

N ScheduledJobs (a mix of the three schedule shapes the page words) are created on the local
control plane, with a history of runs in PostgreSQL for one of them; then one client calls, one
after another, what an open page calls every 2 s (`GET /api/jobs`), what the history view calls
(`GET /api/jobs/{ns}/{name}/runs`) and the queue view (`GET /api/queue`). Latency is measured at
the client over loopback; peak RSS is the dashboard's VmHWM.

    python -m bench.dashboard_api [--jobs 1000] [--calls 50]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx2
import psycopg
from lightkube import AsyncClient, KubeConfig
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Namespace

from bench.common import peak_rss_mb, percentile
from sundial.core.migrate import migrate
from sundial.devstack.controlplane import ControlPlane, find_repo_root
from sundial.devstack.services import Services, free_port
from sundial.kube.resources import ScheduledJob

DASHBOARD = str(Path(sys.executable).with_name("sundial-dashboard"))
SCHEDULES = ("0 12,18,20 * * *", "*/5 * * * *", "30 12,18,20 * * *", "0 9 * * 1-5")
NAMESPACE = "bench-dashboard"
HISTORY_ROWS = 5000


async def create_jobs(plane: ControlPlane, count: int) -> None:
    client = AsyncClient(KubeConfig.from_file(plane.kubeconfig))
    await client.create(Namespace(metadata=ObjectMeta(name=NAMESPACE)))
    gate = asyncio.Semaphore(32)

    async def create(index: int) -> None:
        job = ScheduledJob(
            metadata=ObjectMeta(name=f"job-{index:05d}", namespace=NAMESPACE),
            spec={"target": "noop", "schedule": SCHEDULES[index % len(SCHEDULES)], "category": "biz"},
        )
        async with gate:
            await client.create(job)

    await asyncio.gather(*(create(i) for i in range(count)))
    await client.close()


def seed_history(dsn: str, job_id: str) -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    with psycopg.connect(dsn) as conn:
        conn.execute(
            "INSERT INTO scheduled_jobs (id, namespace, name, job_target, cron_expression, spec)"
            " VALUES (%s, %s, 'job-00000', 'noop', '*/5 * * * *', '{}')",
            (job_id, NAMESPACE),
        )
        with conn.cursor().copy(
            "COPY job_runs (run_id, job_id, logical_time, scheduled_for, trigger_type, status, attempt,"
            " started_at, completed_at, duration_ms) FROM STDIN"
        ) as copy:
            for index in range(HISTORY_ROWS):
                slot = start + timedelta(minutes=5 * index)
                copy.write_row((f"{job_id}:{index}", job_id, slot, slot, "scheduled", "success", 1, slot,
                                slot + timedelta(seconds=2), 2000))


def timed(client: httpx2.Client, path: str, calls: int) -> list[float]:
    samples = []
    for _ in range(calls):
        started = time.perf_counter()
        response = client.get(path)
        samples.append((time.perf_counter() - started) * 1000)
        response.raise_for_status()
    return samples


def report(name: str, samples: list[float]) -> None:
    print(f"{name:<44} p50 {percentile(samples, 0.5):7.1f} ms   p95 {percentile(samples, 0.95):7.1f} ms"
          f"   max {max(samples):7.1f} ms")


def run(plane: ControlPlane, services: Services, jobs: int, calls: int, log: Path) -> None:
    asyncio.run(create_jobs(plane, jobs))
    uid = plane.kubectl("get", "sdj", "job-00000", "-n", NAMESPACE, "-o", "jsonpath={.metadata.uid}").stdout
    seed_history(services.postgres.dsn, uid)
    port = free_port()
    env = {**os.environ, **plane.env(), "DATABASE_URL": services.postgres.dsn, "REDIS_URL": services.redis.url,
           "SUNDIAL_DASHBOARD_HOST": "127.0.0.1", "SUNDIAL_DASHBOARD_PORT": str(port),
           "SUNDIAL_LOG_LEVEL": "WARNING"}
    dashboard = subprocess.Popen([DASHBOARD], env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT)
    headers = {"Authorization": f"Bearer {plane.admin_token}"}
    try:
        with httpx2.Client(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=60) as client:
            deadline = time.monotonic() + 30
            while True:
                try:
                    client.get("/readyz").raise_for_status()
                    break
                except httpx2.HTTPError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
            print(f"{jobs} ScheduledJobs, {HISTORY_ROWS} runs of job-00000, {calls} calls each, one client")
            report(f"GET /api/jobs ({jobs} jobs)", timed(client, "/api/jobs", calls))
            report("GET /api/jobs?category=biz", timed(client, "/api/jobs?category=biz", calls))
            report("GET /api/jobs/{ns}/{name}", timed(client, f"/api/jobs/{NAMESPACE}/job-00001", calls))
            report(f"GET .../runs?limit=20 ({HISTORY_ROWS} runs)",
                   timed(client, f"/api/jobs/{NAMESPACE}/job-00000/runs?limit=20", calls))
            report("GET .../runs?limit=20&offset=4000",
                   timed(client, f"/api/jobs/{NAMESPACE}/job-00000/runs?limit=20&offset=4000", calls))
            report("GET /api/queue", timed(client, "/api/queue", calls))
        print(f"dashboard peak RSS {peak_rss_mb(dashboard.pid):.0f} MB")
    finally:
        dashboard.terminate()
        dashboard.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--calls", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sundial-bench-") as tmp, Services(Path(tmp) / "svc") as services, \
            ControlPlane(Path(tmp) / "cp") as plane:
        migrate(services.postgres.dsn)
        plane.kubectl("apply", "-f", str(find_repo_root() / "deploy" / "crds"))
        for _ in range(20):  # `kubectl wait` fails outright while the CRD has no conditions yet
            if plane.kubectl("wait", "--for=condition=Established", "crd/scheduledjobs.sundial.dev",
                             "--timeout=60s", check=False).returncode == 0:
                break
            time.sleep(0.5)
        run(plane, services, args.jobs, args.calls, Path(tmp) / f"dashboard-{uuid.uuid4().hex[:6]}.log")


if __name__ == "__main__":
    main()
