"""Where an entry resumes when Redis lost its data: pure rules over PostgreSQL's rows."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from sundial.core.clock import to_ms
from sundial.core.jobs import resume_after
from sundial.core.recovery import DATA_LOST, FIRST_ARM, lost_buffered, lost_retries, rebuild_cause, rebuild_commands

T = datetime.fromisoformat("2025-06-08T12:00:00Z")
SECOND = timedelta(seconds=1)
MS = timedelta(milliseconds=1)


@pytest.mark.parametrize(
    ("last_fired", "last_run", "expected"),
    [
        (None, None, None),  # never fired: from now on
        (T, T, T),  # everything fired ran
        (T, T - 3 * SECOND, T - 3 * SECOND),  # three fires lost their messages: planned again
        (T - SECOND, T, T),  # the fire record lags the run record
        (T, None, T - timedelta(microseconds=1)),  # the only fire was lost: fired again
    ],
)
def test_resume_after(last_fired: datetime | None, last_run: datetime | None, expected: datetime | None) -> None:
    assert resume_after({"last_schedule_time": last_fired, "last_run_slot": last_run}) == expected


@pytest.mark.parametrize(
    ("last_run", "in_flight", "expected"),
    [
        (T - 3 * SECOND, T - SECOND, T - SECOND),  # a worker holds a later slot: its start is not committed yet
        (T - SECOND, T - 3 * SECOND, T - SECOND),
        (None, T - 2 * SECOND, T - 2 * SECOND),
    ],
)
def test_a_slot_a_worker_holds_is_not_fired_again(
    last_run: datetime | None, in_flight: datetime, expected: datetime
) -> None:
    assert resume_after({"last_schedule_time": T, "last_run_slot": last_run}, in_flight) == expected


def row(spec: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"id": "6f1c1f0e-0000-4000-8000-000000000001", "namespace": "ns", "name": "job", "spec": spec,
            "enabled": True, "last_schedule_time": None, "last_run_slot": None, **fields}


def test_rebuild_commands_resume_each_job_and_skip_what_cannot_be_armed() -> None:
    every_second = {"schedule": "* * * * * *", "timeZone": "UTC", "target": "noop"}
    rows = [
        row(every_second, last_schedule_time=T, last_run_slot=T - 2 * SECOND),
        row({"schedule": "not a cron", "target": "noop"}),
        row({**every_second, "suspend": True}),
    ]
    commands, skipped = rebuild_commands(rows, T + 10 * SECOND)
    assert skipped == 1
    [command] = commands
    assert command.next_due_ms == to_ms(T - SECOND)


def test_lost_retries_are_rebuilt_as_the_next_attempt() -> None:
    every_second = {"schedule": "* * * * * *", "timeZone": "UTC", "target": "noop"}
    rows = [
        {"run_id": "j:1", "job_id": "6f1c1f0e-0000-4000-8000-000000000001", "namespace": "ns", "name": "job",
         "spec": every_second, "logical_time": T, "scheduled_for": T, "attempt": 1,
         "next_retry_at": T + 5 * SECOND, "reason": None},
        {"run_id": "j:2", "job_id": "x", "namespace": "ns", "name": "gone", "spec": {"schedule": "bad"},
         "logical_time": T, "scheduled_for": None, "attempt": 1, "next_retry_at": T, "reason": None},
    ]
    [(message, due_ms)] = lost_retries(rows, T + SECOND)
    assert (message.run_id, message.attempt, message.trigger.value, message.scheduled_ms, due_ms) == (
        "j:1", 2, "retry", to_ms(T), to_ms(T + 5 * SECOND))


EVERY_SECOND = {"schedule": "* * * * * *", "timeZone": "UTC", "target": "noop"}


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        ([], FIRST_ARM),  # a fresh install: no job at all
        ([row(EVERY_SECOND), row(EVERY_SECOND)], FIRST_ARM),  # jobs applied before any worker ever fired them
        ([row(EVERY_SECOND), row(EVERY_SECOND, last_schedule_time=T)], DATA_LOST),  # one fired: its entry was here
        ([row(EVERY_SECOND, last_run_slot=T)], DATA_LOST),  # a run row without the (lagging) fire record
        ([row({**EVERY_SECOND, "workerPool": "gpu"}, last_schedule_time=T)], FIRST_ARM),  # another pool's history
        ([row({"schedule": "not a cron", "target": "noop"}, last_schedule_time=T)], FIRST_ARM),  # unusable spec
    ],
)
def test_a_rebuild_of_a_keyspace_whose_jobs_never_fired_is_a_first_arm(rows: list[dict[str, Any]],
                                                                         expected: str) -> None:
    assert rebuild_cause(rows) == expected
def test_lost_buffered_runs_come_back_as_first_attempts_that_never_expire() -> None:
    buffered = {"schedule": "* * * * * *", "timeZone": "UTC", "target": "noop", "concurrencyPolicy": "BufferAll"}
    job_id = "6f1c1f0e-0000-4000-8000-000000000001"
    rows = [
        {"run_id": f"{job_id}:{to_ms(T + i * SECOND)}", "job_id": job_id, "namespace": "ns", "name": "job",
         "spec": buffered, "logical_time": T + i * SECOND, "scheduled_for": T + i * SECOND + 300 * MS,
         "trigger_type": "scheduled", "buffered_at": T + i * SECOND}
        for i in range(2)
    ] + [
        {"run_id": "x:1", "job_id": "x", "namespace": "ns", "name": "bad", "spec": {"schedule": "bad"},
         "logical_time": T, "scheduled_for": T, "trigger_type": "scheduled", "buffered_at": T},
        {"run_id": "y:1", "job_id": "y", "namespace": "ns", "name": "pooled",
         "spec": {**buffered, "workerPool": "gpu"}, "logical_time": T, "scheduled_for": T,
         "trigger_type": "catchup", "buffered_at": T},
    ]
    messages = lost_buffered(rows)
    assert [(m.run_id, m.attempt, m.trigger.value, m.logical_ms, m.scheduled_ms, m.expires_ms) for m in messages] == [
        (rows[i]["run_id"], 1, "scheduled", to_ms(T + i * SECOND), to_ms(T + i * SECOND) + 300, None)
        for i in range(2)]
    assert [m.run_id for m in lost_buffered(rows, pool="gpu")] == ["y:1"]
