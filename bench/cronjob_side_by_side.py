"""Sundial's jobTemplate jobs beside the real CronJob controller, on one local control plane.

N every-minute CronJobs (kube-controller-manager's CronJob controller) and N every-minute
ScheduledJobs with the same jobTemplate (operator + launcher), in two namespaces of the same
kube-apiserver, for M minutes. Per side: Job creation lateness (Job creationTimestamp minus the
slot, the figure the CronJob controller exports as cronjob_job_creation_skew; creationTimestamp
has whole seconds), missed and duplicate slots, the CPU each side's processes used.
kube-controller-manager also runs the Job controller for both sides; its CPU is shown whole.
API requests per client come from kube-apiserver's audit log over the measured window.

No kubelet runs, so pods stay Pending. Both sides get the same template with
`activeDeadlineSeconds` (the Job controller fails each Job and deletes its pod) and the same
history limits (1 kept Job a side per job), so etcd holds a bounded number of objects however
long the run; the Jobs are counted from kube-apiserver's audit log (every create it answered),
not from what is left, with each Job's creationTimestamp from a watch the bench holds.

    python -m bench.cronjob_side_by_side --jobs 20 --minutes 3
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import psycopg

from bench.common import peak_rss_mb, process_cpu_seconds
from sundial.core.crd import API_VERSION
from sundial.core.migrate import migrate
from sundial.devstack.controlplane import ControlPlane, find_repo_root
from sundial.devstack.services import Postgres, RedisServer
from sundial.devstack.services import _stop as stop_process

POD = {"restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox", "command": ["true"]}]}
DEADLINE_SECONDS = 45  # each Job fails this long after it starts: pods never run without a kubelet
HISTORY = 1  # finished Jobs kept per job, both sides
SIDES = {"cronjob": "CronJob controller", "sundial": "Sundial (launcher)"}
AUDIT_POLICY = """apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived", "ResponseStarted"]
rules:
- level: Metadata
"""


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


def objects(indexes: range, namespace: str, kind: str) -> str:
    items = []
    template = {"spec": {"activeDeadlineSeconds": DEADLINE_SECONDS, "template": {"spec": POD}}}
    for index in indexes:
        meta = {"name": f"every-minute-{index}", "namespace": namespace}
        if kind == "CronJob":
            items.append({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": meta,
                          "spec": {"schedule": "* * * * *", "timeZone": "UTC", "jobTemplate": template,
                                   "successfulJobsHistoryLimit": HISTORY, "failedJobsHistoryLimit": HISTORY}})
        else:
            items.append({"apiVersion": API_VERSION, "kind": "ScheduledJob", "metadata": meta,
                          "spec": {"schedule": "* * * * *", "timeZone": "UTC", "jobTemplate": template,
                                   "timeoutSeconds": 86400, "retry": {"attempts": 1},
                                   "successfulRunsHistoryLimit": HISTORY, "failedRunsHistoryLimit": HISTORY}})
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": items})


class JobRecorder:
    """Every Job either side creates, from a `kubectl get jobs -A --watch` held for the whole run
    (history limits delete Jobs, so what is left at the end is not the count): their
    creationTimestamps. A watch that falls behind is closed by the API server; see `slots`."""

    FORMAT = "jsonpath={.metadata.namespace} {.metadata.name} {.metadata.uid} {.metadata.creationTimestamp}{\"\\n\"}"

    def __init__(self, plane: ControlPlane) -> None:
        self.plane = plane
        self.seen: dict[str, tuple[str, str, float]] = {}  # uid -> (namespace, name, created)
        self.process: subprocess.Popen[str] | None = None
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="job-recorder", daemon=True)

    def __enter__(self) -> JobRecorder:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        if self.process is not None:
            self.process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=10)
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait(timeout=10)
        self.thread.join(timeout=10)

    def _run(self) -> None:
        while not self.stopping.is_set():  # a closed watch is started again (it lists first)
            self.process = subprocess.Popen(
                [str(self.plane.bin_dir / "kubectl"), "get", "jobs", "-A", "--watch", "-o", self.FORMAT],
                env=self.plane.env(), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            assert self.process.stdout is not None
            for line in self.process.stdout:
                parts = line.split()
                if len(parts) == 4 and parts[2] not in self.seen:
                    created = datetime.fromisoformat(parts[3].replace("Z", "+00:00")).timestamp()
                    self.seen[parts[2]] = (parts[0], parts[1], created)
            self.process.wait()
            self.stopping.wait(1)

    def slots(self, namespace: str, created: Iterable[tuple[str, str, float]] = ()) -> list[tuple[str, int, float]]:
        """(owner, slot in unix minutes, creation lateness in seconds) of every Job seen in
        `namespace`: by the watch, or in `created` ((namespace, name, received) from the audit
        log). A watch that closes and lists again misses the Jobs created and deleted (history
        limits) in between, so the audit log counts; the watch's creationTimestamp gives the
        lateness where it saw the Job, the request's receipt (whole seconds, as
        creationTimestamp) where only the audit log did."""
        jobs = {(ns, name): stamp for ns, name, stamp in list(self.seen.values())}
        for ns, name, received in created:
            jobs.setdefault((ns, name), float(int(received)))
        found = []
        for (ns, name), stamp in jobs.items():
            owner, _, minutes = name.rpartition("-")
            if ns == namespace and minutes.isdigit():
                found.append((owner, int(minutes), stamp - int(minutes) * 60))
        return found


def summarise(found: list[tuple[str, int, float]], n: int, first: int, last: int) -> dict[str, Any]:
    window = [(owner, slot, late) for owner, slot, late in found if first <= slot <= last]
    counts = Counter((owner, slot) for owner, slot, _ in window)
    lateness = sorted(late for _, _, late in window)
    expected = n * (last - first + 1)

    def pct(q: float) -> float:
        return lateness[min(len(lateness) - 1, int(q * len(lateness)))] if lateness else float("nan")

    per_slot = Counter(slot for _, slot in counts)
    return {"per_slot": [per_slot.get(slot, 0) for slot in range(first, last + 1)],
            "expected": expected, "created": len(counts), "missed": expected - len(counts),
            "duplicates": sum(c - 1 for c in counts.values()), "p50": pct(0.5), "p99": pct(0.99),
            "max": lateness[-1] if lateness else float("nan")}


def audit_log_events(log: Path, start: float, end: float) -> Iterator[dict[str, Any]]:
    """Each event of kube-apiserver's audit log (rotated files too) received in [start, end)."""
    for path in sorted(log.parent.glob(log.name + "*")):
        with path.open() as lines:
            for line in lines:
                with contextlib.suppress(ValueError, KeyError):
                    event = json.loads(line)
                    received = datetime.fromisoformat(event["requestReceivedTimestamp"].replace("Z", "+00:00"))
                    if start <= received.timestamp() < end:
                        event["received"] = received.timestamp()
                        yield event


def audit_events(log: Path, start: float, end: float) -> Iterator[tuple[str, str, str]]:
    """(client, verb, resource) of each request in [start, end) in kube-apiserver's audit log."""
    for event in audit_log_events(log, start, end):
        resource = (event.get("objectRef") or {}).get("resource", "")
        yield client_name(event.get("userAgent", ""), resource), event["verb"], resource


def audit_created_jobs(log: Path, start: float, end: float) -> Iterator[tuple[str, str, float]]:
    """(namespace, name, when the request was received) of each Job the API server created in
    [start, end): every create it answered 201, whatever a watch saw."""
    for event in audit_log_events(log, start, end):
        ref = event.get("objectRef") or {}
        if (event["verb"] == "create" and ref.get("resource") == "jobs" and ref.get("name")
                and (event.get("responseStatus") or {}).get("code") == 201):
            yield ref.get("namespace", ""), ref["name"], event["received"]


def audit_clients(log: Path, start: float, end: float) -> Counter[str]:
    """Requests per client in [start, end) from kube-apiserver's audit log (see client_name)."""
    return Counter(client for client, _, _ in audit_events(log, start, end))


def client_name(user_agent: str, resource: str) -> str:
    """The program behind a request: the user agent's name, except that the launcher and the
    operator share lightkube's, and only the launcher touches jobs and pods."""
    program = user_agent.split(" ", 1)[0].split("/", 1)[0] or "unknown"
    if program.startswith("python-httpx"):
        return "launcher" if resource in ("jobs", "pods") else "operator (lightkube)"
    return {"kopf": "operator (kopf)", "Python-urllib": "bench (metrics)",
            "kube-apiserver": "kube-apiserver (itself)", "kubectl": "kubectl (bench's watch)"}.get(program, program)


def spawn(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(argv, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True)


@contextlib.contextmanager
def stopped_on_exit(processes: list[subprocess.Popen[bytes]]) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Stop every process in `processes` on the way out (as the services stop: SIGTERM to its
    process group, SIGKILL after 15 s)."""
    try:
        yield processes
    finally:
        for process in processes:
            stop_process(process)


@contextlib.contextmanager
def signals_raise() -> Iterator[None]:
    """SIGTERM and SIGHUP raise SystemExit, so a killed bench still runs every cleanup (its
    services run in their own sessions and would outlive it)."""

    def leave(signum: int, _frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, leave) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def create_both_sides(plane: ControlPlane, jobs: int, chunk: int = 50) -> None:
    """Create both sides' objects, the chunks of the two sides interleaved and 16 at a time, so
    neither side is armed long before the other."""
    batches = [(range(start, min(start + chunk, jobs)), namespace, kind) for start in range(0, jobs, chunk)
               for namespace, kind in (("cronjob", "CronJob"), ("sundial", "ScheduledJob"))]
    with ThreadPoolExecutor(max_workers=16) as pool:
        # No client-side validation: kubectl fetches the OpenAPI documents for it, which time out
        # on a loaded machine (the API server still validates every object).
        for done in [pool.submit(plane.kubectl, "create", "--validate=false", "-f", "-", input=objects(*batch),
                                 timeout=600) for batch in batches]:
            done.result()


@dataclass(frozen=True)
class Figures:
    jobs: int
    minutes: int
    first_slot: int
    sides: dict[str, dict[str, Any]]
    cpu: dict[str, float]
    requests_per_s: dict[str, float]
    load: tuple[float, float, float]  # before, mean during, after (1-minute load average)
    postgres: str
    launcher_cpu_per_job_ms: float = field(default=float("nan"))
    launcher_requests_per_job: float = field(default=float("nan"))
    launcher_peak_rss_mb: float = field(default=float("nan"))
    lanes: str = "launcher default"


RUNS_BY_SLOT = """
SELECT date_trunc('minute', logical_time) AS slot, status,
       CASE WHEN error_message LIKE 'missed:%' THEN 'missed'
            ELSE coalesce(substring(error_message from '[(]([A-Za-z]+)[)]'), left(error_message, 60), '') END,
       count(*)
FROM job_runs GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
"""


def launcher_calls(log: Path, start: float, end: float) -> Counter[str]:
    """The launcher's requests in [start, end) by verb and resource, from the audit log."""
    return Counter(f"{verb} {resource}" for client, verb, resource in audit_events(log, start, end)
                   if client == "launcher")


def keep_evidence(work: Path, dsn: str, keep: Path, window: tuple[float, float]) -> None:
    """Copy the operator's and launcher's logs to `keep`, with the Sundial side's job_runs
    counted by slot, status and the start of the error message (why a slot is missing), and
    the launcher's requests by verb over the measured window."""
    keep.mkdir(parents=True, exist_ok=True)
    calls = launcher_calls(work / "audit.log", *window)
    (keep / "launcher_requests.txt").write_text("".join(f"{n} {call}\n" for call, n in calls.most_common()))
    for name in ("operator.log", "launcher.log"):
        if (work / name).exists():
            shutil.copy(work / name, keep / name)
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(RUNS_BY_SLOT).fetchall()
    (keep / "job_runs.txt").write_text("".join(f"{slot:%H:%M} {status} {count} {error}\n"
                                                for slot, status, error, count in rows))


def measure(jobs: int, minutes: int, keep: Path | None = None, lanes: int | None = None) -> Figures:
    """Run both sides for `minutes` whole minutes of `jobs` every-minute jobs each. Every exit
    path (an error, Ctrl-C, SIGTERM) stops what it started: the sides' processes, the watch,
    Redis, PostgreSQL and the control plane."""
    work = Path(tempfile.mkdtemp(prefix="sundial-cronjob-bench-"))
    (work / "audit-policy.yaml").write_text(AUDIT_POLICY)
    audit_log = work / "audit.log"
    audit = [f"--audit-policy-file={work / 'audit-policy.yaml'}", f"--audit-log-path={audit_log}",
             "--audit-log-format=json", "--audit-log-mode=batch", "--audit-log-maxsize=200"]
    bindir = Path(sys.executable).parent
    # The launcher's own default (what the chart deploys) unless --lanes sets SUNDIAL_CONCURRENCY.
    lane_env = {} if lanes is None else {"SUNDIAL_CONCURRENCY": str(lanes)}
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, work, ignore_errors=True)  # last, once everything has stopped
        stack.enter_context(signals_raise())
        plane = stack.enter_context(ControlPlane(work / "k8s", apiserver_args=audit))
        postgres = stack.enter_context(Postgres(work / "pg", durable=True))
        redis = stack.enter_context(RedisServer(work / "redis"))
        migrate(postgres.dsn)
        plane.kubectl("apply", "-f", str(find_repo_root() / "deploy" / "crds"))
        plane.kubectl("wait", "--for=condition=Established", "crd/scheduledjobs.sundial.dev", "--timeout=60s")
        env = {**plane.env(), "DATABASE_URL": postgres.dsn, "REDIS_URL": redis.url, "SUNDIAL_METRICS_PORT": "0",
               "SUNDIAL_SHUTDOWN_GRACE_SECONDS": "1", **lane_env}
        recorder = stack.enter_context(JobRecorder(plane))
        controller_manager = plane.pids["kube-controller-manager"]
        for namespace in SIDES:
            plane.kubectl("create", "namespace", namespace)
        create_both_sides(plane, jobs)
        # The operator primes (arms) every ScheduledJob as it starts, as the CronJob controller
        # picks up every CronJob: the sides start together however long creating them took.
        processes = stack.enter_context(stopped_on_exit([]))
        processes.append(spawn([str(bindir / "sundial-operator"), "--standalone", "--namespace", "sundial"], env,
                               work / "operator.log"))
        processes.append(spawn([str(bindir / "sundial-launcher")], env, work / "launcher.log"))
        first = int((time.time() + 30) // 60) + 1  # a whole minute both sides have had 30 s to arm
        last = first + minutes - 1
        time.sleep(max(0.0, first * 60 - time.time()))

        def counters() -> list[float]:
            return [process_cpu_seconds(controller_manager), *(process_cpu_seconds(p.pid) for p in processes)]

        before, load0, start = counters(), os.getloadavg()[0], time.time()
        end = (last + 1) * 60 + 15
        loads = []
        while time.time() < end:
            time.sleep(min(10.0, max(0.0, end - time.time())))
            loads.append(os.getloadavg()[0])
        after, load1, stop = counters(), os.getloadavg()[0], time.time()
        launcher_rss = peak_rss_mb(processes[1].pid)
        delta = [b - a for a, b in zip(before, after, strict=True)]
        elapsed = stop - start
        created = list(audit_created_jobs(audit_log, start, stop))
        sides = {label: summarise(recorder.slots(namespace, created), jobs, first, last)
                 for namespace, label in SIDES.items()}
        clients = audit_clients(audit_log, start, stop)
        if keep is not None:
            keep_evidence(work, postgres.dsn, keep, (start, stop))
    per_s = {client: count / elapsed for client, count in clients.most_common()}
    tracked = sides[SIDES["sundial"]]["created"]
    return Figures(jobs, minutes, first, sides, {"kcm": delta[0], "operator": delta[1], "launcher": delta[2]},
                   per_s, (load0, sum(loads) / max(1, len(loads)), load1), postgres.settings,
                   1000 * delta[2] / tracked if tracked else float("nan"),
                   clients["launcher"] / tracked if tracked else float("nan"), launcher_rss,
                   "launcher default" if lanes is None else str(lanes))


def report(f: Figures) -> str:
    started = datetime.fromtimestamp(f.first_slot * 60, UTC).isoformat()
    lines = [
        f"{f.jobs} every-minute jobs per side, {f.minutes} minutes from {started}; 2 cores shared;"
        f" 1-minute load average {f.load[0]:.1f} before, {f.load[1]:.1f} mean during, {f.load[2]:.1f} after;"
        f" PostgreSQL {f.postgres}; template activeDeadlineSeconds {DEADLINE_SECONDS}, {HISTORY} Job kept per job;"
        f" launcher lanes (SUNDIAL_CONCURRENCY): {f.lanes}",
        "",
        "| side | slots | Jobs created | missed | duplicates | lateness p50 | p99 | max | controller CPU s |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    cpu_of = {SIDES["cronjob"]: f"{f.cpu['kcm']:.1f} (kube-controller-manager, both sides' Job controller too)",
              SIDES["sundial"]: f"{f.cpu['operator'] + f.cpu['launcher']:.1f} (operator {f.cpu['operator']:.1f}"
                                f" + launcher {f.cpu['launcher']:.1f})"}
    for side, s in f.sides.items():
        lines.append(f"| {side} | {s['expected']} | {s['created']} | {s['missed']} | {s['duplicates']} |"
                     f" {s['p50']:.0f} s | {s['p99']:.0f} s | {s['max']:.0f} s | {cpu_of[side]} |")
    lines += ["", "Jobs created per slot, minute by minute: " + "; ".join(
        f"{side} {', '.join(str(n) for n in s['per_slot'])}" for side, s in f.sides.items()) + "."]
    total = sum(f.requests_per_s.values())
    per_client = ", ".join(f"{client} {rate:.1f}" for client, rate in f.requests_per_s.items())
    lines += [f"Launcher CPU per Job it created and tracked: {f.launcher_cpu_per_job_ms:.1f} ms;"
              f" API requests per Job: {f.launcher_requests_per_job:.2f} (the run's whole window, the shared"
              f" watch's too); peak RSS {f.launcher_peak_rss_mb:.0f} MiB.",
              f"API requests/s over the run (kube-apiserver audit log, both sides): {total:.1f} in all; {per_client}."]
    return "\n".join(lines)


SECTION_START = "<!-- cronjob-side-by-side: written by python -m bench.cronjob_side_by_side -->"
SECTION_END = "<!-- /cronjob-side-by-side -->"
SECTION_INTRO = """## Beside the CronJob controller: Job creation

Every-minute jobs that run a container: batch/v1 CronJobs handled by kube-controller-manager's
CronJob controller, and ScheduledJobs with the same `jobTemplate` handled by the operator and
the launcher, in two namespaces of one local control plane (`python -m bench.cronjob_side_by_side`;
`make bench` runs it with `CRONJOB_BENCH_ARGS`). Lateness is the Job's `creationTimestamp` (whole
seconds) minus its slot. No kubelet: pods stay Pending, so both sides' template sets
`activeDeadlineSeconds` and the Job controller fails each Job when it passes; both sides keep the
same history. The launcher tracks every Job it creates through one watch per namespace."""


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
    parser.add_argument("--jobs", type=int, default=1000, help="every-minute jobs per side")
    parser.add_argument("--minutes", type=int, default=5, help="whole minutes measured")
    parser.add_argument("--out", default="docs/benchmarks.md", help="the page to add the section to; '' prints only")
    # CronJob has no cap on running Jobs, and at 1,000 a side the Job controller (its client
    # rate-limited in kube-controller-manager) keeps Jobs alive for minutes: more than the
    # launcher's default 5,000 may run at once, so the bench gives it the most it may have.
    parser.add_argument("--lanes", type=int, default=10_000,
                        help="the launcher's SUNDIAL_CONCURRENCY, running Jobs it tracks at once (default 10000)")
    parser.add_argument("--keep", type=Path, default=None,
                        help="a directory to keep the operator's and launcher's logs and a job_runs summary in")
    args = parser.parse_args(argv)
    text = report(measure(args.jobs, args.minutes, args.keep, args.lanes))
    print(text)
    if args.out:
        write_section(Path(args.out), text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
