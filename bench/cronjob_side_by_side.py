"""Sundial's jobTemplate jobs beside the real CronJob controller, on one local control plane.

N every-minute CronJobs (kube-controller-manager's CronJob controller) and N every-minute
ScheduledJobs with the same jobTemplate (operator + launcher), in two namespaces of the same
kube-apiserver, for M minutes. Per side: Job creation lateness (Job creationTimestamp minus the
slot, the figure the CronJob controller exports as cronjob_job_creation_skew; creationTimestamp
has whole seconds), missed and duplicate slots, the CPU each side's processes used.
kube-controller-manager also runs the Job controller for both sides; its CPU is shown whole.
API requests: kube-apiserver's request counter over the run (both sides together) and the
controller manager's own client requests. No kubelet: pods stay Pending, Jobs keep running.

    python -m bench.cronjob_side_by_side --jobs 20 --minutes 3
"""

from __future__ import annotations

import argparse
import json
import os
import re
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sundial.core.crd import API_VERSION
from sundial.core.migrate import migrate
from sundial.devstack.controlplane import ControlPlane, find_repo_root
from sundial.devstack.services import Postgres, RedisServer

POD = {"restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox", "command": ["true"]}]}
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def metric_sum(text: str, name: str) -> float:
    pattern = re.compile(rf"^{re.escape(name)}(?:{{[^}}]*}})? ([0-9.e+-]+)$", re.M)
    return sum(float(value) for value in pattern.findall(text))


def scrape(url: str, token: str) -> str:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=30, context=context) as response:
        return str(response.read().decode())


def objects(n: int, namespace: str, kind: str) -> str:
    items = []
    for index in range(n):
        meta = {"name": f"every-minute-{index}", "namespace": namespace}
        template = {"spec": {"template": {"spec": POD}}}
        if kind == "CronJob":
            items.append({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": meta,
                          "spec": {"schedule": "* * * * *", "timeZone": "UTC", "jobTemplate": template}})
        else:
            items.append({"apiVersion": API_VERSION, "kind": "ScheduledJob", "metadata": meta,
                          "spec": {"schedule": "* * * * *", "timeZone": "UTC", "jobTemplate": template,
                                   "timeoutSeconds": 86400, "retry": {"attempts": 1}}})
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": items})


def slots_of(plane: ControlPlane, namespace: str) -> list[tuple[str, int, float]]:
    """(owner, slot in unix minutes, creation lateness in seconds) of every Job in `namespace`."""
    jobs = json.loads(plane.kubectl("get", "jobs", "-n", namespace, "-o", "json").stdout)["items"]
    found = []
    for job in jobs:
        name = job["metadata"]["name"]
        owner, _, minutes = name.rpartition("-")
        if not minutes.isdigit():
            continue
        created = datetime.fromisoformat(job["metadata"]["creationTimestamp"].replace("Z", "+00:00"))
        found.append((owner, int(minutes), created.timestamp() - int(minutes) * 60))
    return found


def summarise(found: list[tuple[str, int, float]], n: int, first: int, last: int) -> dict[str, Any]:
    window = [(owner, slot, late) for owner, slot, late in found if first <= slot <= last]
    counts = Counter((owner, slot) for owner, slot, _ in window)
    lateness = sorted(late for _, _, late in window)
    expected = n * (last - first + 1)

    def pct(q: float) -> float:
        return lateness[min(len(lateness) - 1, int(q * len(lateness)))] if lateness else float("nan")

    return {"expected": expected, "created": len(counts), "missed": expected - len(counts),
            "duplicates": sum(c - 1 for c in counts.values()), "p50": pct(0.5), "p99": pct(0.99),
            "max": lateness[-1] if lateness else float("nan")}


def spawn(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(argv, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True)


@dataclass(frozen=True)
class Figures:
    jobs: int
    minutes: int
    first_slot: int
    sides: dict[str, dict[str, Any]]
    cpu: dict[str, float]
    api_per_s: float
    controller_manager_per_s: float
    load: tuple[float, float]
    postgres: str


def measure(jobs: int, minutes: int) -> Figures:
    """Run both sides for `minutes` whole minutes of `jobs` every-minute jobs each."""
    work = Path(tempfile.mkdtemp(prefix="sundial-cronjob-bench-"))
    bindir = Path(sys.executable).parent
    with ControlPlane(work / "k8s") as plane:
        postgres, redis = Postgres(work / "pg").start(), RedisServer(work / "redis").start()
        processes: list[subprocess.Popen[bytes]] = []
        try:
            migrate(postgres.dsn)
            plane.kubectl("apply", "-f", str(find_repo_root() / "deploy" / "crds"))
            plane.kubectl("wait", "--for=condition=Established", "crd/scheduledjobs.sundial.dev", "--timeout=60s")
            env = {**plane.env(), "DATABASE_URL": postgres.dsn, "REDIS_URL": redis.url, "SUNDIAL_METRICS_PORT": "0",
                   "SUNDIAL_CONCURRENCY": str(jobs * (minutes + 3)), "SUNDIAL_SHUTDOWN_GRACE_SECONDS": "1"}
            processes = [
                spawn([str(bindir / "sundial-operator"), "--standalone", "--namespace", "sundial"], env,
                      work / "operator.log"),
                spawn([str(bindir / "sundial-launcher")], env, work / "launcher.log"),
            ]
            controller_manager = plane.pids["kube-controller-manager"]
            for namespace in ("cronjob", "sundial"):
                plane.kubectl("create", "namespace", namespace)
            time.sleep(5)
            plane.kubectl("apply", "-f", "-", input=objects(jobs, "cronjob", "CronJob"))
            plane.kubectl("apply", "-f", "-", input=objects(jobs, "sundial", "ScheduledJob"))
            first = int((time.time() + 15) // 60) + 1  # a whole minute both sides have had 15 s to arm
            last = first + minutes - 1
            time.sleep(max(0.0, first * 60 - time.time()))

            def counters() -> tuple[float, float, float, float]:
                return (cpu_seconds(controller_manager), sum(cpu_seconds(p.pid) for p in processes),
                        metric_sum(scrape(f"{plane.server}/metrics", plane.admin_token), "apiserver_request_total"),
                        metric_sum(scrape(f"{plane.controller_manager_url}/metrics", plane.admin_token),
                                   "rest_client_requests_total"))

            before, load0 = counters(), os.getloadavg()[0]
            time.sleep(max(0.0, (last + 1) * 60 + 15 - time.time()))
            after, load1 = counters(), os.getloadavg()[0]
            elapsed = (last + 1) * 60 + 15 - first * 60
            delta = [b - a for a, b in zip(before, after, strict=True)]
            sides = {"CronJob controller": summarise(slots_of(plane, "cronjob"), jobs, first, last),
                     "Sundial (launcher)": summarise(slots_of(plane, "sundial"), jobs, first, last)}
        finally:
            for process in processes:
                process.terminate()
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=10)
            redis.stop()
            postgres.stop()
    return Figures(jobs, minutes, first, sides, {"kcm": delta[0], "sundial": delta[1]}, delta[2] / elapsed,
                   delta[3] / elapsed, (load0, load1), postgres.settings)


def report(f: Figures) -> str:
    started = datetime.fromtimestamp(f.first_slot * 60, UTC).isoformat()
    lines = [
        f"{f.jobs} every-minute jobs per side, {f.minutes} minutes from {started}; 2 cores shared;"
        f" load average {f.load[0]:.2f} before, {f.load[1]:.2f} after; PostgreSQL {f.postgres}",
        "",
        "| side | slots | Jobs created | missed | duplicates | lateness p50 | p99 | max | CPU s |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    cpu_of = {"CronJob controller": f"{f.cpu['kcm']:.1f} (kube-controller-manager, both sides' Job controller too)",
              "Sundial (launcher)": f"{f.cpu['sundial']:.1f} (operator + launcher)"}
    for side, s in f.sides.items():
        lines.append(f"| {side} | {s['expected']} | {s['created']} | {s['missed']} | {s['duplicates']} |"
                     f" {s['p50']:.0f} s | {s['p99']:.0f} s | {s['max']:.0f} s | {cpu_of[side]} |")
    lines += ["", f"API requests/s over the run: kube-apiserver {f.api_per_s:.1f} (both sides),"
              f" kube-controller-manager's client {f.controller_manager_per_s:.1f}, the rest (operator, launcher,"
              f" bench) {f.api_per_s - f.controller_manager_per_s:.1f}"]
    return "\n".join(lines)


SECTION_START = "<!-- cronjob-side-by-side: written by python -m bench.cronjob_side_by_side -->"
SECTION_END = "<!-- /cronjob-side-by-side -->"
SECTION_INTRO = """## Beside the CronJob controller: Job creation

Every-minute jobs that run a container: batch/v1 CronJobs handled by kube-controller-manager's
CronJob controller, and ScheduledJobs with the same `jobTemplate` handled by the operator and
the launcher, in two namespaces of one local control plane (`python -m bench.cronjob_side_by_side`;
`make bench` runs it with `CRONJOB_BENCH_ARGS`). Lateness is the Job's `creationTimestamp` (whole
seconds) minus its slot. No kubelet: pods stay Pending and every Job keeps running, so the
launcher tracks all of them (polling each up to every 5 s)."""


def write_section(page: Path, text: str) -> None:
    """Put this run's section into `page`, replacing an earlier one (bench.side_by_side rewrites
    the page; `make bench` runs this after it)."""
    section = f"{SECTION_START}\n{SECTION_INTRO}\n\n{text}\n{SECTION_END}\n"
    old = page.read_text() if page.exists() else ""
    if SECTION_START in old and SECTION_END in old:
        head, _, rest = old.partition(SECTION_START)
        _, _, tail = rest.partition(SECTION_END)
        page.write_text(head + section + tail.lstrip("\n"))
    else:
        page.write_text(old.rstrip("\n") + "\n\n" + section)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=20, help="every-minute jobs per side")
    parser.add_argument("--minutes", type=int, default=3, help="whole minutes measured")
    parser.add_argument("--out", default="docs/benchmarks.md", help="the page to add the section to; '' prints only")
    args = parser.parse_args(argv)
    text = report(measure(args.jobs, args.minutes))
    print(text)
    if args.out:
        write_section(Path(args.out), text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
