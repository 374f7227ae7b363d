"""The consumer: takes runs off the queue, executes them, retries or records them.

Delivery is at-least-once: a message is acknowledged only after its end is committed to
PostgreSQL. While a run executes, or waits for its record to commit, its message is touched
every few seconds so no other worker reclaims it; a worker that dies stops touching, and after
the visibility timeout another worker takes the run over (`XAUTOCLAIM`) and runs the same
attempt again.

Overload: a scheduled run still waiting for a slot when its message expires (its job's next
slot, at least 5 s after its own, or its startingDeadlineSeconds) is recorded `skipped` as
missed instead of started, so a backlog drains at the cost of a record rather than making
every later run ever later. Runs waiting for PostgreSQL do not hold execution slots: the
consumer keeps taking work while the recorder's bounded buffer has room.

A run queued ahead of its slot (sundial.worker.ahead) is held, unacknowledged, until the slot;
just before it, its job is checked to be still armed, and a run whose job went is dropped.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import deque
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from prometheus_client import Counter

from sundial.core.aio import sleep_unless_stopped
from sundial.core.broker import Broker, Delivery
from sundial.core.clock import Clock, from_ms, to_ms
from sundial.core.config import QUEUE_GRACE_SECONDS
from sundial.core.keys import ShardKeys
from sundial.core.runs import MISSED_RUN_ERROR_PREFIX, RunMessage, RunStatus
from sundial.core.secrets import SecretRefError
from sundial.core.spec import ConcurrencyPolicy
from sundial.core.store import RunRecord, Store
from sundial.worker import metrics
from sundial.worker.ahead import HeldRuns, hold_until_ms
from sundial.worker.executor import Outcome, execute, timed_out
from sundial.worker.policy import PolicyCache
from sundial.worker.recorder import Recorder
from sundial.worker.secrets import MountedSecrets, bind_run_secrets, redact_outcome
from sundial.worker.targets.registry import EGRESS_GRANT, HANDED_BACK, RunContext, TargetRegistry

log = logging.getLogger(__name__)

# Runs taken ahead of a free slot: enough to keep the slots busy for about PREFETCH_SECONDS,
# at least PREFETCH_FACTOR per slot and at most MAX_PREFETCH_FACTOR. Short runs (the common
# case: a call to another service) then cost a queue read per hundreds of runs instead of per
# ten, while long runs are not hoarded by one worker while another sits idle.
PREFETCH_FACTOR = 2
MAX_PREFETCH_FACTOR = 50
PREFETCH_SECONDS = 0.05
# A redelivered run is checked against PostgreSQL before it runs again; a stalled database
# must not hold it, so after this long it runs (at least once, as redelivery promises).
FINISHED_CHECK_SECONDS = 2.0


# The longest the watchdog sleeps: a run that starts while it sleeps is looked at after this.
WATCHDOG_SECONDS = 0.1
# A lane whose targets never wait gives the event loop a turn after this many runs.
LANE_YIELD_EVERY = 64
# Runs held for their slot are checked to be still armed this long before it: a job deleted
# or suspended later than that may still start once.
ARMED_CHECK_MS = 50
# The recorder and the ticker's applies let released held runs start first, for at most this long.
STARTS_FIRST_SECONDS = 0.3
# A held run starts at the latest this long after it was read, whatever its slot says: a
# worker whose clock is far behind the ticker's must not hold runs longer than any lead.
MAX_HOLD_MS = 5_000
# The runs counter is told at most this often while runs keep coming (and whenever the last
# lane ends): with a thousand jobs, telling it per lane batch was one locked increment per run.
COUNT_RUNS_SECONDS = 1.0

class _Children:
    """A labelled counter's children by label values: `labels()` validates and locks on every
    call, a per-run cost; the children live as long as the metric anyway."""

    def __init__(self, metric: Counter) -> None:
        self._metric = metric
        self._children: dict[tuple[str, ...], Counter] = {}

    def get(self, *values: str) -> Counter:
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = self._metric.labels(*values)
        return child


_RUNS = _Children(metrics.RUNS)


@dataclass(eq=False, slots=True)
class InFlight:
    key: str
    delivery: Delivery
    message: RunMessage
    task: asyncio.Task[None] | None = None  # the lane executing it (or checking a redelivery), meanwhile
    cancel_reason: str | None = None
    hand_back: bool = False
    deadline: float = float("inf")  # event-loop time its timeout ends, while it executes
    timed_out: bool = False
    started: datetime | None = None
    start_recorded: bool = False


@dataclass
class Consumer:
    broker: Broker
    store: Store
    recorder: Recorder
    registry: TargetRegistry
    clock: Clock
    worker_id: str
    concurrency: int = 5
    visibility_timeout: float = 30.0
    queue_grace: float = QUEUE_GRACE_SECONDS
    # Every run is checked against its namespace's policy first (None: engine tests' workers only).
    policy: PolicyCache | None = None
    secrets: MountedSecrets | None = None
    in_flight: dict[str, InFlight] = field(default_factory=dict)
    processed: int = 0
    executing: int = 0
    waiting: int = 0
    # Exponentially weighted mean of recent execution times, which sizes the prefetch.
    mean_run_seconds: float = 1.0
    _ready: deque[InFlight] = field(default_factory=deque)
    # Runs read ahead of their slot, waiting for it; and those taken out to be started next.
    _held: HeldRuns[InFlight] = field(default_factory=HeldRuns)
    _releasing: list[tuple[float, InFlight]] = field(default_factory=list)
    _holder: asyncio.Task[None] | None = None
    _held_sooner: asyncio.Event = field(default_factory=asyncio.Event)
    # Runs that ended while a slot's held runs were starting: (run, outcome, started, ended).
    _unfinished: list[tuple[InFlight, Outcome, datetime, datetime]] = field(default_factory=list)
    _released_at: float | None = None  # event-loop time held runs were last released to start
    _lanes: set[asyncio.Task[None]] = field(default_factory=set)
    _slot_freed: asyncio.Event = field(default_factory=asyncio.Event)
    _background: set[asyncio.Task[None]] = field(default_factory=set)
    _executing: dict[str, InFlight] = field(default_factory=dict)
    _watchdog: asyncio.Task[None] | None = None
    # Runs finished since the runs counter was last told, by its labels: one locked increment
    # per job and batch instead of one per run; their durations likewise, by target.
    _run_counts: dict[tuple[str, str, str], int] = field(default_factory=dict)
    _durations: dict[str, metrics.Observations] = field(default_factory=dict)
    _counted_at: float = 0.0  # event-loop time the runs counter was last told
    _count_later: asyncio.TimerHandle | None = None

    def __post_init__(self) -> None:
        metrics.IN_FLIGHT.set_function(lambda: len(self.in_flight))

    @property
    def free_slots(self) -> int:
        """How many more runs to take from the queue now.

        `concurrency` targets execute at once; `prefetch` runs in all may be held, the rest
        waiting for a slot (saving a queue round trip per run); a run that finished executing only waits for its
        record to commit, in the recorder's bounded buffer, so a database that stays away
        long enough to fill it pushes back.
        """
        claimed = self.executing + self.waiting
        unrecorded_room = self.recorder.max_unrecorded - len(self.in_flight)
        return min(self.prefetch - claimed, unrecorded_room)

    def starting(self) -> bool:
        """Whether runs held for their slot are being started now (the recorder and the ticker's
        applies wait for them); never for long after their release, so a backlog that keeps the
        lanes busy does not hold back the records and fires."""
        return (bool(self._ready) and self._released_at is not None
                and asyncio.get_running_loop().time() - self._released_at < STARTS_FIRST_SECONDS)

    @property
    def prefetch(self) -> int:
        """How many runs this worker holds (executing or waiting for a slot) at most."""
        per_slot = PREFETCH_SECONDS / max(self.mean_run_seconds, 1e-6)
        return self.concurrency * round(min(max(per_slot, PREFETCH_FACTOR), MAX_PREFETCH_FACTOR))

    async def consume(self, shard: ShardKeys, stop: asyncio.Event) -> None:
        """Read new runs while there is room; the short block keeps shutdown prompt."""
        while not stop.is_set():
            if self.free_slots <= 0:
                await self.wait_for_room(stop)
                continue
            try:
                deliveries = await self.broker.read(shard, self.worker_id, self.free_slots, block_ms=500)
            except Exception:
                log.exception("reading the run queue failed; retrying")
                await asyncio.sleep(1.0)
                continue
            self.start_all(deliveries)

    async def reclaim_loop(self, shard: ShardKeys, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.reclaim_once(shard)
            await sleep_unless_stopped(stop, self.visibility_timeout / 2)

    async def reclaim_once(self, shard: ShardKeys) -> int:
        if self.free_slots <= 0:
            return 0
        try:
            deliveries = await self.broker.reclaim(
                shard, self.worker_id, round(self.visibility_timeout * 1000), self.free_slots
            )
        except Exception:
            log.exception("reclaiming abandoned runs failed")
            return 0
        metrics.RECLAIMED.inc(len(deliveries))
        self.start_all(deliveries)
        return len(deliveries)

    async def heartbeat(self) -> None:
        """Keep in-flight runs claimed, and stop the ones another fire replaced."""
        by_shard: dict[ShardKeys, list[str]] = {}
        for run in self.in_flight.values():
            by_shard.setdefault(run.delivery.shard, []).append(run.delivery.message_id)
        for shard, message_ids in by_shard.items():
            await self.broker.touch(shard, self.worker_id, message_ids)
        # Only Forbid and Replace read the concurrency claims, only Replace cancels.
        guarded = [run for run in self.in_flight.values()
                   if run.message.template.concurrency_policy is not ConcurrencyPolicy.ALLOW]
        runs = [(run.message.job_id, run.message.run_id) for run in guarded]
        until = to_ms(self.clock.now()) + round(self.visibility_timeout * 3000)
        await self.broker.extend_active(runs, until)
        replaceable = [(run.message.job_id, run.message.run_id) for run in guarded
                       if run.message.template.concurrency_policy is ConcurrencyPolicy.REPLACE]
        for run_id, reason in (await self.broker.cancel_requests(replaceable)).items():
            for run in self.in_flight.values():
                if run.message.run_id == run_id and run.cancel_reason is None:
                    # A run still waiting is recorded cancelled when a lane reaches it; one
                    # already finished only waits for its record, and stays as it ended.
                    run.cancel_reason = f"cancelled: replaced by run {reason} (concurrencyPolicy Replace)"
                    if run.key in self._executing and run.task is not None:
                        run.task.cancel()

    def start_all(self, deliveries: list[Delivery]) -> None:
        now_ms = self._now_ms()
        for delivery in deliveries:
            key = f"{delivery.shard.queue}/{delivery.message_id}"
            if key in self.in_flight:
                continue
            if delivery.message is None:
                self._spawn(self._drop_malformed(delivery))
                continue
            run = InFlight(key, delivery, delivery.message)
            self.in_flight[key] = run
            until = None if delivery.redelivered else hold_until_ms(delivery.message.scheduled_ms, now_ms,
                                                                      MAX_HOLD_MS)
            if until is not None:
                self._hold(until, run)
                continue
            self.waiting += 1  # counted now, not when a lane takes it, so the next read sees it
            if delivery.redelivered:
                run.task = self._spawn(self._check_redelivered(run))
            else:
                self._ready.append(run)
        self._add_lanes()

    async def wait_idle(self) -> None:
        """Return once every run taken has been recorded (or handed back, or given up)."""
        while self.in_flight:
            self._slot_freed.clear()
            await self._slot_freed.wait()
        self.count_runs()

    async def shutdown(self, grace: float) -> None:
        """Let runs finish within the grace period, then hand the rest back to the queue."""
        await self._hand_back_held()
        busy = [*self._lanes, *(run.task for run in self.in_flight.values() if run.task is not None)]
        if busy:
            await asyncio.wait(busy, timeout=grace)
        while self._ready:
            run = self._ready.popleft()
            self.waiting -= 1
            await self._hand_back(run)
            self._forget(run)
        for run in list(self.in_flight.values()):
            if run.task is not None:
                run.hand_back = True
                run.task.cancel(HANDED_BACK)
        await self.wait_idle()

    async def wait_for_room(self, stop: asyncio.Event | None = None) -> None:
        """Return once a run slot is free (or `stop` is set)."""
        while self.free_slots <= 0 and not (stop and stop.is_set()):
            self._slot_freed.clear()
            waiters = [asyncio.create_task(self._slot_freed.wait())]
            if stop is not None:
                waiters.append(asyncio.create_task(stop.wait()))
            _, pending = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()

    def _now_ms(self) -> float:
        return self.clock.now().timestamp() * 1000

    def _hold(self, until_ms: float, run: InFlight) -> None:
        first = self._held.next_ms()
        self._held.push(until_ms, run)
        if first is not None and until_ms < first:
            self._held_sooner.set()
        if self._holder is None or self._holder.done():
            self._holder = asyncio.create_task(self._release_held())

    async def _release_held(self) -> None:
        """Start held runs at their slot, not before, once their jobs were seen still armed."""
        while self._held:
            wait_ms = self._held.next_ms() or 0.0
            wait_ms -= ARMED_CHECK_MS + self._now_ms()
            if wait_ms > 0:
                await self._sleep_unless_sooner(wait_ms / 1000)
                continue
            self._releasing = self._held.take(self._now_ms() + ARMED_CHECK_MS)
            await self._drop_disarmed()
            while self._releasing:
                until = self._releasing[0][0]
                await self._sleep_until(until)
                start = 0
                while start < len(self._releasing) and self._releasing[start][0] <= until:
                    self._ready.append(self._releasing[start][1])
                    start += 1
                self.waiting += start
                del self._releasing[:start]
                self._released_at = asyncio.get_running_loop().time()
                self._add_lanes()

    async def _sleep_until(self, until_ms: float) -> None:
        """Sleep until this worker's clock reads `until_ms`; a timer may wake a little early."""
        for _ in range(1000):
            early_ms = until_ms - self._now_ms()
            if early_ms <= 0:
                return
            await asyncio.sleep(early_ms / 1000)

    async def _sleep_unless_sooner(self, seconds: float) -> None:
        """Sleep, unless a run that starts sooner than the first one held arrives meanwhile."""
        self._held_sooner.clear()
        await sleep_unless_stopped(self._held_sooner, seconds)

    async def _drop_disarmed(self) -> None:
        """Let go of the runs about to start whose job was deleted or suspended since they were queued."""
        by_shard: dict[ShardKeys, list[InFlight]] = {}
        for _, run in self._releasing:
            by_shard.setdefault(run.delivery.shard, []).append(run)
        gone: list[InFlight] = []
        try:
            for shard, runs in by_shard.items():
                armed = await self.broker.still_armed(shard, [run.message.job_id for run in runs])
                gone += [run for run, still in zip(runs, armed, strict=True) if not still]
        except Exception:
            # Started rather than lost: at least once, as a run already queued at its slot would be.
            log.exception("cannot check that %d held runs' jobs are still armed; starting them", len(self._releasing))
            return
        if not gone:
            return
        dropped = set(gone)
        self._releasing = [(until, run) for until, run in self._releasing if run not in dropped]
        log.info("dropping %d runs queued ahead of their slot: their jobs were deleted or suspended since", len(gone))
        try:
            await self.broker.ack([run.delivery for run in gone], [(run.message.job_id, run.message.run_id)
                                                                     for run in gone])
        except Exception:
            log.exception("could not let go of %d runs of deleted jobs; they are redelivered", len(gone))
        for run in gone:
            self._forget(run)

    async def _hand_back_held(self) -> None:
        if self._holder is not None:
            self._holder.cancel()
            await asyncio.gather(self._holder, return_exceptions=True)
        for run in [run for _, run in self._releasing] + self._held.take_all():
            await self._hand_back(run)
            self._forget(run)
        self._releasing = []

    def _spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    async def _drop_malformed(self, delivery: Delivery) -> None:
        log.error("dropping message %s: %s", delivery.message_id, delivery.error)
        await self.broker.ack([delivery], [])

    async def _check_redelivered(self, run: InFlight) -> None:
        """A run taken over from another worker may have finished there: ack it instead."""
        try:
            finished = await self._already_finished(run.message)
            if finished:
                await self.broker.ack([run.delivery], [])
        except asyncio.CancelledError:
            self.waiting -= 1
            if run.hand_back:
                await self._hand_back(run)
            self._forget(run)
            raise
        except Exception:
            log.exception("could not acknowledge finished run %s", run.message.run_id, extra=run_fields(run.message))
            finished = True
        run.task = None
        if finished:
            self.waiting -= 1
            self._forget(run)
            return
        self._ready.append(run)
        self._add_lanes()

    def _add_lanes(self) -> None:
        """Start lanes, up to `concurrency`, for runs waiting for one."""
        while self._ready and len(self._lanes) < self.concurrency:
            self._lanes.add(asyncio.create_task(self._lane()))

    async def _lane(self) -> None:
        """Run waiting runs one after another until none is left.

        A lane is one of the `concurrency` execution slots. It takes runs in turn rather than
        each run getting a task: a run whose target never waits (most are short) then costs
        no task, no future and no semaphore, and finishing it waits for nothing: its record
        is committed, and its message acknowledged, by the recorder's next batch.
        """
        lane = asyncio.current_task()
        assert lane is not None
        try:
            ran = 0
            while self._ready:
                run = self._ready.popleft()
                self.waiting -= 1
                await self._run(run, lane)
                ran += 1
                if ran % LANE_YIELD_EVERY == 0:
                    self._count_runs_now_and_then()
                    await asyncio.sleep(0)  # targets that never wait must not starve the loop
        finally:
            self._finish_deferred()
            self._lanes.discard(lane)
            self._count_runs_now_and_then()

    def _count_runs_now_and_then(self) -> None:
        """Tell the runs counter if it was not told for a while, else make sure it soon is."""
        loop = asyncio.get_running_loop()
        if loop.time() - self._counted_at >= COUNT_RUNS_SECONDS:
            self.count_runs()
        elif self._count_later is None and self._run_counts:
            self._count_later = loop.call_later(COUNT_RUNS_SECONDS, self.count_runs)

    def count_runs(self) -> None:
        """Add the runs finished since the last call to the runs counter, their durations to the
        duration histogram."""
        self._counted_at = asyncio.get_running_loop().time()
        if self._count_later is not None:
            self._count_later.cancel()
            self._count_later = None
        counts, self._run_counts = self._run_counts, {}
        for labels, runs in counts.items():
            _RUNS.get(*labels).inc(runs)
        for durations in self._durations.values():
            durations.flush()

    async def _run(self, run: InFlight, lane: asyncio.Task[None]) -> None:
        message = run.message
        started = self.clock.now()
        try:
            if message.expires_ms is not None and to_ms(started) > message.expires_ms:
                self._expire(run, started)
                return
            if run.cancel_reason is not None:
                self._finish(run, Outcome(RunStatus.CANCELLED, error=run.cancel_reason), started)
                return
            refusal = None if self.policy is None else self.policy.refusal(message)
            if refusal is not None:
                log.warning("run %s of %s/%s refused: %s", message.run_id, message.template.job.namespace,
                            message.template.job.name, refusal, extra=run_fields(message))
                metrics.REFUSED_RUNS.inc()
                self._finish(run, Outcome(RunStatus.FAILED, error=refusal), started)
                return
            if log.isEnabledFor(logging.INFO):
                log.info("run %s attempt %d of %s/%s starting (target %s)", message.run_id, message.attempt,
                         message.template.job.namespace, message.template.job.name, message.template.target,
                         extra=run_fields(message))
            self.executing += 1
            try:
                outcome = await self._execute(run, lane, started)
            finally:
                self.executing -= 1
                self._slot_freed.set()
            if self.starting():
                # The bookkeeping of its end waits for the slot's other starts (lateness is theirs).
                self._unfinished.append((run, outcome, started, self.clock.now()))
            else:
                self._finish(run, outcome, started)
        except asyncio.CancelledError:
            if run.hand_back:
                await self._hand_back(run)
            self._forget(run)
            raise
        except Exception:
            # The message stays unacknowledged and is redelivered after the visibility timeout.
            log.exception("run %s attempt %d could not be completed", message.run_id, message.attempt,
                          extra=run_fields(message))
            self._forget(run)

    def _expire(self, run: InFlight, now: datetime) -> None:
        """Record a scheduled run that waited past its deadline as missed, and let it go."""
        message = run.message
        job = message.template.job
        assert message.expires_ms is not None
        late = (to_ms(now) - (message.scheduled_ms or message.logical_ms)) / 1000
        metrics.MISSED_SLOTS.labels(job.namespace, job.name).inc()
        metrics.EXPIRED_RUNS.inc()
        record = RunRecord(
            run_id=message.run_id, job_id=message.job_id, logical_time=from_ms(message.logical_ms),
            scheduled_for=None if message.scheduled_ms is None else from_ms(message.scheduled_ms),
            trigger=message.trigger, status=RunStatus.SKIPPED, attempt=message.attempt, completed_at=now,
            worker=self.worker_id,
            error=f"{MISSED_RUN_ERROR_PREFIX} no worker was free to start it within {late:.1f}s of its slot"
                  f" (queue backlog; deadline {from_ms(message.expires_ms).isoformat()})",
        )
        self.recorder.finish(record, run.delivery, release_active=True, then=functools.partial(self._recorded, run))

    async def _execute(self, run: InFlight, lane: asyncio.Task[None], started: datetime) -> Outcome:
        message = run.message
        template = message.template
        ctx = RunContext(
            run_id=message.run_id, job_id=message.job_id, namespace=template.job.namespace,
            name=template.job.name, attempt=message.attempt, max_attempts=template.retry.attempts,
            scheduled_for=None if message.scheduled_ms is None else from_ms(message.scheduled_ms),
            trigger=message.trigger.value, worker=self.worker_id, extra=self._grants(template.job.namespace),
        )
        run.started = started
        run.task = lane
        run.deadline = asyncio.get_running_loop().time() + template.timeout_seconds
        self._executing[run.key] = run
        self._watch()
        try:
            if not template.uses_secrets:
                outcome = await execute(self.registry, ctx, template.target, template.params, None)
            else:
                outcome = await self._execute_with_secrets(ctx, template.target, template.params)
        except asyncio.CancelledError:
            if run.hand_back or (run.cancel_reason is None and not run.timed_out):
                raise
            lane.uncancel()  # a cancellation this consumer asked for and handled must not linger on the lane
            if run.timed_out:
                return timed_out(template.timeout_seconds)
            return Outcome(RunStatus.CANCELLED, error=run.cancel_reason)
        finally:
            self._executing.pop(run.key, None)
            run.task = None
        if (run.timed_out or run.cancel_reason is not None) and lane.cancelling():
            lane.uncancel()  # the target swallowed the cancellation; the lane's next run must not inherit it
        return outcome

    async def _execute_with_secrets(self, ctx: RunContext, target: str, params: dict[str, Any]) -> Outcome:
        """`execute`, with secretKeyRef params resolved just for the target and redacted from
        whatever comes back."""
        if self.secrets is None:
            return Outcome(RunStatus.FAILED, error="params use secretKeyRef, but this worker mounts no Secrets")
        try:
            resolved, values = self.secrets.resolve(params, ctx.namespace)
        except SecretRefError as exc:
            return Outcome(RunStatus.FAILED, error=str(exc))
        bind_run_secrets(values)
        return redact_outcome(await execute(self.registry, ctx, target, resolved, None), values)

    def _grants(self, namespace: str) -> Mapping[str, Any]:
        """What the namespace's policy grants the target beyond the worker's own settings."""
        if self.policy is None:
            return {}
        policy = self.policy.for_namespace(namespace)
        if not policy.allow_cidrs and not policy.allow_hosts:
            return {}
        return {EGRESS_GRANT: (policy.allow_cidrs, policy.allow_hosts)}

    def _watch(self) -> None:
        if self._watchdog is None or self._watchdog.done():
            self._watchdog = asyncio.create_task(self._enforce_timeouts())

    async def _enforce_timeouts(self) -> None:
        """One timer for every executing run (at most `concurrency`), instead of one per run.

        It also writes the start record of a run still executing when it wakes: a run that
        ends before that (most do) gets one row, its end, instead of a start and an end.
        """
        loop = asyncio.get_running_loop()
        while self._executing:
            # Runs already cancelled are not waited for again (a target may ignore cancellation).
            earliest = min((run.deadline for run in self._executing.values() if not run.timed_out),
                           default=float("inf"))
            await asyncio.sleep(min(max(earliest - loop.time(), 0.0), WATCHDOG_SECONDS))
            now = loop.time()
            for run in list(self._executing.values()):
                if not run.start_recorded and run.started is not None:
                    run.start_recorded = True
                    self.recorder.started(self._record(run.message, RunStatus.RUNNING, run.started))
                if run.deadline <= now and not run.timed_out and run.task is not None:
                    run.timed_out = True
                    run.task.cancel()

    def _finish_deferred(self) -> None:
        unfinished, self._unfinished = self._unfinished, []
        for run, outcome, started, ended in unfinished:
            self._finish(run, outcome, started, ended)

    def _finish(self, run: InFlight, outcome: Outcome, started: datetime, ended: datetime | None = None) -> None:
        message = run.message
        ended = ended or self.clock.now()
        seconds = (ended - started).total_seconds()
        self.mean_run_seconds += (seconds - self.mean_run_seconds) * 0.05
        template = message.template
        job = template.job
        durations = self._durations.get(template.target)
        if durations is None:
            durations = self._durations[template.target] = metrics.Observations(
                metrics.RUN_DURATION.labels(template.target))
        durations.add(seconds)
        key = (job.namespace, job.name, outcome.status.value)
        self._run_counts[key] = self._run_counts.get(key, 0) + 1
        retry = outcome.retryable and template.retry.should_retry(message.attempt)
        next_retry_at = None
        if retry:
            delay = template.retry.delay_after(message.attempt, outcome.retry_delay)
            next_retry_at = from_ms(to_ms(ended) + round(delay * 1000))
        record = self._record(
            message, outcome.status, started, ended=ended, output=outcome.output, error=outcome.error,
            duration_ms=round(seconds * 1000), next_retry_at=next_retry_at,
        )
        if next_retry_at is None:
            if log.isEnabledFor(logging.INFO):
                log.info("run %s attempt %d finished: %s", message.run_id, message.attempt, outcome.status.value,
                         extra=run_fields(message))
            self.recorder.finish(record, run.delivery, release_active=True,
                                 then=functools.partial(self._recorded, run))
            return
        if log.isEnabledFor(logging.INFO):
            log.info("run %s attempt %d finished: %s (retry at %s)", message.run_id, message.attempt,
                     outcome.status.value, next_retry_at.isoformat(), extra=run_fields(message))
        self._spawn(self._retry(run, record, ended, next_retry_at))

    async def _retry(self, run: InFlight, record: RunRecord, ended: datetime, next_retry_at: datetime) -> None:
        """Once the failed attempt is recorded, park the next one and acknowledge this one."""
        message = run.message
        template = message.template
        try:
            await self.recorder.finished(record, None, release_active=False)
            metrics.RETRIES.labels(template.job.namespace, template.job.name).inc()
            retry_message = message.next_attempt(to_ms(ended))
            due_ms = to_ms(next_retry_at)
            active_until = due_ms + round((template.timeout_seconds + self.queue_grace) * 1000)
            await self.broker.schedule_retry(run.delivery, retry_message, due_ms, active_until)
        except Exception:
            # The message stays unacknowledged and is redelivered after the visibility timeout.
            log.exception("run %s attempt %d could not be completed", message.run_id, message.attempt,
                          extra=run_fields(message))
        finally:
            self._forget(run)

    def _recorded(self, run: InFlight, error: BaseException | None) -> None:
        if error is not None:
            log.error("run %s attempt %d could not be completed (%s); it is redelivered", run.message.run_id,
                      run.message.attempt, error, extra=run_fields(run.message))
        self._forget(run)

    def _forget(self, run: InFlight) -> None:
        """The run no longer needs this worker: recorded, handed back or left to redelivery."""
        if self.in_flight.pop(run.key, None) is not None:
            self.processed += 1
        self._slot_freed.set()

    async def _already_finished(self, message: RunMessage) -> bool:
        try:
            async with asyncio.timeout(FINISHED_CHECK_SECONDS):
                status = await self.store.run_status(from_ms(message.logical_ms), message.run_id, message.attempt)
        except Exception:
            log.warning("cannot tell whether redelivered run %s finished (PostgreSQL unavailable); running it",
                        message.run_id, extra=run_fields(message))
            return False
        return status is not None and status.is_terminal

    async def _hand_back(self, run: InFlight) -> None:
        try:
            await self.broker.release(run.delivery)
            log.info("handed run %s back to the queue at shutdown", run.message.run_id,
                     extra=run_fields(run.message))
        except Exception:
            log.exception("could not hand run %s back; it is reclaimed after the visibility timeout",
                          run.message.run_id, extra=run_fields(run.message))

    def _record(self, message: RunMessage, status: RunStatus, started: datetime, *, ended: datetime | None = None,
                output: object = None, error: str | None = None, duration_ms: int | None = None,
                next_retry_at: datetime | None = None) -> RunRecord:
        return RunRecord(
            run_id=message.run_id,
            job_id=message.job_id,
            logical_time=_instant(message.logical_ms),
            scheduled_for=None if message.scheduled_ms is None else _instant(message.scheduled_ms),
            trigger=message.trigger,
            status=status,
            attempt=message.attempt,
            started_at=started,
            completed_at=ended,
            duration_ms=duration_ms,
            output=output,
            error=error,
            worker=self.worker_id,
            reason=message.reason or None,
            next_retry_at=next_retry_at,
        )


@functools.lru_cache(maxsize=8192)
def _instant(epoch_ms: int) -> datetime:
    """`from_ms`, shared by the runs of one slot: thousands of jobs may share each second's."""
    return from_ms(epoch_ms)


def run_fields(message: RunMessage) -> dict[str, object]:
    """What JsonFormatter adds to a log line about a run, so logs can be filtered by job or run."""
    job = message.template.job
    return {
        "job": f"{job.namespace}/{job.name}",
        "run_id": message.run_id,
        "slot": None if message.scheduled_ms is None else from_ms(message.scheduled_ms).isoformat(),
        "attempt": message.attempt,
    }
