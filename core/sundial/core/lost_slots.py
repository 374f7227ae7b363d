"""Slots that fired but whose run Redis lost with its data before anyone recorded it.

A fired slot's run lives only in Redis until a worker records its start: in the queue, or in a
worker's pending list (delivered, not yet started). A worker killed there leaves it for another
to reclaim; if Redis loses its data first, the run is gone, and when a later slot of the same
job has a row, re-arming after that row leaves it out for good. PostgreSQL's fire records fold
per job (`last_schedule_time`), so which slots fired is read from the job's own schedule: every
slot between the instant the job was last armed as it is (`armed_since`: enabled and of this
generation) and the slot its entry resumes after fired, and those with neither a run row nor a
worker holding their run were lost. Before `armed_since` a gap is no loss: the job was
suspended, or fired on another schedule; nor before the last time a ticker counted a slot of
the job missed (`last_missed_at`: its missed-run policy dropped it, or the overload policy did).

Pure and clock-free: `now` comes from the caller.
"""

from __future__ import annotations

import json
from bisect import bisect_left, bisect_right
from collections.abc import Sequence, Set
from datetime import datetime, timedelta
from typing import Final

from sundial.core.clock import to_ms
from sundial.core.policies import NEVER, spec_schedule
from sundial.core.schedule import ScheduleError
from sundial.core.spec import ScheduledJobSpec

# A run's message waits in a dead worker's pending list for the visibility timeout (30 s by
# default) before it is reclaimed, so a loss finds lost runs from the last minute or so; ten
# minutes covers a worker that was CPU-starved or a reclaim that kept failing (the full soak's
# 2 lost slots were 2.5 and 3 minutes old), while keeping the run rows read and the slots listed
# small: 600 at most per distinct every-second schedule, about 0.2 ms each (0.75 s for 1,000 jobs
# on one every-second schedule, 22 s for 100 every-second schedules that all differ, at load 1.5).
LOST_SLOT_LOOKBACK: Final = timedelta(minutes=10)
# At most this many lost runs of one job are queued again, the latest ones: a job with a longer
# stretch without rows (its runs all sat in dead workers' lists) would otherwise flood the queue
# with hundreds of late runs at once, each running its target, while the next slots wait.
MAX_LOST_SLOTS_PER_JOB: Final = 100


# The spec fields a job's slots depend on (jitter moves starts, not slots): jobs alike in these
# share one listing of slots, so a rebuild lists each distinct schedule's once, not each job's.
SLOT_FIELDS: Final = frozenset({"schedule", "time_zone", "schedules", "exclude", "start_time", "end_time", "max_runs",
                                "dst_policy"})


def slots_key(spec: ScheduledJobSpec) -> str:
    """Equal for two specs whose schedules give the same slots."""
    return json.dumps(spec.model_dump(mode="json", include=set(SLOT_FIELDS)), sort_keys=True)


def schedule_slots(spec: ScheduledJobSpec, job_key: str, after: datetime, until: datetime) -> list[datetime]:
    """The slots of `spec` in (`after`, `until`], in order: every schedule, exclusions and the
    active window applied, unjittered (they name the runs)."""
    slots_of = spec_schedule(spec, job_key).inner
    slots: list[datetime] = []
    try:
        slot = slots_of.next_after(after)
        while slot <= until and slot < NEVER:
            slots.append(slot)
            slot = slots_of.next_after(slot)
    except ScheduleError:  # an exclusion list that leaves no slot for too long: none fired there
        pass
    return slots


def lost_slots(
    slots: Sequence[datetime], *, fired_since: datetime, resume_after: datetime | None,
    recorded: Set[int], held: Set[int], now: datetime,
    lookback: timedelta = LOST_SLOT_LOOKBACK, cap: int = MAX_LOST_SLOTS_PER_JOB,
) -> list[datetime]:
    """Of a job's `slots` (`schedule_slots` since `now - lookback` at least), those after
    `fired_since` (since when every slot fired: the job's `armed_since`, or a ticker's last
    missed slot after it) and within `lookback` of `now`, before `resume_after` (the slot its re-armed
    entry continues after, `sundial.core.jobs.resume_after`; None: nothing fired), that have no
    run row (`recorded`, logical times in ms) and whose run no worker holds (`held`, slots in ms):
    the latest `cap` of them, in order.
    """
    if resume_after is None or cap <= 0:
        return []
    first = bisect_right(slots, max(fired_since, now - lookback))
    end = bisect_left(slots, resume_after)
    return [slot for slot in slots[first:end] if to_ms(slot) not in recorded and to_ms(slot) not in held][-cap:]
