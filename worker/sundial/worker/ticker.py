"""The ticker: runs in every worker replica and fires due cron entries exactly once per slot.

Each pass, per shard: promote due retries, lease a batch of due entries (one script call) and
read what they are planned from (one more), plan each with the pure `plan_fires` (missed-run
policy, deadline, cap), then, at the slot (runs of concurrencyPolicy Allow `fire_ahead` before
it: sundial.worker.ahead), apply a batch of plans atomically in Redis with one script call; a
plan whose entry moved on meanwhile (another ticker won, or the operator re-armed it) is a
no-op. Entries due within the look-ahead are claimed and planned before they are applied, so
only the apply is left when the time comes. Jobs that share a plan without jitter share its
planning: `plan_fires` runs once per distinct (plan, slot, instant), not once per job. Slots
fired together (`fire_together`) begin on each job's own phase (`stagger_plan`), so jobs armed
together spread their applies over the seconds instead of crowding every other one. The loop
sleeps in-process until the next due time, never through a blocking Redis command, whose
timeouts Redis only checks `hz` times a second.

Firing never waits for PostgreSQL: fire records go to the recorder, which writes them when
the database answers (see recorder.py).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sundial.core.aio import sleep_unless_stopped
from sundial.core.broker import Broker, Claim, DueEntry, Entry, PlanCommand, QueueLimits
from sundial.core.clock import Clock, from_ms, to_ms
from sundial.core.keys import ShardKeys, run_id_for_slot
from sundial.core.policies import JitteredSchedule, never_to_none, plan_schedule, planning_deadline, with_dst
from sundial.core.runs import EntryPlan, RunStatus, Trigger, parse_template
from sundial.core.schedule import (
    FirePlan,
    Schedule,
    fire_together,
    job_phase,
    parse_schedule,
    plan_fires,
    staggered_group,
)
from sundial.core.store import BufferedSlot, FireRecord, RunRecord, Store
from sundial.worker import metrics
from sundial.worker.ahead import after_starts, apply_at_ms, queued_ahead
from sundial.worker.recorder import Recorder

log = logging.getLogger(__name__)

# How long a claimed entry stays leased past the moment it is due. Short, so a ticker that dies
# holding leases delays its entries by about this much (well within the on-time grace); the
# lease is renewed while the ticker still waits for a slot, and the grace of a slot held by a
# lease that ran out counts from the lease's end (`plan_fires(claimable_since=...)`).
CLAIM_LEASE_MS = 2_000
# Without a recorder (a ticker alone, as in tests) fires are written inline, never for longer.
RECORD_TIMEOUT_SECONDS = 5.0
# ... and a fire whose job row another writer held is written again after this long.
HELD_ROW_RETRY_SECONDS = 0.01
MAX_BATCHES_PER_PASS = 20
# Batches applied at once when many entries share a slot: this process packs the next batch's
# call while Redis runs the one before (each script still runs atomically, one after another),
# so the last entries of a crowded second wait for one of the two, not for both in turn.
APPLIES_IN_FLIGHT = 4
# The most entries one APPLY_PLANS call applies (the claims stay `batch` a call). A script holds
# Redis for the whole of its run, and the consumers' reads and acks wait behind the scripts queued
# before them: at 10,000 every-second jobs a call of 500 entries, both slots of each, held Redis
# 25-85 ms, four in flight per ticker. Calls of 250 let the reads through sooner (p99 lower in three
# pairs out of three); calls of 100 made a pass too slow to fire on time (docs/performance.md,
# "Twenty-second session").
APPLY_CHUNK = 250
# Jobs whose per-job metric labels (namespace, name) are remembered: read only when a slot is
# missed or skipped, which under overload happens to the same jobs every second.
LABELS_KEPT = 50_000
# Applies queued ahead wait at most this long for a crowded slot's held runs to start.
STARTS_FIRST_SECONDS = 0.2


@dataclass(frozen=True)
class TickResult:
    fired: int
    sleep_seconds: float


class _MemoSchedule:
    """A schedule that remembers its last answers: jobs sharing a schedule share their slots.

    Thousands of jobs on "every minute" ask for the same next slot from the same instant; the
    cron walk (with its DST checks) is the ticker's largest per-fire cost, so it runs once.
    """

    def __init__(self, schedule: Schedule, size: int = 64) -> None:
        self._schedule = schedule
        self._size = size
        self._answers: OrderedDict[datetime, datetime] = OrderedDict()
        self.expression = schedule.expression
        self.zone = schedule.zone

    def next_after(self, after: datetime) -> datetime:
        hit = self._answers.get(after)
        if hit is None:
            hit = self._answers[after] = self._schedule.next_after(after)
            if len(self._answers) > self._size:
                self._answers.popitem(last=False)
        return hit


class ScheduleCache:
    """Parsed schedules by entry plan, so a busy ticker does not re-parse cron every slot."""

    def __init__(self, size: int = 50_000) -> None:
        self._size = size
        self._items: OrderedDict[str, tuple[EntryPlan, Schedule]] = OrderedDict()

    def get(self, raw_plan: str) -> tuple[EntryPlan, Schedule]:
        hit = self._items.get(raw_plan)
        if hit is not None:
            self._items.move_to_end(raw_plan)
            return hit
        plan = EntryPlan.from_json(raw_plan)
        parsed = with_dst(parse_schedule(plan.schedule, plan.time_zone), plan.dst_gap, plan.dst_repeated_hour)
        item: tuple[EntryPlan, Schedule] = (plan, _MemoSchedule(parsed))
        self._items[raw_plan] = item
        if len(self._items) > self._size:
            self._items.popitem(last=False)
        return item


class Ticker:
    def __init__(
        self,
        broker: Broker,
        store: Store,
        clock: Clock,
        *,
        batch: int = 500,
        max_sleep: float = 0.25,
        on_time_grace: timedelta = timedelta(seconds=5),
        lookahead: timedelta = timedelta(0),
        fire_ahead: timedelta = timedelta(0),
        fire_together: timedelta = timedelta(0),
        recorder: Recorder | None = None,
        limits: QueueLimits | None = None,
        starting: Callable[[], bool] | None = None,
    ) -> None:
        self.broker = broker
        self.store = store
        self.clock = clock
        self.batch = batch
        self.max_sleep = max_sleep
        self.on_time_grace = on_time_grace
        self.lookahead = lookahead
        self.fire_ahead_ms = _millis(fire_ahead)
        # Runs queued ahead (concurrencyPolicy Allow) also take the slots that follow within this
        # long in the same apply (`fire_together`); 0: one slot per apply.
        self.together_window = fire_together if fire_ahead > timedelta(0) else timedelta(0)
        # How far ahead of its due time an entry is claimed: its look-ahead before it is queued.
        self.claim_ahead = lookahead + fire_ahead
        self.recorder = recorder
        # Whether this process's consumer is starting held runs now: applies ahead wait for them.
        self.starting = starting
        self.record_timeout = RECORD_TIMEOUT_SECONDS
        self.limits = limits or QueueLimits()
        self.schedules = ScheduleCache()
        # Planning shared by the jobs of one jitter-free plan: (plan, concurrency policy, due, now,
        # lease end) -> plan. The policy is in the key as only Allow fires slots together.
        self._shared_plans: dict[tuple[str, str, int, int, int | None], _SharedPlan] = {}
        self._labels: dict[str, tuple[str, str]] = {}
        self._instants = _Instants()
        self._lateness = metrics.Observations(metrics.FIRE_LATENESS)
        self._jitter = metrics.Observations(metrics.FIRE_JITTER)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                result = await self.tick()
                delay = result.sleep_seconds
            except Exception:
                log.exception("ticker pass failed; retrying shortly")
                delay = 1.0
            await sleep_unless_stopped(stop, delay)

    async def tick(self) -> TickResult:
        self._shared_plans.clear()
        self._instants.clear()
        fired = 0
        next_due: int | None = None
        for shard in self.broker.keys.all_shards():
            await self.broker.promote_due_retries(shard, to_ms(self.clock.now()), self.batch)
            await self.broker.release_buffered(shard, to_ms(self.clock.now()), self.batch)
            fired += await self._fire_shard(shard)
            shard_next = await self.broker.next_due_ms(shard)
            if shard_next is not None:
                next_due = shard_next if next_due is None else min(next_due, shard_next)
        return TickResult(fired, self._sleep_until(next_due))

    def _sleep_until(self, next_due_ms: int | None) -> float:
        """Until the next entry can be claimed. Every ticker wakes then, so they share its second's
        entries batch by batch instead of the first one awake claiming them all."""
        if next_due_ms is None:
            return self.max_sleep
        wait = (next_due_ms - _millis(self.claim_ahead) - to_ms(self.clock.now())) / 1000
        return min(max(wait, 0.0), self.max_sleep)

    async def _fire_shard(self, shard: ShardKeys) -> int:
        """Claim what is due now or within the look-ahead, plan it, fire each slot on time.

        Planning ahead matters when thousands of entries share a second: every claim, load
        and plan round trip for that second happens before it, so at the slot only the atomic
        applies are left. Preparing stops early once something prepared is already due.
        """
        prepared: list[_Timed] = []
        earliest = math.inf  # when the first prepared plan is to be applied
        leases = _Leases()
        # Bounded so an overloaded ticker still returns to check for shutdown between passes.
        for _ in range(MAX_BATCHES_PER_PASS):
            now = self.clock.now()
            horizon = to_ms(now + self.claim_ahead)
            lease = horizon + CLAIM_LEASE_MS
            claims = await self.broker.claim_due(shard, horizon, lease, self.batch)
            leases.taken(lease, [claim.job_id for claim in claims])
            entries = await self.broker.load_due(shard, [claim.job_id for claim in claims])
            now_ms = to_ms(now)
            batch = [
                _Timed(apply_at_ms(cmd.expected_due_ms, entry.concurrency, self.fire_ahead_ms), cmd)
                for claim, entry in zip(claims, entries, strict=True)
                if entry and (cmd := self._plan(entry, now_ms, claim))
            ]
            prepared += batch
            earliest = min([earliest, *(timed.apply_at_ms for timed in batch)])
            if len(claims) < self.batch or earliest <= to_ms(self.clock.now()):  # something is due already
                break
        return await self._fire_when_due(shard, sorted(prepared, key=lambda timed: timed.apply_at_ms), leases)

    async def _fire_when_due(self, shard: ShardKeys, timed: list[_Timed], leases: _Leases) -> int:
        fired = 0
        while timed:
            await self._renew_leases(shard, timed, leases)
            await self._wait_until(timed[0].apply_at_ms)
            if timed[0].command.expected_due_ms > to_ms(self.clock.now()):  # ahead, not catching up
                await after_starts(self.starting, STARTS_FIRST_SECONDS)
            now = self.clock.now()
            chunk = min(self.batch, APPLY_CHUNK)
            ready = [item for item in timed[: chunk * APPLIES_IN_FLIGHT] if item.apply_at_ms <= to_ms(now)]
            timed = timed[len(ready):]
            batches = [ready[start:start + chunk] for start in range(0, len(ready), chunk)]
            fired += sum(await asyncio.gather(*(self._apply(shard, batch, now) for batch in batches)))
        return fired

    async def _apply(self, shard: ShardKeys, ready: list[_Timed], now: datetime) -> int:
        commands = [item.command for item in ready]
        outcomes = await self.broker.apply_plans(shard, commands, to_ms(now), self.limits)
        return await self._record(commands, outcomes, now, [item.ahead_ms for item in ready])

    async def _renew_leases(self, shard: ShardKeys, timed: list[_Timed], leases: _Leases) -> None:
        """Keep the leases on entries still waiting here from running out under a slow pass."""
        now_ms = to_ms(self.clock.now())
        if not leases.any_before(now_ms + CLAIM_LEASE_MS // 2):
            return
        waiting = {item.command.job_id for item in timed}
        for lease, job_ids in leases.expiring(now_ms + CLAIM_LEASE_MS // 2, waiting):
            renewed_until = max(lease, now_ms) + CLAIM_LEASE_MS
            await self.broker.renew_leases(shard, job_ids, lease, renewed_until)
            leases.taken(renewed_until, job_ids)
        leases.only(waiting)

    async def _wait_until(self, due_ms: int) -> None:
        wait = (due_ms - to_ms(self.clock.now())) / 1000
        if wait > 0:
            await asyncio.sleep(wait)

    def _plan(self, entry: DueEntry, now_ms: int, claim: Claim) -> PlanCommand | None:
        # An entry claimed ahead of its slot is planned as of the slot: it fires on time.
        now_ms = max(now_ms, entry.next_due_ms)
        lease_ended = claim.claimable_since_ms(entry.next_due_ms)
        if lease_ended is not None:
            metrics.LEASE_TAKEOVERS.inc()
        # The lease's end is stored as seen through its ticker's look-ahead; this ticker could
        # claim it one look-ahead (and lead) earlier.
        claimable_since = None if lease_ended is None else max(
            entry.next_due_ms, lease_ended - _millis(self.claim_ahead))
        key = (entry.plan, entry.concurrency, entry.next_due_ms, now_ms, claimable_since)
        shared = self._shared_plans.get(key)
        if shared is None:
            try:
                planned = self._plan_job(entry, now_ms, claimable_since)
            except Exception:
                # An entry the ticker cannot plan stays leased and is retried after the lease; it
                # must never stop the other entries from firing.
                log.exception("cannot plan cron entry %s", entry.job_id)
                return None
            if isinstance(planned, PlanCommand):
                return stagger_plan(planned, now_ms)
            shared = self._shared_plans[key] = planned
        return stagger_plan(PlanCommand(entry.job_id, entry.version, entry.next_due_ms, shared.next_due_ms,
                                      shared.fires, shared.missed, shared.starting_deadline_ms), now_ms)

    def _plan_job(self, entry: DueEntry, now_ms: int, claimable_since_ms: int | None) -> PlanCommand | _SharedPlan:
        """The job's plan, or (without jitter, which is per job) the plan every job on its plan shares."""
        plan, parsed = self.schedules.get(entry.plan)
        # Jitter is per job, so the policies wrap the schedule the jobs on one plan share.
        schedule = plan_schedule(plan, parsed, entry.job_id)
        fire_plan = plan_fires(
            schedule,
            from_ms(entry.next_due_ms),
            from_ms(now_ms),
            policy=plan.missed_run_policy,
            starting_deadline=planning_deadline(plan.starting_deadline_seconds, plan.catch_up_window_seconds),
            max_catch_up=plan.max_catch_up_runs,
            on_time_grace=self.on_time_grace,
            claimable_since=None if claimable_since_ms is None else from_ms(claimable_since_ms),
        )
        if queued_ahead(entry.concurrency):
            fire_plan = fire_together(schedule, fire_plan, self.together_window)
        command = _command(entry, fire_plan, plan.starting_deadline_seconds, schedule)
        if schedule.jitter_seconds:
            return command
        return _SharedPlan(command.next_due_ms, command.fires, command.missed, command.starting_deadline_ms)

    async def _record(self, commands: list[PlanCommand], outcomes: list[list[str] | None], now: datetime,
                      ahead_ms: list[int]) -> int:
        fired = 0
        now_ms = to_ms(now)
        records: list[FireRecord] = []
        shed: list[tuple[str, int, int, int]] = []  # (job, missed, of which not queued, skipped)
        for command, outcome, ahead in zip(commands, outcomes, ahead_ms, strict=True):
            skipped: tuple[RunRecord, ...] = ()
            buffered: tuple[BufferedSlot, ...] = ()
            not_queued = 0
            if outcome is None:  # applied, every planned slot fired
                fired += len(command.fires)
                for index in range(len(command.fires)):
                    self._observe_fire(command, index, now_ms + ahead)
            elif outcome[0] != "ok":
                continue
            else:
                fired_here, not_queued, skipped, buffered = self._outcomes(command, outcome, now, now_ms + ahead)
                fired += fired_here
            missed = command.missed + not_queued
            if missed or skipped:
                shed.append((command.job_id, missed, not_queued, len(skipped)))
            records.append(
                FireRecord(
                    job_id=command.job_id,
                    next_run_at=never_to_none(self._instants.of(command.next_due_ms)),
                    last_slot=self._instants.of(command.fires[-1][0]) if command.fires else None,
                    missed=missed,
                    skipped=skipped,
                    buffered=buffered,
                )
            )
        metrics.FIRED_RUNS.inc(fired)
        self._lateness.flush()
        self._jitter.flush()
        if shed:
            await self._count_shed(shed)
        if self.recorder is not None:
            self.recorder.fired(records)
            return fired
        try:
            async with asyncio.timeout(self.record_timeout):
                await self._record_inline(records)
        except Exception:
            # The fires already happened; bookkeeping catches up on the next pass for next_run_at.
            log.exception("could not record %d fires in PostgreSQL", len(records))
        return fired

    async def _record_inline(self, records: list[FireRecord]) -> None:
        """`Store.record_fires` until no other writer holds a job row it skipped."""
        held = await self.store.record_fires(records)
        while held:
            await asyncio.sleep(HELD_ROW_RETRY_SECONDS)
            held = await self.store.record_fires([record.job_row_only() for record in records if record.job_id in held])

    def _outcomes(self, command: PlanCommand, outcome: list[str], now: datetime, fired_ms: int,
                  ) -> tuple[int, int, tuple[RunRecord, ...], tuple[BufferedSlot, ...]]:
        """(fired, missed instead of queued by the overload policy (the queue full, or its wait too
        long), skipped runs, buffered slots) of a plan not every slot of which fired; `fired_ms` is
        when it fired, plus how early it was meant to."""
        fired = not_queued = 0
        skipped: list[RunRecord] = []
        buffered: list[BufferedSlot] = []
        indexes = {str(slot): index for index, (slot, _) in enumerate(command.fires)}
        for item in outcome[1:]:
            kind, slot, *blocker = item.split(":", 2)
            if kind == "fired":
                fired += 1
                self._observe_fire(command, indexes[slot], fired_ms)
            elif kind == "missed":
                not_queued += 1
            elif kind == "buffered":
                # Queued by release_buffered when the running one ends; recorded so a rebuild
                # after a Redis data loss restores it (sundial.core.recovery).
                index = indexes[slot]
                buffered.append(_buffered_slot(command.job_id, from_ms(int(slot)), Trigger(command.fires[index][1]),
                                               command.start_ms(index)))
            else:
                trigger = Trigger(command.fires[indexes[slot]][1])
                skipped.append(_skipped_run(command.job_id, from_ms(int(slot)), trigger, blocker[0], now))
        return fired, not_queued, tuple(skipped), tuple(buffered)

    def _observe_fire(self, command: PlanCommand, index: int, fired_ms: int) -> None:
        # Lateness counts from the jittered start (less the lead of a run queued ahead, so it
        # says how late the ticker was); the jitter is reported on its own.
        start_ms = command.start_ms(index)
        self._lateness.add((fired_ms - start_ms) / 1000)
        slot_ms = command.fires[index][0]
        if start_ms != slot_ms:
            self._jitter.add((start_ms - slot_ms) / 1000)

    async def _count_shed(self, shed: list[tuple[str, int, int, int]]) -> None:
        labels = await self._job_labels([job_id for job_id, *_ in shed])
        # Only the counts that moved: a job's zero would still be a series of its own, thousands of
        # them under an overload that sheds every job's slots but skips none.
        for job_id, missed, _, skipped in shed:
            if missed:
                metrics.MISSED_SLOTS.labels(*labels[job_id]).inc(missed)
            if skipped:
                metrics.SKIPPED_RUNS.labels(*labels[job_id]).inc(skipped)
        metrics.QUEUE_FULL_SLOTS.inc(sum(not_queued for _, _, not_queued, _ in shed))

    async def _job_labels(self, job_ids: list[str]) -> dict[str, tuple[str, str]]:
        """(namespace, name) of each job for the per-job metrics, from the template in its entry.

        Needed only when a slot was missed or skipped; remembered, since an overloaded ticker
        misses slots of the same thousands of jobs every second, and read in one round trip.
        """
        unknown = [job_id for job_id in job_ids if job_id not in self._labels]
        try:
            entries = await self.broker.entries(unknown) if unknown else {}
        except Exception:
            log.exception("cannot read the labels of %d jobs", len(unknown))
            entries = {}
        if len(self._labels) + len(unknown) > LABELS_KEPT:
            self._labels.clear()
        for job_id in unknown:
            self._labels[job_id] = _labels_of(job_id, entries.get(job_id))
        return {job_id: self._labels.get(job_id, ("", job_id)) for job_id in job_ids}


@dataclass(frozen=True, slots=True)
class _Timed:
    """A plan and when to apply it: at its due time, or ahead of it (sundial.worker.ahead)."""

    apply_at_ms: int
    command: PlanCommand

    @property
    def ahead_ms(self) -> int:
        return max(self.command.expected_due_ms - self.apply_at_ms, 0)


@dataclass(frozen=True, slots=True)
class _SharedPlan:
    """The part of a plan that every job on one jitter-free plan shares for a slot and instant."""

    next_due_ms: int
    fires: tuple[tuple[int, str], ...]
    missed: int
    starting_deadline_ms: int | None


class _Instants:
    """`from_ms` for the instants a pass records: thousands of jobs share each slot."""

    def __init__(self) -> None:
        self._known: dict[int, datetime] = {}

    def clear(self) -> None:
        self._known.clear()

    def of(self, ms: int) -> datetime:
        known = self._known.get(ms)
        if known is None:
            known = self._known[ms] = from_ms(ms)
        return known


class _Leases:
    """Which entries this pass leased until when, so the ones still waiting can be renewed."""

    def __init__(self) -> None:
        self._until: dict[str, int] = {}
        self._earliest: int | None = None

    def taken(self, until_ms: int, job_ids: list[str]) -> None:
        for job_id in job_ids:
            self._until[job_id] = until_ms
        if job_ids:
            self._earliest = until_ms if self._earliest is None else min(self._earliest, until_ms)

    def any_before(self, before_ms: int) -> bool:
        """Whether a lease taken (or renewed) in this pass could end before `before_ms`; cheap,
        so a pass firing thousands of entries in batches does not look at each one per batch."""
        return self._earliest is not None and self._earliest < before_ms

    def only(self, job_ids: set[str]) -> None:
        """Forget the leases of entries no longer waiting here (fired already)."""
        self._until = {job_id: until for job_id, until in self._until.items() if job_id in job_ids}
        self._earliest = min(self._until.values(), default=None)

    def expiring(self, before_ms: int, job_ids: set[str]) -> list[tuple[int, list[str]]]:
        """The leases ending before `before_ms` among `job_ids`, grouped by their end."""
        groups: dict[int, list[str]] = {}
        for job_id in job_ids:
            until = self._until.get(job_id)
            if until is not None and until < before_ms:
                groups.setdefault(until, []).append(job_id)
        return sorted(groups.items())


def _labels_of(job_id: str, entry: Entry | None) -> tuple[str, str]:
    try:
        job = parse_template(entry.template).job if entry else None
    except Exception:
        job = None
    return (job.namespace, job.name) if job else ("", job_id)


def _millis(delta: timedelta) -> int:
    return round(delta.total_seconds() * 1000)


def _command(
    entry: DueEntry, plan: FirePlan, starting_deadline_seconds: int | None, schedule: JitteredSchedule
) -> PlanCommand:
    """The plan as Redis applies it. The planner saw jittered fire times; each run is still
    named by its slot, and starts at the fire time."""
    starts = tuple(to_ms(fire.slot) for fire in plan.fires)
    slots = starts if not schedule.jitter_seconds else tuple(
        to_ms(schedule.slot_of(fire.slot)) for fire in plan.fires)
    return PlanCommand(
        job_id=entry.job_id,
        version=entry.version,
        expected_due_ms=entry.next_due_ms,
        next_due_ms=to_ms(plan.next_due),
        fires=tuple((slot, fire.trigger) for slot, fire in zip(slots, plan.fires, strict=True)),
        missed=plan.missed,
        starting_deadline_ms=None if starting_deadline_seconds is None else starting_deadline_seconds * 1000,
        starts_ms=starts if schedule.jitter_seconds else (),
    )


def stagger_plan(command: PlanCommand, now_ms: int) -> PlanCommand:
    """A plan of one due slot and the slots fired together with it (`fire_together`), cut to
    begin the job's next group on its own phase (`staggered_group`); any other plan as it is."""
    fires = command.fires
    if len(fires) < 2 or command.start_ms(1) <= now_ms:  # one slot, or catch-up slots (all due)
        return command
    return command.first(staggered_group(fires[0][0], fires[-1][0], len(fires), job_phase(command.job_id)))


def _skipped_because(blocker: str) -> str:
    run_id, _, policy = blocker.partition("|")
    if policy == "BufferOne":
        return f"skipped by concurrencyPolicy BufferOne: run {run_id} is still in flight and a slot already waits"
    return f"skipped by concurrencyPolicy Forbid: run {run_id} is still in flight"


def _buffered_slot(job_id: str, slot: datetime, trigger: Trigger, start_ms: int) -> BufferedSlot:
    return BufferedSlot(run_id_for_slot(job_id, to_ms(slot)), slot, from_ms(start_ms), trigger)


def _skipped_run(job_id: str, slot: datetime, trigger: Trigger, blocker: str, now: datetime) -> RunRecord:
    return RunRecord(
        run_id=run_id_for_slot(job_id, to_ms(slot)),
        job_id=job_id,
        logical_time=slot,
        scheduled_for=slot,
        trigger=trigger,
        status=RunStatus.SKIPPED,
        attempt=1,
        completed_at=now,
        error=_skipped_because(blocker),
    )
