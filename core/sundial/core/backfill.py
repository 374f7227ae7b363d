"""Backfill: the slots of a past window, run now, exactly once each.

A backfill request names a window ``[from, to]`` (both inclusive) and whether its runs go one
after another. Its slots are the job's own: every schedule, exclusions and the active window
applied (``spec_schedule``), jitter not (a backfilled run starts when it is queued). Each run is
named by its slot like a scheduled run (``uid:slot_ms``), so a slot that already ran, or that an
earlier backfill queued, is never run again: running the same backfill twice adds nothing.

Pure and clock-free: ``now`` comes from the caller.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from sundial.core.policies import NEVER, spec_schedule
from sundial.core.runs import RunStatus
from sundial.core.schedule import ScheduleError
from sundial.core.spec import ConcurrencyPolicy, ScheduledJobSpec, SpecError, parse_spec

_MICROSECOND: Final = timedelta(microseconds=1)
# One request plans at most this many slots; a longer window is refused, to be split.
MAX_BACKFILL_SLOTS: Final = 1000


class BackfillError(ValueError):
    """A backfill request that cannot run; the message says why, for a person, and `field` which
    of the request's fields ("from", "to", "sequential") it is about, when it is about one."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class BackfillRequest:
    """What the sundial.dev/backfill annotation asks for (its JSON, one typed reading)."""

    start: datetime
    end: datetime
    sequential: bool = False
    request_id: str = ""

    def __post_init__(self) -> None:
        for name, moment in (("from", self.start), ("to", self.end)):
            if moment.tzinfo is None:
                raise BackfillError(f"backfill '{name}' {moment.isoformat()} needs an offset (Z or +02:00)", name)

    def to_json(self) -> str:
        return json.dumps({"from": self.start.isoformat(), "to": self.end.isoformat(),
                           "sequential": self.sequential, "id": self.request_id}, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> BackfillRequest:
        try:
            fields = json.loads(text)
        except ValueError as exc:
            raise BackfillError(f"backfill request is not JSON: {exc}") from None
        if not isinstance(fields, dict):
            raise BackfillError('backfill request must be a JSON object {"from": ..., "to": ...}')
        start, end = _instant(fields, "from"), _instant(fields, "to")
        sequential = fields.get("sequential", False)
        if not isinstance(sequential, bool):
            raise BackfillError("backfill 'sequential' must be true or false", "sequential")
        return cls(start, end, sequential, str(fields.get("id", "")))


def _instant(fields: dict[str, Any], name: str) -> datetime:
    value = fields.get(name)
    if not isinstance(value, str):
        raise BackfillError(f"backfill '{name}' is required: an RFC 3339 time with an offset", name)
    return parse_instant(value, name)


def parse_instant(value: str, name: str) -> datetime:
    """An RFC 3339 time with an offset (``Z`` or ``+02:00``); a naive one is refused."""
    try:
        moment = datetime.fromisoformat(value.strip().replace("z", "Z"))
    except ValueError:
        raise BackfillError(f"backfill '{name}' {value!r} is not an RFC 3339 time", name) from None
    if moment.tzinfo is None:
        raise BackfillError(f"backfill '{name}' {value!r} needs an offset (Z or +02:00)", name)
    return moment


def backfill_slots(spec: ScheduledJobSpec, job_key: str, request: BackfillRequest, now: datetime,
                   limit: int = MAX_BACKFILL_SLOTS) -> list[datetime]:
    """The slots of ``[request.start, request.end]`` in order; a BackfillError when the window is
    backwards, reaches past ``now`` or holds more than ``limit`` slots."""
    if request.end < request.start:
        raise BackfillError(f"backfill 'to' ({request.end.isoformat()}) is before 'from' ({request.start.isoformat()})",
                            "to")
    if request.end > now:
        raise BackfillError(f"backfill 'to' ({request.end.isoformat()}) is in the future; "
                            "a backfill runs past slots, the schedule runs the coming ones", "to")
    slots_of = spec_schedule(spec, job_key).inner
    slots: list[datetime] = []
    try:
        slot = slots_of.next_after(request.start - _MICROSECOND)
        while slot < NEVER and slot <= request.end:
            if len(slots) == limit:
                raise BackfillError(f"backfill window holds more than {limit} slots; split it into shorter windows",
                                    "from")
            slots.append(slot)
            slot = slots_of.next_after(slot)
    except ScheduleError as exc:  # an exclusion list that leaves no slot for too long
        raise BackfillError(f"backfill cannot list the window's slots: {exc}") from None
    return slots


@dataclass(frozen=True)
class SlotState:
    """Where a backfilled slot's run stands: its latest attempt's state, and whether that attempt
    failed with a retry to come that has not started yet."""

    status: RunStatus
    retry_pending: bool = False

    @property
    def unfinished(self) -> bool:
        """Still running, or waiting for its retry: the slot after it must not start yet."""
        return self.status is RunStatus.RUNNING or self.retry_pending


def next_batch(run_ids: Sequence[str], states: Mapping[str, SlotState], one_at_a_time: bool
               ) -> tuple[list[str], bool]:
    """Which of a window's runs (slot order) to queue now, and whether that leaves none to queue.

    A run with a state is never queued again. One at a time, the first run without one is
    queued only once no slot of the window is unfinished, a retry to come included: the next
    slot holds back behind an earlier slot's retry as it does behind its first attempt.
    """
    todo = [run_id for run_id in run_ids if run_id not in states]
    if not one_at_a_time:
        return todo, True
    if any(state.unfinished for state in states.values()):
        return [], False
    return todo[:1], len(todo) <= 1


def runs_one_at_a_time(spec: ScheduledJobSpec, request: BackfillRequest) -> bool:
    """Whether a backfill's runs go one after another: asked for, or the overlap policy forbids
    two runs at once (Forbid), or would cancel each run by the next (Replace)."""
    return request.sequential or spec.concurrency_policy is not ConcurrencyPolicy.ALLOW




def checked_request(spec_json: Any, job_key: str, start: datetime, end: datetime, sequential: bool,
                    request_id: str, now: datetime) -> tuple[BackfillRequest, list[datetime]]:
    """A request as the CLI and the page make it, with its slots, checked against the job's spec
    before the annotation is set: a person hears at once why it cannot run."""
    try:
        spec = parse_spec(spec_json)
    except SpecError as exc:
        raise BackfillError(f"the job's spec is invalid, so it cannot be backfilled: {exc}") from None
    request = BackfillRequest(start, end, sequential, request_id)
    return request, backfill_slots(spec, job_key, request, now)
