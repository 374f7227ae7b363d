"""Schedule policies layered over a parsed schedule: jitter (more to come beside it).

Pure and clock-free like `sundial.core.schedule`: callers pass every instant.

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

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sundial.core.clock import to_ms
from sundial.core.schedule import Schedule, fire_times, latest_at_or_before

__all__ = ["JitteredSchedule", "UpcomingFire", "jitter_delay", "upcoming_fires", "with_jitter"]

_MILLISECOND = timedelta(milliseconds=1)


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
class JitteredSchedule:
    """A schedule whose fire times are its inner schedule's slots plus each slot's jitter delay."""

    inner: Schedule
    job_key: str
    jitter_seconds: int

    @property
    def expression(self) -> str:
        return self.inner.expression

    @property
    def zone(self) -> ZoneInfo:
        return self.inner.zone

    def delay(self, slot: datetime) -> timedelta:
        if self.jitter_seconds <= 0:
            return timedelta(0)
        return jitter_delay(self.job_key, slot, self.jitter_seconds, self.inner.next_after(slot) - slot)

    def fire_time(self, slot: datetime) -> datetime:
        return slot + self.delay(slot)

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
    """The next ``count`` runs starting strictly after ``after``, oldest first."""
    return [UpcomingFire(schedule.slot_of(start), start) for start in fire_times(schedule, after, count)]
