"""A peer driven through a small script of its own language, one process per worker.

Each peer's script has the same modes: `fill` (queue no-op jobs), `drain` (work them for a
while, write when each was recorded), optionally `schedule` (create the every-second schedules
before any worker runs), and `work` (run the schedules, write each run's slot and start).
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import uuid
from pathlib import Path

from bench.peers.cpu import CpuSampler
from bench.peers.figures import (
    LatenessFigure,
    Start,
    ThroughputFigure,
    behind_at_stop,
    lateness_figure,
    throughput_figure,
)
from bench.peers.run import Run, run_for


class ScriptedPeer:
    name: str
    # Schedules are created by a `schedule` step (BullMQ) rather than held by every worker (arq).
    schedules_before_workers: bool

    def __init__(self, command: list[str], fill: int) -> None:
        self.command = command
        # Throughput drains a queue filled with this many no-op jobs beforehand, so adding them
        # does not compete with the workers for the cores.
        self.fill = fill

    async def throughput(self, run: Run, processes: int) -> list[ThroughputFigure]:
        queue = self._queue("throughput")
        self._step(run, "fill", "--queue", queue, "--jobs", str(self.fill))
        sampler = CpuSampler([], run.redis_url, None)
        outputs, _ = await self._workers(run, f"throughput-{processes}", processes, run.throughput_s,
                                         "drain", "--queue", queue, sampler=sampler)
        completions = [json.loads(out.read_text())["completions"] for out in outputs]
        figure = throughput_figure(self.name, completions, run.concurrency, warm_up_s=2.0,
                                   note=f"queue filled with {self.fill} jobs first")
        return [dataclasses.replace(figure, cpu=sampler.share(figure.opens_ms, figure.closes_ms))]

    async def lateness(self, run: Run, schedules: int, seconds: float, processes: int) -> LatenessFigure:
        queue = self._queue("schedules")
        if self.schedules_before_workers:
            self._step(run, "schedule", "--queue", queue, "--schedules", str(schedules))
        outputs, started = await self._workers(run, f"lateness-{schedules}", processes, run.worker_seconds(seconds),
                                               "work", "--queue", queue, "--schedules", str(schedules))
        starts = [Start(str(schedule), int(slot), float(start))
                  for out in outputs for schedule, slot, start in json.loads(out.read_text())["starts"]]
        stopped_ms = (started + run.worker_seconds(seconds)) * 1000
        return lateness_figure(self.name, [f"s{i}" for i in range(schedules)], starts,
                               run.window(started, seconds), processes,
                               note=behind_at_stop(starts, stopped_ms, run.drain_s))

    def _queue(self, scenario: str) -> str:
        return f"{self.name.lower()}-{scenario}-{uuid.uuid4().hex[:8]}"

    def _spawn(self, args: list[str], log: Path) -> subprocess.Popen[bytes]:
        return subprocess.Popen([*self.command, *args], stdout=log.open("ab"), stderr=subprocess.STDOUT)

    def _step(self, run: Run, mode: str, *args: str) -> None:
        result = subprocess.run([*self.command, mode, "--redis", run.redis_url, *args],
                                capture_output=True, text=True, timeout=600)
        if result.returncode != 0:
            raise RuntimeError(f"{self.name} {mode} failed: {result.stderr.strip()[-2000:]}")

    async def _workers(self, run: Run, scenario: str, processes: int, seconds: float, mode: str,
                       *args: str, sampler: CpuSampler | None = None) -> tuple[list[Path], float]:
        """Run `processes` workers for `seconds` once all are ready; return their output files and when."""
        name = f"{self.name.lower()}-{scenario}-{uuid.uuid4().hex[:6]}"
        outputs = [run.workdir / f"{name}-{i}.json" for i in range(processes)]
        logs = [run.log(f"{name}-{i}") for i in range(processes)]
        workers = [self._spawn([mode, "--redis", run.redis_url, *args, "--concurrency", str(run.concurrency),
                                "--out", str(out)], log)
                   for out, log in zip(outputs, logs, strict=True)]
        ready_files = [out.with_name(f"{out.name}.ready") for out in outputs]
        if sampler is None:
            return outputs, await run_for(workers, logs, ready_files, seconds, f"{self.name} workers")
        sampler.pids = [worker.pid for worker in workers]
        async with sampler.sampling():
            ready_at = await run_for(workers, logs, ready_files, seconds, f"{self.name} workers")
        return outputs, ready_at
