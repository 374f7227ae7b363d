"""What every handler and background loop of one operator process shares.

`main` builds a `Runtime` and hands it to kopf as the operator's memo; handlers reach it with
`runtime_of(memo)`. The background loops (status sync, drift repair) are started from the
startup handler and stopped from the cleanup handler, so they live exactly as long as kopf.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Final

import psycopg
import psycopg_pool
import redis.exceptions

from sundial.core.broker import Broker
from sundial.core.clock import Clock
from sundial.core.store import BackendUnavailable, Store
from sundial.operator.kube import KubeApi
from sundial.operator.options import OperatorOptions
from sundial.operator.peering import PeeringGate

log = logging.getLogger("sundial.operator")

# PostgreSQL or Redis not answering, as opposed to a bug in a query.
BACKEND_ERRORS: Final = (
    BackendUnavailable,
    psycopg.OperationalError,
    psycopg_pool.PoolTimeout,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    TimeoutError,
    OSError,
)


def describe_backend_error(exc: BaseException) -> str:
    where = "Redis" if isinstance(exc, redis.exceptions.RedisError) else "PostgreSQL"
    if isinstance(exc, BackendUnavailable):
        return str(exc)
    detail = str(exc).strip() or type(exc).__name__
    if isinstance(exc, TimeoutError | psycopg_pool.PoolTimeout):
        return f"PostgreSQL or Redis did not answer in time ({detail})"
    return f"{where} is unreachable: {detail}"


class JobLocks:
    """One asyncio lock per job id, so a handler and the drift repair never interleave on a job.

    The classic race without it: the repair reads "enabled, entry missing" while a suspend is
    half-way (entry gone, row not yet updated), and re-arms a job that was just suspended.
    """

    def __init__(self) -> None:
        self._locks: dict[str, asyncio.Lock] = {}
        self._users: dict[str, int] = {}

    @contextlib.asynccontextmanager
    async def hold(self, job_id: str) -> AsyncIterator[None]:
        lock = self._locks.setdefault(job_id, asyncio.Lock())
        self._users[job_id] = self._users.get(job_id, 0) + 1
        try:
            async with lock:
                yield
        finally:
            self._users[job_id] -= 1
            if not self._users[job_id]:  # nobody waiting: keep the table small
                del self._users[job_id]
                del self._locks[job_id]


Loop = Callable[[asyncio.Event], Coroutine[Any, Any, None]]


@dataclass
class Runtime:
    options: OperatorOptions
    store: Store
    broker: Broker
    kube: KubeApi
    clock: Clock
    identity: str
    gate: PeeringGate
    locks: JobLocks = field(default_factory=JobLocks)
    # uid -> resourceVersion at which start-up priming left each object complete (see
    # sundial.operator.prime); the handlers take an object found at that version as done.
    primed: dict[str, str] = field(default_factory=dict)
    # Filled in by the startup handler, once kopf's settings are known.
    loops: dict[str, Loop] = field(default_factory=dict)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: dict[str, asyncio.Task[None]] = field(default_factory=dict)

    def start_background(self) -> None:
        for name, loop in self.loops.items():
            self._tasks[name] = asyncio.create_task(loop(self._stop), name=f"sundial {name}")

    async def stop_background(self, grace: float = 10.0) -> None:
        self._stop.set()
        tasks = list(self._tasks.values())
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=grace)
        for task in pending:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def dead_loops(self) -> list[str]:
        """Background loops that ended although nobody asked them to."""
        if self._stop.is_set():
            return []
        return [name for name, task in self._tasks.items() if task.done()]


def runtime_of(memo: Any) -> Runtime:
    runtime = getattr(memo, "runtime", None)
    if not isinstance(runtime, Runtime):
        raise RuntimeError("the operator memo carries no Runtime: start through sundial.operator.main")
    return runtime
