"""Schedule policies layered over a parsed schedule: active window and jitter.

Pure and clock-free like `sundial.core.schedule`: callers pass every instant.

Active window
-------------
``startTime`` and ``endTime`` bound the slots a job has: none before the start, none after the
end (both inclusive). A window that has closed answers `NEVER`, which no ticker ever claims and
which status shows as no next run. ``maxRuns`` closes the window at the ``maxRuns``-th slot from
``startTime``: a count of slots, so it is as exact as the slots themselves (no counter to keep
in Redis, none to lose), and a slot missed or skipped uses its share.

Jitter
------
``jitterSeconds`` spreads the jobs that share a slot (thousands at :00) over a window after it.
Each slot's delay is derived from a hash of (job id, slot), so every ticker replica, the CLI and
the dashboard compute the same delay for the same slot, and a slot planned twice still fires
at the same instant. The slot itself stays the run's identity: the run id is ``job:slot_ms``
and its logical time is the slot, so exactly-once is unchanged; only the moment it starts
moves. The delay is kept strictly below the gap to the next slot, so jittered fire times stay
in slot order and each belongs to exactly one slot (`JitteredSchedule.slot_of`).
"""

from __future__ import annotations

import bisect
import dataclasses
import functools
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sundial.core.clock import to_ms
from sundial.core.exclusions import exclusion_matches
from sundial.core.runs import EntryPlan
from sundial.core.schedule import CronSchedule, Schedule, ScheduleError, latest_at_or_before, parse_schedule
from sundial.core.spec import DstGap, DstRepeatedHour, ScheduledJobSpec

__all__ = [
    "NEVER",
    "ExcludingSchedule",
    "JitteredSchedule",
    "UnionSchedule",
    "UpcomingFire",
    "WindowedSchedule",
    "also_schedules",
    "build_schedule",
    "jitter_delay",
    "last_limited_slot",
    "never_to_none",
    "plan_schedule",
    "planning_deadline",
    "remaining_runs",
    "spec_schedule",
    "spec_slots",
    "upcoming_fires",
    "with_jitter",
]

# What a schedule answers once its active window has closed: no slot, ever. Far enough to never
# come due, near enough that a day of jitter or a millisecond score still fits.
NEVER = datetime(9999, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)

_MILLISECOND = timedelta(milliseconds=1)


@dataclass(frozen=True)
class _Layer:
    """A policy over a schedule: it keeps the inner schedule's expression and zone."""

    inner: Schedule

    @property
    def expression(self) -> str:
        return self.inner.expression

    @property
    def zone(self) -> ZoneInfo:
        return self.inner.zone


def jitter_delay(job_key: str, slot: datetime, jitter_seconds: int, gap: timedelta) -> timedelta:
    """The delay of ``slot``: in [0, jitterSeconds] and below ``gap`` (the time to the next slot),
    whole milliseconds, the same for the same (``job_key``, slot) on every machine."""
    span_ms = min(jitter_seconds * 1000, to_ms_delta(gap) - 1)
    if span_ms <= 0:
        return timedelta(0)
    digest = hashlib.sha256(f"{job_key}|{to_ms(slot)}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % (span_ms + 1) * _MILLISECOND


def to_ms_delta(delta: timedelta) -> int:
    return delta // _MILLISECOND


@dataclass(frozen=True)
class JitteredSchedule(_Layer):
    """A schedule whose fire times are its inner schedule's slots plus each slot's jitter delay."""

    job_key: str
    jitter_seconds: int

    def delay(self, slot: datetime) -> timedelta:
        if self.jitter_seconds <= 0:
            return timedelta(0)
        return jitter_delay(self.job_key, slot, self.jitter_seconds, self.inner.next_after(slot) - slot)

    def fire_time(self, slot: datetime) -> datetime:
        return NEVER if slot >= NEVER else slot + self.delay(slot)

    def next_after(self, after: datetime) -> datetime:
        """First jittered fire time strictly after ``after``: the latest slot's, if its delay
        carries it past ``after``, else the next slot's."""
        if self.jitter_seconds <= 0:
            return self.inner.next_after(after)
        latest = self._latest_slot(after)
        if latest is not None:
            fire = self.fire_time(latest)
            if fire > after:
                return fire
        return self.fire_time(self.inner.next_after(after))

    def slot_of(self, fire_time: datetime) -> datetime:
        """The slot whose jittered fire time is ``fire_time``; ``fire_time`` itself when none is
        (an entry armed before jitter was set fires at its plain slot once)."""
        if self.jitter_seconds <= 0:
            return fire_time
        slot = self._latest_slot(fire_time)
        if slot is not None and self.fire_time(slot) == fire_time:
            return slot
        return fire_time

    def _latest_slot(self, at: datetime) -> datetime | None:
        # A slot older than the jitter window cannot have its fire time at or after `at`.
        return latest_at_or_before(self.inner, at, at - timedelta(seconds=self.jitter_seconds))


def with_jitter(schedule: Schedule, job_key: str, jitter_seconds: int) -> JitteredSchedule:
    """``schedule`` with ``job_key``'s jitter; with none it answers exactly as ``schedule``."""
    return JitteredSchedule(schedule, job_key, max(jitter_seconds, 0))


@dataclass(frozen=True)
class UpcomingFire:
    """One coming run as `next`, `describe` and the page show it: its slot and when it starts."""

    slot: datetime
    start: datetime

    @property
    def jitter(self) -> timedelta:
        return self.start - self.slot


def upcoming_fires(schedule: JitteredSchedule, after: datetime, count: int) -> list[UpcomingFire]:
    """The next ``count`` runs starting strictly after ``after``, oldest first; fewer when the
    active window closes first."""
    fires: list[UpcomingFire] = []
    start = after
    while len(fires) < count:
        start = schedule.next_after(start)
        if start >= NEVER:
            break
        fires.append(UpcomingFire(schedule.slot_of(start), start))
    return fires


@dataclass(frozen=True)
class WindowedSchedule(_Layer):
    """A schedule's slots inside [``start``, ``end``]; `NEVER` once none is left."""

    start: datetime | None = None
    end: datetime | None = None

    def next_after(self, after: datetime) -> datetime:
        if after >= NEVER or (self.end is not None and after >= self.end):
            return NEVER
        if self.start is not None and after < self.start:
            after = self.start - _MICROSECOND  # a slot right at the start belongs to the window
        slot = self.inner.next_after(after)
        return NEVER if self.end is not None and slot > self.end else slot


@dataclass(frozen=True)
class UnionSchedule:
    """Several schedules as one: every slot of each, and one slot where two hit the same instant."""

    parts: tuple[Schedule, ...]

    @property
    def expression(self) -> str:
        return " | ".join(part.expression for part in self.parts)

    @property
    def zone(self) -> ZoneInfo:
        return self.parts[0].zone

    def next_after(self, after: datetime) -> datetime:
        return min(part.next_after(after) for part in self.parts)


# An exclusion list that leaves no slot in this many would otherwise make next_after spin.
MAX_EXCLUDED_IN_A_ROW = 10_000


@dataclass(frozen=True)
class ExcludingSchedule(_Layer):
    """A schedule without the slots an exclusion matches, read in the job's time zone: a date
    (YYYY-MM-DD) drops that whole local day, a 5-field cron expression drops the slots whose local
    minute it matches (``* * 25 12 *``: Christmas day)."""

    exclude: tuple[str, ...]

    def excluded(self, slot: datetime) -> bool:
        wall = slot.astimezone(self.zone).replace(tzinfo=None)
        return any(exclusion_matches(entry, wall) for entry in self.exclude)

    def next_after(self, after: datetime) -> datetime:
        slot = self.inner.next_after(after)
        for _ in range(MAX_EXCLUDED_IN_A_ROW):
            if slot >= NEVER or not self.excluded(slot):
                return slot
            slot = self.inner.next_after(slot)
        raise ScheduleError(f"exclude drops {MAX_EXCLUDED_IN_A_ROW} slots in a row after {after.isoformat()}")


def build_schedule(
    inner: Schedule, job_key: str, *, jitter_seconds: int = 0,
    start: datetime | None = None, end: datetime | None = None, max_runs: int | None = None,
    also: tuple[Schedule, ...] = (), exclude: tuple[str, ...] = (),
) -> JitteredSchedule:
    """A job's schedule with its policies, in the one order every caller uses: the schedules
    (``inner`` and ``also``) minus the exclusions give the slots, the window (and the run limit,
    which ends it at the ``max_runs``-th slot from ``start``) keeps some, jitter moves their
    starts (a last slot's start may fall just past the end)."""
    if also:
        inner = UnionSchedule((inner, *also))
    if exclude:
        inner = ExcludingSchedule(inner, exclude)
    if max_runs is not None and start is not None:
        last = last_limited_slot(inner, start, max_runs)
        end = last if end is None else min(end, last)
    windowed: Schedule = inner if start is None and end is None else WindowedSchedule(inner, start, end)
    return with_jitter(windowed, job_key, jitter_seconds)


def last_limited_slot(inner: Schedule, start: datetime, max_runs: int) -> datetime:
    """The ``max_runs``-th slot at or after ``start``: where a run limit closes the window."""
    return _limited_slots(_Frozen(inner), start, max_runs)[-1]


@dataclass(frozen=True)
class _Frozen:
    """A schedule as a cache key: equal when built from the same parts (parsed schedules are
    cached and frozen, so the same expressions give equal parts)."""

    schedule: Schedule


@functools.lru_cache(maxsize=256)
def _limited_slots(key: _Frozen, start: datetime, max_runs: int) -> tuple[datetime, ...]:
    # Cached: the ticker rebuilds a job's schedule on every plan and status is rebuilt after
    # every fire, and the walk is up to MAX_RUNS_LIMIT cron steps.
    schedule = key.schedule
    slots: list[datetime] = []
    slot = start - _MICROSECOND
    for _ in range(max_runs):
        slot = schedule.next_after(slot)
        slots.append(slot)
    return tuple(slots)


def remaining_runs(spec: ScheduledJobSpec, last_slot: datetime | None) -> int | None:
    """Of a job's ``maxRuns``, the slots still to come after ``last_slot`` (the last one fired);
    None without a run limit. Slots missed or skipped used theirs: the limit counts slots."""
    if spec.max_runs is None or spec.start_time is None:
        return None
    slots = _limited_slots(_Frozen(spec_slots(spec)), spec.start_time, spec.max_runs)
    usable = len(slots) if spec.end_time is None else bisect.bisect_right(slots, spec.end_time)
    used = 0 if last_slot is None else bisect.bisect_right(slots, last_slot)
    return max(usable - used, 0)


def never_to_none(moment: datetime) -> datetime | None:
    """A next run as status and listings show it: None when the window has closed."""
    return None if moment >= NEVER else moment


def spec_schedule(spec: ScheduledJobSpec, job_key: str) -> JitteredSchedule:
    """The schedule a spec fires on, every policy applied (``job_key``: the job's uid)."""
    return build_schedule(_parse(spec.schedule, spec.time_zone, spec), job_key, jitter_seconds=spec.jitter_seconds,
                          start=spec.start_time, end=spec.end_time, max_runs=spec.max_runs,
                          also=also_schedules(spec), exclude=tuple(spec.exclude))


def spec_slots(spec: ScheduledJobSpec) -> Schedule:
    """Every slot a spec's schedules give, exclusions removed, before window and jitter."""
    base = _parse(spec.schedule, spec.time_zone, spec)
    also = also_schedules(spec)
    schedule: Schedule = UnionSchedule((base, *also)) if also else base
    return ExcludingSchedule(schedule, tuple(spec.exclude)) if spec.exclude else schedule


def also_schedules(spec: ScheduledJobSpec) -> tuple[Schedule, ...]:
    """``schedules:`` parsed, each in its own time zone or else the job's."""
    return tuple(_parse(entry.schedule, entry.time_zone or spec.time_zone, spec) for entry in spec.schedules)


def _parse(expression: str, time_zone: str, spec: ScheduledJobSpec) -> Schedule:
    policy = spec.dst_policy
    return with_dst(parse_schedule(expression, time_zone), None if policy is None else policy.gap,
                    None if policy is None else policy.repeated_hour)


def with_dst(schedule: Schedule, gap: DstGap | str | None, repeated_hour: DstRepeatedHour | str | None) -> Schedule:
    """``schedule`` under a job's dstPolicy. Only cron schedules have wall times to resolve;
    ``@every`` counts elapsed time, which daylight saving never moves."""
    if not isinstance(schedule, CronSchedule) or (gap is None and repeated_hour is None):
        return schedule
    return dataclasses.replace(
        schedule,
        gap_runs=None if gap is None else DstGap(gap) is DstGap.RUN_AFTER_GAP,
        fold_once=None if repeated_hour is None else DstRepeatedHour(repeated_hour) is DstRepeatedHour.ONCE,
    )


def plan_schedule(plan: EntryPlan, inner: Schedule, job_key: str) -> JitteredSchedule:
    """`spec_schedule` for the ticker: from the entry's plan over its (shared) parsed schedule,
    which the ticker parsed with `with_dst` already."""
    also = tuple(with_dst(parse_schedule(expression, zone), plan.dst_gap, plan.dst_repeated_hour)
                 for expression, zone in plan.schedules)
    return build_schedule(inner, job_key, jitter_seconds=plan.jitter_seconds,
                          start=_instant(plan.start_time), end=_instant(plan.end_time), max_runs=plan.max_runs,
                          also=also, exclude=plan.exclude)


def _instant(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def planning_deadline(starting_deadline_seconds: int | None, catch_up_window_seconds: int | None) -> timedelta | None:
    """How late a slot may be and still be planned: the tighter of startingDeadlineSeconds and
    catchUpWindowSeconds. The catch-up window only bounds planning (slots older than it after an
    outage are recorded missed); the starting deadline also expires runs waiting in the queue."""
    limits = [seconds for seconds in (starting_deadline_seconds, catch_up_window_seconds) if seconds is not None]
    return timedelta(seconds=min(limits)) if limits else None
