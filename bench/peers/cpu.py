"""Where the CPU went during a throughput window: each worker process, Redis and PostgreSQL.

The window of a throughput figure is only known afterwards (it opens once every process has
recorded its first run), so the counters are sampled every quarter second while the workers
run, and the samples nearest the window's edges give the CPU seconds per second inside it.
On a shared machine the rate mostly says how much CPU the workers were given; the worker CPU
per recorded run is the steadier figure.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import redis.asyncio as aioredis

from bench.common import process_cpu_seconds, process_tree_cpu_seconds, redis_cpu_seconds

SAMPLE_SECONDS = 0.25


@dataclass(frozen=True)
class CpuShare:
    """CPU seconds per second over a window (1.00 = one core busy)."""

    workers: tuple[float, ...]
    redis: float
    postgres: float | None  # None: the system stores nothing in PostgreSQL

    def ceiling(self, cores: int) -> str:
        """What ran out, read from the shares; "none" means the machine's other work or waiting."""
        used = sum(self.workers) + self.redis + (self.postgres or 0.0)
        if self.workers and max(self.workers) >= 0.85:
            return "a worker process used its whole core"
        if self.redis >= 0.85:
            return "Redis's one thread used its whole core"
        if used >= 0.85 * cores:
            return f"the {cores} cores (workers, Redis and PostgreSQL used {used:.2f})"
        return f"none of these (they used {used:.2f} of {cores} cores; the rest went to other work or waiting)"


@dataclass(frozen=True)
class _Sample:
    at_ms: float
    workers: tuple[float, ...]
    redis: float
    postgres: float


@dataclass
class CpuSampler:
    pids: Sequence[int]
    redis_url: str
    postgres_pid: int | None
    samples: list[_Sample] | None = None

    @contextlib.asynccontextmanager
    async def sampling(self) -> AsyncIterator[CpuSampler]:
        self.samples = []
        client = aioredis.Redis.from_url(self.redis_url)
        task = asyncio.create_task(self._sample_forever(client))
        try:
            yield self
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await client.aclose()

    async def _sample_forever(self, client: aioredis.Redis) -> None:
        assert self.samples is not None
        while True:
            try:
                redis_cpu = await redis_cpu_seconds(client)
                workers = tuple(process_cpu_seconds(pid) for pid in self.pids)
            except (OSError, ValueError):
                return  # a worker exited: the window is over
            postgres = process_tree_cpu_seconds(self.postgres_pid) if self.postgres_pid else 0.0
            self.samples.append(_Sample(time.time() * 1000, workers, redis_cpu, postgres))
            await asyncio.sleep(SAMPLE_SECONDS)

    def share(self, opens_ms: float, closes_ms: float) -> CpuShare | None:
        """CPU per second between the samples closest inside [opens_ms, closes_ms]."""
        inside = [s for s in self.samples or [] if opens_ms <= s.at_ms <= closes_ms]
        if len(inside) < 2:
            return None
        first, last = inside[0], inside[-1]
        seconds = (last.at_ms - first.at_ms) / 1000
        return CpuShare(
            workers=tuple((b - a) / seconds for a, b in zip(first.workers, last.workers, strict=True)),
            redis=(last.redis - first.redis) / seconds,
            postgres=(last.postgres - first.postgres) / seconds if self.postgres_pid else None,
        )
