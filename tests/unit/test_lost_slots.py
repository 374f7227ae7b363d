"""Which slots fired but lost their run with Redis's data: pure rules over PostgreSQL's rows."""

from __future__ import annotations

from collections.abc import Set
from datetime import datetime, timedelta
from typing import Any

import pytest

from sundial.core.clock import to_ms
from sundial.core.jobs import resume_after
from sundial.core.keys import run_id_for_slot
from sundial.core.lost_slots import LOST_SLOT_LOOKBACK, MAX_LOST_SLOTS_PER_JOB, lost_slots, schedule_slots, slots_key
from sundial.core.recovery import LOST_RUN_REASON, lost_runs
from sundial.core.runs import Trigger
from sundial.core.spec import ScheduledJobSpec

UID = "6f1c1f0e-0000-4000-8000-000000000001"
T = datetime.fromisoformat("2025-06-08T12:00:00Z")
S = timedelta(seconds=1)
M = timedelta(minutes=1)
NOW = T + 10 * S


def spec(**fields: Any) -> ScheduledJobSpec:
    return ScheduledJobSpec.model_validate({"schedule": "* * * * * *", "timeZone": "UTC", "target": "noop", **fields})


def lost(job_spec: ScheduledJobSpec | None = None, *, now: datetime = NOW, lookback: timedelta = LOST_SLOT_LOOKBACK,
         **fields: Any) -> list[datetime]:
    """`lost_slots` over the slots the rebuild lists for `job_spec` (every second by default)."""
    slots = schedule_slots(job_spec or spec(), UID, now - lookback, now)
    recorded, held = ({to_ms(slot) for slot in fields.pop(name)} for name in ("recorded", "held"))
    return lost_slots(slots, now=now, lookback=lookback, recorded=recorded, held=held, **fields)


def at(*seconds: int) -> set[datetime]:
    return {T + n * S for n in seconds}


def ms(*seconds: int) -> set[int]:
    return {to_ms(slot) for slot in at(*seconds)}


def resumes_after(last_fired: datetime | None, last_run: datetime | None, held: Set[datetime] = frozenset()
                  ) -> datetime | None:
    """Where the rebuild re-arms the entry, as it computes it (`sundial.core.jobs.resume_after`)."""
    return resume_after({"last_schedule_time": last_fired, "last_run_slot": last_run}, max(held, default=None))


@pytest.mark.parametrize(
    ("case", "fired_since", "last_fired", "recorded", "held", "expected"),
    [
        ("gaps between rows", T, T + 5 * S, at(1, 2, 4, 5), set(), at(3)),
        ("several gaps", T, T + 8 * S, at(2, 5, 8), set(), at(1, 3, 4, 6, 7)),
        ("a held run is not lost", T, T + 5 * S, at(1, 2, 5), at(3), at(4)),
        ("held, not yet recorded, the latest", T, T + 5 * S, at(1, 2), at(5), at(3, 4)),
        ("nothing lost", T, T + 5 * S, at(1, 2, 3, 4, 5), set(), set()),
        # Suspended, then resumed at T+3: slots 1..3 never fired, so their gap is no loss.
        ("suspended and resumed", T + 3 * S, T + 6 * S, at(4, 6), set(), at(5)),
        ("changed at T+6: only the gaps since count", T + 6 * S, T + 8 * S, at(2, 8), set(), at(7)),
        # The entry fires the last fired slot again (under its missed-run policy): not queued twice.
        ("no rows at all", T, T + 4 * S, set(), set(), at(1, 2, 3)),
        ("only one row", T, T + 3 * S, at(3), set(), at(1, 2)),
        ("a slot in the same second as the arming never fired", T + 2 * S, T + 4 * S, at(4), set(), at(3)),
        ("never fired", T, None, set(), set(), set()),
        # The fire record lags the run records: the slot a row names fired, and all before it.
        ("fire record behind the rows", T, T + 2 * S, at(1, 4), set(), at(2, 3)),
    ],
)
def test_lost_slots(case: str, fired_since: datetime, last_fired: datetime | None, recorded: set[datetime],
                    held: set[datetime], expected: set[datetime]) -> None:
    last_run = max(recorded, default=None)
    found = lost(fired_since=fired_since, resume_after=resumes_after(last_fired, last_run, held), recorded=recorded,
                 held=held)
    assert found == sorted(expected), case


def test_only_the_lookback_is_searched() -> None:
    found = lost(fired_since=T - timedelta(hours=1), resume_after=T + 10 * S, recorded=at(10), held=set(),
                 lookback=4 * S)
    assert found == sorted(at(7, 8, 9)), "slots after now - lookback (T+6) only"
    assert timedelta(minutes=10) == LOST_SLOT_LOOKBACK


def test_at_most_the_latest_cap_slots_are_lost() -> None:
    found = lost(fired_since=T - timedelta(minutes=9), resume_after=NOW, recorded={NOW}, held=set(), cap=3)
    assert found == sorted(at(7, 8, 9))
    every_second = lost(fired_since=T - timedelta(hours=1), resume_after=NOW, recorded={NOW}, held=set())
    assert len(every_second) == MAX_LOST_SLOTS_PER_JOB == 100
    assert every_second[-1] == NOW - S


def test_exclusions_and_the_active_window_name_no_lost_slot() -> None:
    now = T + 10 * M
    every_minute = spec(schedule="* * * * *", exclude=["3 12 * * *"])
    found = lost(every_minute, fired_since=T - timedelta(hours=1), resume_after=T + 6 * M,
                 recorded={T + 1 * M, T + 2 * M, T + 4 * M, T + 6 * M}, held=set(), now=now)
    assert found == [T + 5 * M], "12:03 is excluded: never fired, never lost"
    windowed = spec(endTime=(T + 2 * S).isoformat())
    assert lost(windowed, fired_since=T, resume_after=T + 4 * S, recorded=set(), held=set()) == sorted(at(1, 2)), \
        "no slot after the window's end fired"


def test_jobs_alike_in_their_slots_share_one_listing() -> None:
    assert slots_key(spec(jitterSeconds=5, target="other", suspend=True)) == slots_key(spec())
    for different in ({"schedule": "*/2 * * * * *"}, {"timeZone": "Europe/Paris"}, {"exclude": ["2025-06-09"]},
                      {"endTime": T.isoformat()}, {"schedules": [{"schedule": "0 0 * * *"}]}):
        assert slots_key(spec(**different)) != slots_key(spec()), different


def job_row(job_spec: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"id": UID, "namespace": "ns", "name": "job", "spec": job_spec, "enabled": True, "armed_since": T,
            "last_missed_at": None,
            "last_schedule_time": T + 5 * S, "last_run_slot": T + 5 * S, **fields}


def test_lost_runs_are_scheduled_runs_of_their_slot_queued_late() -> None:
    every_second = {"schedule": "* * * * * *", "timeZone": "UTC", "target": "noop"}
    other = "6f1c1f0e-0000-4000-8000-000000000002"
    rows = [job_row(every_second), job_row({**every_second, "startingDeadlineSeconds": 30}, id=other),
            job_row({"schedule": "not a cron", "target": "noop"}, id="broken"),
            job_row({**every_second, "suspend": True}, id="suspended")]
    recorded = {UID: ms(1, 2, 3, 5), other: ms(1, 2, 5)}
    [late, expiring] = lost_runs(rows, recorded, {other: {to_ms(T + 3 * S)}}, NOW)
    assert (late.run_id, late.trigger, late.attempt, late.logical_ms, late.scheduled_ms, late.enqueued_ms,
            late.expires_ms, late.reason) == (
        run_id_for_slot(UID, to_ms(T + 4 * S)), Trigger.SCHEDULED, 1, to_ms(T + 4 * S), to_ms(T + 4 * S),
        to_ms(NOW), None, LOST_RUN_REASON), "no deadline: it runs however late"
    assert late.template.job.job_id == UID
    assert expiring.run_id == run_id_for_slot(other, to_ms(T + 4 * S)), "T+3 is held by a worker"
    assert expiring.expires_ms == to_ms(T + 4 * S) + 30_000, "recorded missed once startingDeadlineSeconds passed"


def test_no_slot_up_to_a_ticker_counted_miss_is_taken_for_lost() -> None:
    """A missed-run policy (or a full queue) dropped slots 1 and 2 without a row: no loss."""
    every_second = {"schedule": "* * * * * *", "timeZone": "UTC", "target": "noop"}
    recorded = {UID: ms(3, 5)}
    assert [m.logical_ms for m in lost_runs([job_row(every_second)], recorded, {}, NOW)] == [
        to_ms(T + n * S) for n in (1, 2, 4)]
    missed = job_row(every_second, last_missed_at=T + 2.5 * S)
    assert [m.logical_ms for m in lost_runs([missed], recorded, {}, NOW)] == [to_ms(T + 4 * S)]
