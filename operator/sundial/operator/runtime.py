"""What every handler and background loop of one operator process shares.

`main` builds a `Runtime` and hands it to kopf as the operator's memo; handlers reach it with
`runtime_of(memo)`. The background loops (status sync, drift repair) are started from the
startup handler and stopped from the cleanup handler, so they live exactly as long as kopf.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Protocol

import psycopg
import psycopg_pool
import redis.exceptions

from sundial.core.broker import Broker
from sundial.core.clock import Clock
from sundial.core.store import BackendUnavailable, Store
from sundial.kube.api import KubeApi, ObjectRef
from sundial.operator.options import OperatorOptions
from sundial.operator.peering import PeeringGate

if TYPE_CHECKING:  # policies.py reads BACKEND_ERRORS from here
    from sundial.operator.policies import PolicyBook

log = logging.getLogger("sundial.operator")

# How long the background loops have to end on their own when the operator stops; then they
# are cancelled (a loop waiting on a hung backend would otherwise hold a SIGTERM for as long).
STOP_GRACE_SECONDS: Final = 3.0
# How long a deleted job's UID is remembered: far longer than any queue of events runs behind.
TOMBSTONE_SECONDS: Final = 3600.0

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

    @contextlib.asynccontextmanager
    async def hold_all(self, job_ids: Iterable[str]) -> AsyncIterator[None]:
        """`hold` for every one of `job_ids`, taken in one order so two callers never deadlock."""
        async with contextlib.AsyncExitStack() as stack:
            for job_id in sorted(set(job_ids)):
                await stack.enter_async_context(self.hold(job_id))
            yield

    def busy(self, job_id: str) -> bool:
        """Someone holds or waits for this job's lock."""
        return job_id in self._users

    @contextlib.asynccontextmanager
    async def hold_free(self, job_ids: Iterable[str]) -> AsyncIterator[list[str]]:
        """Hold the locks of those of `job_ids` nobody holds or waits for; yields their ids.

        Never waits: a batch must not stall behind one job a handler is busy with (that
        handler is acting on the job anyway).
        """
        free = [job_id for job_id in dict.fromkeys(job_ids) if not self.busy(job_id)]
        for job_id in free:
            lock = self._locks[job_id] = asyncio.Lock()
            self._users[job_id] = 1
            await lock.acquire()  # free and new: returns at once
        try:
            yield free
        finally:
            for job_id in free:
                self._locks[job_id].release()
                self._users[job_id] -= 1
                if not self._users[job_id]:  # as in `hold`: others may wait for it by now
                    del self._users[job_id]
                    del self._locks[job_id]


class Tombstones:
    """UIDs of jobs whose deletion has been seen, so that no late view of one arms it again.

    A view can be late: kopf's queue may hold an object's creation while the churn watch has
    already seen it deleted. UIDs are never reused, so a tombstone is never wrong; old ones
    are forgotten only to keep memory bounded.
    """

    def __init__(self, clock: Clock, keep_seconds: float = TOMBSTONE_SECONDS) -> None:
        self._clock = clock
        self._keep = keep_seconds
        self._at: dict[str, float] = {}

    def add(self, job_id: str) -> None:
        self._at.setdefault(job_id, self._clock.monotonic())

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._at

    def __len__(self) -> int:
        return len(self._at)

    def added_since(self, seconds: float, at_least: int) -> bool:
        """Whether at least `at_least` were added in the last `seconds`: a mass delete."""
        horizon = self._clock.monotonic() - seconds
        # Insertion order is time order: count back from the newest, stop at the answer.
        for count, at in enumerate(reversed(self._at.values()), start=1):
            if at <= horizon:
                return False
            if count >= at_least:
                return True
        return False

    def prune(self) -> None:
        horizon = self._clock.monotonic() - self._keep
        # Insertion order is time order: stop at the first one still young. The churn watch
        # prunes before every batch, ~100 a second in a mass delete: copying all the entries
        # (10,000 then) each time took ~9 % of the operator's CPU during the deletes.
        expired: list[str] = []
        for job_id, at in self._at.items():
            if at > horizon:
                break
            expired.append(job_id)
        for job_id in expired:
            del self._at[job_id]


Loop = Callable[[asyncio.Event], Coroutine[Any, Any, None]]


@dataclass(frozen=True)
class JobDeps:
    """What every part that arms or disarms jobs acts through, wired once by `Runtime`: the
    backends, the peering gate, the per-job locks and the shared memory of deletions and of
    generations armed, and the queue grace (the `SUNDIAL_QUEUE_GRACE_SECONDS` setting)."""

    store: Store
    broker: Broker
    kube: KubeApi
    gate: PeeringGate
    locks: JobLocks
    tombstones: Tombstones
    armed_generations: dict[str, int]
    clock: Clock
    queue_grace_seconds: float


class StatusReporter(Protocol):
    """Where the handlers hand the status fields they own (`StatusSync`, the one writer)."""

    def report(self, ref: ObjectRef, fields: Mapping[str, Any]) -> None: ...


class _NotStarted:
    def report(self, ref: ObjectRef, fields: Mapping[str, Any]) -> None:
        raise RuntimeError("no status sync yet: the startup handler sets it")


@dataclass
class Runtime:
    options: OperatorOptions
    store: Store
    broker: Broker
    kube: KubeApi
    clock: Clock
    identity: str
    gate: PeeringGate
    # Settings.queue_grace_seconds: how long a fired run's concurrency claim outlives its timeout.
    queue_grace_seconds: float
    locks: JobLocks = field(default_factory=JobLocks)
    tombstones: Tombstones = field(init=False)
    # uid -> the generation of the spec last armed (or disarmed, suspended) for it; dropped
    # with the job. A handler finding its generation here has nothing to arm.
    armed_generations: dict[str, int] = field(default_factory=dict)
    # Set by the startup handler, with the status sync.
    status: StatusReporter = field(default_factory=_NotStarted)
    # uid -> resourceVersion at which start-up priming left each object complete (see
    # sundial.operator.prime); the handlers take an object found at that version as done.
    primed: dict[str, str] = field(default_factory=dict)
    # Who may run what (TargetPolicies); admission reads it, its loop projects it into PostgreSQL.
    policy_book: PolicyBook | None = None
    # Filled in by the startup handler, once kopf's settings are known.
    loops: dict[str, Loop] = field(default_factory=dict)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: dict[str, asyncio.Task[None]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.tombstones = Tombstones(self.clock)

    @property
    def deps(self) -> JobDeps:
        return JobDeps(self.store, self.broker, self.kube, self.gate, self.locks, self.tombstones,
                       self.armed_generations, self.clock, self.queue_grace_seconds)

    def start_background(self) -> None:
        for name, loop in self.loops.items():
            self._tasks[name] = asyncio.create_task(loop(self._stop), name=f"sundial {name}")

    async def stop_background(self, grace: float = STOP_GRACE_SECONDS) -> None:
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
