"""Real worker processes, faults done to them and to the services, and the count of what it cost.

Every chaos test runs per-second jobs whose target writes each execution to a ledger
(`tests.chaos.ledger`), does something bad, lets the system recover, and then counts, per
(job, slot) in a window: executions in the ledger (0 = lost, 2+ = duplicate), the row in
PostgreSQL, and how late the slots after the fault started. Figures are printed one line per
fault (`make chaos` shows them) and appended to `$SUNDIAL_CHAOS_REPORT` when it is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sundial.core.broker import Broker
from sundial.core.clock import SYSTEM_CLOCK, to_ms
from sundial.core.keys import Keyspace
from sundial.core.runs import JobRef
from sundial.core.store import Store
from tests.chaos.ledger import LEDGER_ENV
from tests.integration.engine import armed

WORKER = str(Path(sys.executable).with_name("sundial-worker"))
REPO = Path(__file__).resolve().parents[2]


@dataclass
class Fleet:
    """Named `sundial-worker` processes sharing one PostgreSQL, one Redis and one ledger."""

    database_url: str
    redis_url: str
    keyspace: Keyspace
    root: Path
    common_env: dict[str, str] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    kills: list[tuple[str, float]] = field(default_factory=list)  # (worker, wall time of its SIGKILL)
    starts: list[tuple[str, float]] = field(default_factory=list)  # (worker, wall time it was started)

    @property
    def ledger(self) -> Path:
        return self.root / "ledger.txt"

    def start(self, name: str, **env: str) -> subprocess.Popen[bytes]:
        environment = {
            **os.environ, "DATABASE_URL": self.database_url, "REDIS_URL": self.redis_url,
            "SUNDIAL_REDIS_PREFIX": self.keyspace.prefix, "SUNDIAL_REDIS_SHARDS": str(self.keyspace.shards),
            "SUNDIAL_WORKER_ID": name, "SUNDIAL_METRICS_PORT": "0", "SUNDIAL_POLICY_DEFAULT_TARGETS": "*",
            "SUNDIAL_TARGET_MODULES": '["tests.chaos.ledger"]', LEDGER_ENV: str(self.ledger),
            "PYTHONPATH": str(REPO), "SUNDIAL_VISIBILITY_TIMEOUT_SECONDS": "3",
            **self.common_env, **env,
        }
        log = (self.root / f"{name}.log").open("ab")
        process = subprocess.Popen([WORKER], env=environment, stdout=log, stderr=subprocess.STDOUT)
        self.processes[name] = process
        self.starts.append((name, time.time()))
        return process

    async def start_firing(self, names: list[str], jobs: int, **env: str) -> None:
        """Start these workers and return once each of the `jobs` per-second jobs ran about 3 times."""
        for name in names:
            self.start(name, **env)

        async def running() -> bool:
            return len(executions(self.ledger)) >= jobs * 3

        await wait_for(running, 60, "the jobs to run")

    def kill(self, name: str) -> None:
        """SIGKILL, as the OOM killer does: no clean-up of any kind."""
        process = self.processes.pop(name)
        process.kill()
        self.kills.append((name, time.time()))
        process.wait(10)

    def live(self) -> list[str]:
        return [name for name, process in self.processes.items() if process.poll() is None]

    def stop_all(self, grace: float = 20.0) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for process in self.processes.values():
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        self.processes.clear()

    def start_up_seconds(self) -> tuple[list[float], int]:
        """Per start that got as far, seconds until the worker logged it was serving; and how
        many starts were killed before that. Under a heavy load a start can outlast the kill
        interval of the soak, and then no worker serves at all."""
        served: dict[str, list[float]] = {}
        for path in self.root.glob("w*.log"):
            for line in path.read_text(errors="replace").splitlines():
                if " serving targets: " in line:
                    # The log's local time, as logging writes it.
                    at = time.mktime(time.strptime(line[:19], "%Y-%m-%d %H:%M:%S")) + int(line[20:23]) / 1000
                    served.setdefault(path.stem, []).append(at)
        seconds, killed_first = [], 0
        for name, started in self.starts:
            later = [at for at in served.get(name, []) if at >= started]
            next_start = min((at for other, at in self.starts if other == name and at > started), default=None)
            if later and (next_start is None or later[0] < next_start):
                seconds.append(later[0] - started)
            else:
                killed_first += 1
        return sorted(seconds), killed_first

    def logs(self) -> str:
        return "\n".join(f"--- {path.name}\n{path.read_text(errors='replace')[-4000:]}"
                         for path in sorted(self.root.glob("*.log")))


async def wait_for(predicate: Callable[[], Awaitable[bool]], seconds: float, what: str,
                   interval: float = 0.1) -> None:
    deadline = time.monotonic() + seconds
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds}s waiting for {what}")
        await asyncio.sleep(interval)


async def per_second_jobs(broker: Broker, store: Store, count: int, **fields: Any) -> list[JobRef]:
    jobs = []
    for index in range(count):
        job, _ = await armed(broker, store, SYSTEM_CLOCK.now(), name=f"chaos{index}", schedule="* * * * * *",
                             target="chaos-ledger", **fields)
        jobs.append(job)
    return jobs


@dataclass(frozen=True)
class Figures:
    fault: str
    slots: int
    lost: int
    duplicates: int  # executed twice though delivered once: two fires of one slot
    not_terminal: int
    max_lateness_s: float
    recovery_s: float
    notes: str = ""
    # Executed again after the worker running it was killed: at-least-once delivery, by design.
    redelivered: int = 0

    def line(self) -> str:
        return (f"CHAOS {self.fault}: slots={self.slots} lost={self.lost} duplicates={self.duplicates} "
                f"re-executed_after_kill={self.redelivered} "
                f"not_terminal={self.not_terminal} max_lateness_s={self.max_lateness_s:.2f} "
                f"recovery_s={self.recovery_s:.2f} {self.notes}").rstrip()


def executions(ledger: Path) -> dict[str, list[tuple[str, float]]]:
    """(worker, wall time) of each execution of attempt 1, per run id (retries are counted apart)."""
    seen: dict[str, list[tuple[str, float]]] = {}
    if ledger.exists():
        for line in ledger.read_text().splitlines():
            run_id, attempt, worker, at = line.split(" ")
            if attempt == "1":
                seen.setdefault(run_id, []).append((worker, float(at)))
    return seen


def killed_while_running(runs: list[tuple[str, float]], kills: list[tuple[str, float]],
                         window: float = 10.0) -> bool:
    """Whether every execution but the last was on a worker SIGKILLed soon after it: the run was
    redelivered because its worker died before committing it (at-least-once, by design)."""
    return all(any(name == worker and at <= killed <= at + window for name, killed in kills)
               for worker, at in sorted(runs, key=lambda run: run[1])[:-1])


def slots_between(start: datetime, end: datetime) -> list[int]:
    """Every whole second in [start, end], as epoch ms (the slots of `* * * * * *`)."""
    first = (to_ms(start) // 1000 + 1) * 1000
    return list(range(first, to_ms(end) // 1000 * 1000 + 1, 1000))


# The slots (epoch ms) of a job in the window being counted.
SlotsOf = Callable[[JobRef], list[int]]


def every_n_seconds(start: datetime, end: datetime, offsets: dict[str, int], every: int) -> SlotsOf:
    """The slots of jobs firing every `every` seconds at second `offsets[job_id]` of each period
    (`<offset>/<every> * * * * *`)."""
    seconds = slots_between(start, end)

    def slots_of(job: JobRef) -> list[int]:
        return [slot for slot in seconds if (slot // 1000) % 60 % every == offsets[job.job_id]]

    return slots_of


async def account(
    store: Store, ledger: Path, jobs: list[JobRef], start: datetime, end: datetime, *, fault: str,
    fault_at: datetime | None = None, notes: str = "", kills: list[tuple[str, float]] | None = None,
    slots_of: SlotsOf | None = None, evidence: Path | None = None,
) -> tuple[Figures, dict[str, Any]]:
    """Count what the fault cost for the `jobs` over their slots in [start, end] (every second
    unless `slots_of` says otherwise).

    recovery_s: from the fault to the first slot after it whose run started on time again
    (within one second of its slot) for every job.
    """
    counts = executions(ledger)
    seconds = slots_between(start, end)
    rows = await _rows(store, jobs, start - timedelta(seconds=1), end + timedelta(seconds=1))
    lost: list[str] = []
    duplicates: list[str] = []
    not_terminal: list[str] = []
    redelivered: list[str] = []
    lateness: dict[int, float] = {}
    total = 0
    for job in jobs:
        slots = slots_of(job) if slots_of else seconds
        total += len(slots)
        for slot in slots:
            run_id = f"{job.job_id}:{slot}"
            runs = counts.get(run_id, [])
            row = rows.get(run_id)
            if not runs:
                lost.append(run_id)
            elif len(runs) > 1 and killed_while_running(runs, kills or []):
                redelivered.append(run_id)
            elif len(runs) > 1:
                duplicates.append(run_id)
            if row is None or row["status"] not in TERMINAL:
                not_terminal.append(run_id)
            if row is not None and row["started_at"] is not None:
                late = (row["started_at"] - row["scheduled_for"]).total_seconds()
                lateness[slot] = max(lateness.get(slot, 0.0), late)
    recovery = _recovery_seconds(lateness, fault_at)
    figures = Figures(fault, total, len(lost), len(duplicates), len(not_terminal),
                      max(lateness.values(), default=0.0), recovery, notes, len(redelivered))
    report(figures)
    if evidence is not None:
        wrong = sorted(set(lost) | set(duplicates) | set(not_terminal))
        write_evidence(evidence, {
            "figures": asdict(figures), "lost": lost, "duplicates": duplicates, "not_terminal": not_terminal,
            "kills": kills or [], "runs": {run_id: {"executions": counts.get(run_id, []), "row": rows.get(run_id)}
                                          for run_id in wrong},
        })
    return figures, {"lost": lost[:20], "duplicates": duplicates[:20], "not_terminal": not_terminal[:20]}


def write_evidence(path: Path, evidence: dict[str, Any]) -> None:
    """Every slot that went wrong, with its row and executions: what a failed soak is read from."""
    path.write_text(json.dumps(evidence, default=str, indent=1))


async def wait_until_recorded(store: Store, jobs: list[JobRef], start: datetime, end: datetime,
                              seconds: float, slots_of: SlotsOf | None = None) -> None:
    """Give workers that fell behind (a loaded machine, a backlog after a fault) time to commit
    every run of the window; the accounting that follows says what is still missing."""
    expected = (sum(len(slots_of(job)) for job in jobs) if slots_of
                else len(slots_between(start, end)) * len(jobs))
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        rows = await _rows(store, jobs, start, end)
        if sum(1 for row in rows.values() if row["status"] in TERMINAL) >= expected:
            return
        await asyncio.sleep(1.0)


TERMINAL = ("success", "failed", "timed_out", "cancelled", "skipped")


def _recovery_seconds(lateness: dict[int, float], fault_at: datetime | None) -> float:
    if fault_at is None:
        return 0.0
    fault_ms = to_ms(fault_at)
    after = sorted(slot for slot in lateness if slot >= fault_ms)
    for slot in after:
        if lateness[slot] <= 1.0:
            return (slot - fault_ms) / 1000
    return float("inf")


async def _rows(store: Store, jobs: list[JobRef], start: datetime, end: datetime) -> dict[str, dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    for job in jobs:
        for row in await store.runs(job.job_id, limit=100_000):
            if row["scheduled_for"] is not None and start <= row["scheduled_for"] <= end and row["attempt"] == 1:
                rows[row["run_id"]] = row
    return rows


def process_tree(root_pid: int) -> list[int]:
    """`root_pid` and every descendant: PostgreSQL's backends each lead their own session, so a
    signal to the postmaster's process group does not reach them."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            pid_text, rest = stat.read_text().split(" (", 1)
            ppid = int(rest.rsplit(") ", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(pid_text))
    tree, todo = [], [root_pid]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def signal_tree(root_pid: int, signum: int) -> None:
    for pid in process_tree(root_pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)


def report(figures: Figures) -> None:
    print(figures.line(), flush=True)
    target = os.environ.get("SUNDIAL_CHAOS_REPORT")
    if target:
        with open(target, "a") as out:
            out.write(json.dumps(asdict(figures)) + "\n")


def main(argv: list[str] | None = None) -> None:
    """`python -m tests.chaos.harness REPORT.jsonl`: the figures of a chaos run, one line a fault."""
    args = sys.argv[1:] if argv is None else argv
    path = Path(args[0])
    print(f"\nchaos figures (load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} at the end):")
    if path.exists():
        for line in path.read_text().splitlines():
            print(" ", Figures(**json.loads(line)).line())


if __name__ == "__main__":
    main()
