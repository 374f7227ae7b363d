"""What every system in the side-by-side run shares: the services, the settings, the timing."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from bench.peers.figures import LatenessFigure, ThroughputFigure, Window


@dataclass(frozen=True)
class Run:
    """One side-by-side run: every system sees the same Redis, settings and timing."""

    redis_url: str
    database_url: str
    workdir: Path
    concurrency: int = 5
    # Slots of the first seconds measure process start-up, not the scheduler.
    warm_up_s: float = 3.0
    # How long after the window closes its last slots may still start before they count as missed.
    drain_s: float = 5.0
    # No-op throughput: how long each set of worker processes runs.
    throughput_s: float = 12.0
    # Sundial's PostgreSQL server, whose CPU (with its backends') is read beside the workers'.
    postgres_pid: int | None = None

    def window(self, started: float, seconds: float) -> Window:
        opens = started + self.warm_up_s
        return Window(round(opens * 1000), round((opens + seconds) * 1000))

    def worker_seconds(self, seconds: float) -> float:
        return self.warm_up_s + seconds + self.drain_s

    def log(self, name: str) -> Path:
        return self.workdir / f"{name}.log"


class System(Protocol):
    """A scheduler under test, driven through its own public API and real worker processes."""

    name: str

    def prepare(self) -> None:
        """Install what the system needs (idempotent); raise `Unavailable` if it cannot run here."""

    def versions(self) -> dict[str, str]: ...

    async def throughput(self, run: Run, processes: int) -> list[ThroughputFigure]:
        """One figure per way this system's throughput is measured (a peer has one)."""

    async def lateness(self, run: Run, schedules: int, seconds: float, processes: int) -> LatenessFigure: ...


class Unavailable(RuntimeError):
    """A system's runtime (node, npm, a package) is missing and cannot be installed here."""


async def run_for(processes: list[subprocess.Popen[bytes]], logs: list[Path], ready_files: list[Path],
                  seconds: float, what: str, start_timeout: float = 120) -> float:
    """Let processes run `seconds` once all are ready, then SIGTERM them; return when all were ready.

    Each process touches its ready file when its worker is connected and writes its figures on
    SIGTERM; one that exits early or fails is an error showing its log.
    """
    deadline = time.monotonic() + start_timeout
    while not all(f.exists() for f in ready_files):
        _check_running(processes, logs, what)
        if time.monotonic() > deadline:
            _kill(processes)
            raise RuntimeError(f"{what} not ready within {start_timeout:g}s")
        await asyncio.sleep(0.05)
    ready_at = time.time()
    await asyncio.sleep(seconds)
    _check_running(processes, logs, what)
    for process in processes:
        process.send_signal(signal.SIGTERM)
    for process, log in zip(processes, logs, strict=True):
        try:
            await asyncio.to_thread(process.wait, 60)
        except subprocess.TimeoutExpired:
            _kill(processes)
            raise RuntimeError(f"{what} did not stop within 60s of SIGTERM") from None
        if process.returncode != 0:
            raise RuntimeError(f"{what} exited with {process.returncode}:\n{log_tail(log)}")
    return ready_at


def _check_running(processes: list[subprocess.Popen[bytes]], logs: list[Path], what: str) -> None:
    for process, log in zip(processes, logs, strict=True):
        if process.poll() is not None:
            _kill(processes)
            raise RuntimeError(f"{what} exited early with {process.returncode}:\n{log_tail(log)}")


def _kill(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            process.wait()


def log_tail(log: Path) -> str:
    return log.read_text(errors="replace")[-3000:] if log.exists() else "(no log)"
