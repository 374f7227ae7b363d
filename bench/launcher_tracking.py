"""What tracking running Jobs costs the launcher: the shared watch against per-Job polling.

N Jobs run (no kubelet: their pods stay Pending) in one namespace of a local control plane.
Two child processes track all N at the same time, in the same run: one with the launcher's
shared watch (`sundial.launcher.watch.JobWatch`), one with the per-Job polling it replaced
(a GET of each Job every 0.2 s growing to 5 s, as the launcher did before). After `--seconds`
the Jobs are deleted, and each child must notice every one. Per child: CPU seconds, CPU per
tracked Job per minute, API requests made, and how long until it saw the last deletion.

    python -m bench.launcher_tracking --jobs 300 --seconds 60
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
from lightkube import ApiError, AsyncClient, KubeConfig
from lightkube.resources.batch_v1 import Job

from bench.cronjob_side_by_side import signals_raise
from sundial.devstack.controlplane import ControlPlane
from sundial.launcher.watch import JobWatch

NAMESPACE = "tracking"
POD = {"restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox", "command": ["true"]}]}
FIRST_POLL_SECONDS = 0.2
MAX_POLL_SECONDS = 5.0


def jobs_list(names: list[str]) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "batch/v1", "kind": "Job",
         "metadata": {"name": name, "namespace": NAMESPACE, "labels": {"sundial.dev/job-uid": "bench"}},
         "spec": {"backoffLimit": 0, "template": {"spec": POD}}} for name in names]})


class Counting:
    """Counts the API requests a lightkube client sends (bench-only instrumentation)."""

    def __init__(self, client: AsyncClient) -> None:
        self.requests = 0
        inner = client._client  # the one place requests pass
        send: Callable[..., Awaitable[Any]] = inner.send

        async def counted(*args: Any, **kwargs: Any) -> Any:
            self.requests += 1
            return await send(*args, **kwargs)

        inner.send = counted  # type: ignore[method-assign]


ERRORS = {"count": 0}


async def poll_until_gone(client: AsyncClient, name: str) -> None:
    """The launcher's tracking before the watch: GET the Job, back off to every 5 s. (The
    launcher failed the run on any error but 404; here an error is counted and polled past.)"""
    delay = FIRST_POLL_SECONDS
    while True:
        try:
            await client.get(Job, name, namespace=NAMESPACE)
        except ApiError as exc:
            if exc.status.code == 404:
                return
            ERRORS["count"] += 1
        except httpx2.HTTPError:
            ERRORS["count"] += 1
        await asyncio.sleep(delay)
        delay = min(delay * 1.5, MAX_POLL_SECONDS)


async def watch_until_gone(watch: JobWatch, name: str) -> None:
    while await watch.finished(NAMESPACE, name) is not None:
        pass


async def child(mode: str, kubeconfig: Path, names: list[str], started: Path) -> dict[str, Any]:
    client = AsyncClient(KubeConfig.from_file(kubeconfig))
    counting = Counting(client)
    watch = JobWatch(client)
    waits = [poll_until_gone(client, name) if mode == "poll" else watch_until_gone(watch, name) for name in names]
    tasks = [asyncio.create_task(wait) for wait in waits]
    before, began = resource.getrusage(resource.RUSAGE_SELF), time.time()  # start-up and imports apart
    await asyncio.to_thread(started.touch)
    await asyncio.gather(*tasks)
    done = time.time()
    await watch.close()
    await client.aclose()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu = usage.ru_utime + usage.ru_stime - before.ru_utime - before.ru_stime
    return {"mode": mode, "cpu": cpu, "elapsed": done - began, "requests": counting.requests, "done": done,
            "errors": ERRORS["count"]}


@dataclass(frozen=True)
class Result:
    mode: str
    cpu: float
    elapsed: float
    requests: int
    noticed_after: float
    errors: int


def measure(jobs: int, seconds: float) -> tuple[list[Result], tuple[float, float]]:
    work = Path(tempfile.mkdtemp(prefix="sundial-tracking-bench-"))
    names = [f"tracked-{index}" for index in range(jobs)]
    (work / "names.json").write_text(json.dumps(names))
    with signals_raise(), ControlPlane(work / "k8s") as plane:  # SIGTERM too stops what it started
        plane.kubectl("create", "namespace", NAMESPACE)
        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(lambda chunk: plane.kubectl("create", "--validate=false", "-f", "-", input=jobs_list(chunk),
                                                        timeout=600),
                          [names[i:i + 100] for i in range(0, jobs, 100)]))
        children = {mode: subprocess.Popen(
            [sys.executable, "-m", "bench.launcher_tracking", "--child", mode, "--kubeconfig", str(plane.kubeconfig),
             "--names", str(work / "names.json"), "--started", str(work / f"{mode}.started")],
            stdout=subprocess.PIPE, text=True) for mode in ("watch", "poll")}
        try:
            while not all((work / f"{mode}.started").exists() for mode in children):
                time.sleep(0.2)
            load0 = os.getloadavg()[0]
            time.sleep(seconds)
            load1 = os.getloadavg()[0]
            plane.kubectl("delete", "jobs", "--all", "-n", NAMESPACE, "--wait=false", timeout=600)
            deleted = time.time()  # the last deletion accepted
            outputs = {mode: json.loads(process.communicate(timeout=600)[0]) for mode, process in children.items()}
        finally:
            for process in children.values():
                if process.poll() is None:
                    process.kill()
                    process.wait()
    shutil.rmtree(work, ignore_errors=True)
    results = [Result(mode, out["cpu"], out["elapsed"], out["requests"], max(0.0, out["done"] - deleted), out["errors"])
               for mode, out in outputs.items()]
    return results, (load0, load1)


def report(jobs: int, seconds: float, results: list[Result], load: tuple[float, float]) -> str:
    lines = [f"{jobs} running Jobs tracked by both at once for {seconds:.0f} s, then all deleted (figures to the"
             " moment the last deletion was seen);"
             f" 2 cores shared, 1-minute load average {load[0]:.1f} at start, {load[1]:.1f} at the deletion", "",
             "| tracking | CPU s (start-up apart) | CPU ms per Job per minute | API requests | requests/s |"
             " failed requests | last deletion seen after |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in results:
        lines.append(f"| {'shared watch (now)' if r.mode == 'watch' else 'a GET per Job, up to every 5 s (before)'}"
                     f" | {r.cpu:.1f} | {1000 * r.cpu / jobs / (r.elapsed / 60):.2f} | {r.requests} |"
                     f" {r.requests / r.elapsed:.1f} | {r.errors} | {r.noticed_after:.1f} s |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--child", choices=("watch", "poll"), help=argparse.SUPPRESS)
    parser.add_argument("--kubeconfig", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--names", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--started", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        names = json.loads(args.names.read_text())
        print(json.dumps(asyncio.run(child(args.child, args.kubeconfig, names, args.started))))
        return 0
    results, load = measure(args.jobs, args.seconds)
    print(report(args.jobs, args.seconds, results, load))
    return 0


if __name__ == "__main__":
    sys.exit(main())
