"""The run-derived status, the Events worth posting and the status write budgets, by tables."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from sundial.core.clock import ManualClock
from sundial.core.status import ERROR_SUMMARY_CHARS, ScheduledJobStatus
from sundial.operator.ratelimit import Spacing, TokenBucket
from sundial.operator.status_builder import (
    SYNC_KEYS,
    Health,
    RunEvent,
    build_status,
    health_of,
    recent_runs,
    transition,
)

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
JOB_ID = "0b8f3a52-59a5-4f0c-9a43-3c9d1c7e2f10"


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def job(**fields: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": JOB_ID, "namespace": "ns", "name": "job", "enabled": True, "generation": 1,
        "next_run_at": at(60), "last_schedule_time": None, "last_run_id": None, "last_run_at": None,
        "last_status": None, "last_duration_ms": None, "last_error": None, "last_success_at": None,
        "run_count": 0, "success_count": 0, "fail_count": 0, "missed_count": 0, "updated_at": T0,
    }
    row.update(fields)
    return row


def run(slot: float | None, status: str, *, attempt: int = 1, trigger: str = "scheduled", started: float = 0.0,
        finished: float | None = None, error: str | None = None, retry_at: float | None = None,
        run_id: str | None = None, worker: str | None = "w1") -> dict[str, Any]:
    """An attempt row as Store.runs returns it; a manual run (slot None) is keyed by `run_id`."""
    logical = at(slot if slot is not None else started)
    return {
        "run_id": run_id or f"{JOB_ID}:{int(logical.timestamp() * 1000)}",
        "job_id": JOB_ID, "logical_time": logical, "scheduled_for": at(slot) if slot is not None else None,
        "trigger_type": trigger, "status": status, "attempt": attempt, "started_at": at(started),
        "completed_at": at(finished) if finished is not None else None,
        "duration_ms": int((finished - started) * 1000) if finished is not None else None,
        "output": None, "error_message": error, "worker": worker, "reason": None, "deliveries": 1,
        "next_retry_at": at(retry_at) if retry_at is not None else None,
    }


def newest_first(*rows: dict[str, Any]) -> list[dict[str, Any]]:
    # Store.runs order: logical_time DESC, attempt DESC.
    return sorted(rows, key=lambda r: (r["logical_time"], r["attempt"]), reverse=True)


# ---- build_status ------------------------------------------------------------------------


def test_a_job_that_never_ran_reports_zeros_and_clears_every_field() -> None:
    status = build_status(job(), [], [])
    assert status == {
        "nextRunTime": "2026-03-01T12:01:00Z", "lastRunTime": None, "lastScheduleTime": None,
        "lastSuccessfulTime": None, "lastStatus": None, "lastDurationMs": None, "lastError": None,
        "runCount": 0, "successCount": 0, "failCount": 0, "missedCount": 0, "active": [], "recentRuns": [],
        "remainingRuns": None,
    }
    assert set(status) == set(SYNC_KEYS)


def test_never_writes_the_fields_the_handlers_own() -> None:
    status = build_status(job(), [], [])
    assert not {"conditions", "observedGeneration", "lastRunNowRequest"} & set(status)


def test_a_finished_run_fills_the_last_fields_and_counts() -> None:
    first = run(10, "success", started=10.2, finished=10.5)
    row = job(last_schedule_time=at(10), last_run_id=first["run_id"], last_run_at=at(10.5), last_status="success",
              last_duration_ms=300, last_success_at=at(10.5), run_count=1, success_count=1, missed_count=2,
              next_run_at=at(11))
    status = build_status(row, [], [first])
    assert status["lastRunTime"] == "2026-03-01T12:00:10.200Z", "when the run started, not when it ended"
    assert status["lastScheduleTime"] == "2026-03-01T12:00:10Z"
    assert status["lastSuccessfulTime"] == "2026-03-01T12:00:10.500Z"
    assert (status["lastStatus"], status["lastDurationMs"], status["lastError"]) == ("Succeeded", 300, None)
    assert (status["runCount"], status["successCount"], status["failCount"], status["missedCount"]) == (1, 1, 0, 2)
    assert status["nextRunTime"] == "2026-03-01T12:00:11Z"
    assert status["recentRuns"] == [{
        "runId": first["run_id"], "slot": "2026-03-01T12:00:10Z", "trigger": "Scheduled", "status": "Succeeded",
        "attempt": 1, "durationMs": 300, "completionTime": "2026-03-01T12:00:10.500Z", "error": None,
    }]


@pytest.mark.parametrize(
    ("case", "running", "history", "row_fields", "expected"),
    [
        ("nothing ran", [], [], {}, None),
        ("old run out of the fetched history: its finish stands in", [], [],
         {"last_run_id": "gone", "last_run_at": at(5)}, "2026-03-01T12:00:05Z"),
        ("a retried run started at its first attempt",
         [], [run(10, "failed", attempt=1, started=10, finished=11, retry_at=13, run_id="r"),
              run(10, "success", attempt=2, trigger="retry", started=13, finished=14, run_id="r")],
         {"last_run_id": "r", "last_run_at": at(14)}, "2026-03-01T12:00:10Z"),
        ("a run in flight is the latest", [run(20, "running", started=20.1)],
         [run(10, "success", started=10, finished=11, run_id="r")],
         {"last_run_id": "r", "last_run_at": at(11)}, "2026-03-01T12:00:20.100Z"),
    ],
)
def test_last_run_time_is_when_the_latest_run_started(
    case: str, running: list[dict[str, Any]], history: list[dict[str, Any]], row_fields: dict[str, Any],
    expected: str | None,
) -> None:
    status = build_status(job(**row_fields), running, newest_first(*history, *running))
    assert status["lastRunTime"] == expected, case


def test_active_lists_the_runs_in_flight() -> None:
    running = [run(20, "running", started=20.1, worker="w7"), run(None, "running", trigger="manual", started=21,
                                                                   run_id="m", worker=None)]
    status = build_status(job(), running, [])
    assert status["active"] == [
        {"runId": running[0]["run_id"], "slot": "2026-03-01T12:00:20Z", "attempt": 1,
         "startTime": "2026-03-01T12:00:20.100Z", "worker": "w7"},
        {"runId": "m", "slot": None, "attempt": 1, "startTime": "2026-03-01T12:00:21Z", "worker": None},
    ]


def test_a_long_error_is_truncated_not_refused() -> None:
    status = build_status(job(last_status="failed", last_error="x" * 5000), [], [])
    assert len(status["lastError"]) == ERROR_SUMMARY_CHARS
    assert status["lastError"].endswith("…")


def test_status_shows_the_first_line_of_an_error_not_its_traceback() -> None:
    error = 'ValueError: bad input\n  File "x.py", line 1, in f\n    raise ValueError("bad input")'
    status = build_status(job(last_status="failed", last_error=error), [], [])
    assert status["lastError"] == "ValueError: bad input"


def test_the_result_is_a_valid_status() -> None:
    rows = [run(float(s), "success", started=s, finished=s + 0.1) for s in range(10)]
    status = build_status(job(run_count=10, success_count=10), [], newest_first(*rows))
    assert ScheduledJobStatus.model_validate(status).run_count == 10


# ---- recentRuns --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "history", "expected"),
    [
        ("newest first, at most five",
         [run(float(s), "success", started=s, finished=s + 0.5) for s in range(8)],
         [("success", 1, "scheduled", 7), ("success", 1, "scheduled", 6), ("success", 1, "scheduled", 5),
          ("success", 1, "scheduled", 4), ("success", 1, "scheduled", 3)]),
        ("one entry per run, from its last attempt; trigger from its first",
         [run(10, "failed", attempt=1, started=10, finished=11, retry_at=12, error="boom"),
          run(10, "failed", attempt=2, trigger="retry", started=12, finished=13, error="boom again")],
         [("failed", 2, "scheduled", 10)]),
        ("a failed attempt with a retry to come is not finished",
         [run(10, "failed", attempt=1, started=10, finished=11, retry_at=15)],
         []),
        ("a retry in flight is not finished",
         [run(10, "failed", attempt=1, started=10, finished=11, retry_at=12),
          run(10, "running", attempt=2, trigger="retry", started=12)],
         []),
        ("skipped and timed-out runs count as finished",
         [run(10, "skipped", started=10, finished=10), run(11, "timed_out", started=11, finished=12)],
         [("timed_out", 1, "scheduled", 11), ("skipped", 1, "scheduled", 10)]),
        ("ordered by when they finished, manual runs included",
         [run(10, "success", started=10, finished=30), run(None, "success", trigger="manual", started=15,
                                                             finished=16, run_id="m")],
         [("success", 1, "scheduled", 10), ("success", 1, "manual", None)]),
    ],
)
def test_recent_runs(case: str, history: list[dict[str, Any]],
                     expected: list[tuple[str, int, str, int | None]]) -> None:
    got = [
        (r.status.value, r.attempt, r.trigger.value, None if r.slot is None else int((r.slot - T0).total_seconds()))
        for r in recent_runs(newest_first(*history))
    ]
    assert got == expected, case


def test_recent_run_keeps_the_last_attempts_error_and_duration() -> None:
    [recent] = recent_runs(newest_first(
        run(10, "failed", attempt=1, started=10, finished=11, retry_at=12, error="first"),
        run(10, "failed", attempt=2, trigger="retry", started=12, finished=12.25, error="second"),
    ))
    assert (recent.error, recent.duration_ms, recent.completion_time) == ("second", 250, at(12.25))


# ---- Events on transitions ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("last_status", "health"),
    [(None, Health.OK), ("success", Health.OK), ("failed", Health.FAILING), ("timed_out", Health.FAILING),
     ("cancelled", None), ("skipped", None)],
)
def test_health_of(last_status: str | None, health: Health | None) -> None:
    assert health_of(last_status) is health


@pytest.mark.parametrize(
    ("case", "before", "last_status", "after", "event"),
    [
        ("first sight of a healthy job is only learnt", None, "success", Health.OK, None),
        ("first sight of a failing job is only learnt (a restart repeats nothing)", None, "failed",
         Health.FAILING, None),
        ("success after success", Health.OK, "success", Health.OK, None),
        ("first failure after success", Health.OK, "failed", Health.FAILING, ("Warning", "RunFailed")),
        ("a timeout is a failure", Health.OK, "timed_out", Health.FAILING, ("Warning", "RunFailed")),
        ("failure after failure", Health.FAILING, "failed", Health.FAILING, None),
        ("success after failure", Health.FAILING, "success", Health.OK, ("Normal", "Recovered")),
        ("a skipped run says nothing", Health.FAILING, "skipped", Health.FAILING, None),
        ("a job that never ran is healthy", None, None, Health.OK, None),
    ],
)
def test_transition(case: str, before: Health | None, last_status: str | None, after: Health | None,
                    event: tuple[str, str] | None) -> None:
    health, posted = transition(before, job(last_status=last_status, last_run_id="r1", last_error="boom"))
    assert health is after, case
    assert (None if posted is None else (posted.type, posted.reason)) == event, case


def test_a_new_job_failing_from_the_start_gets_one_warning() -> None:
    health, event = transition(None, job())  # seen before its first run
    events: list[RunEvent] = []
    for status in ("failed", "failed", "timed_out", "success", "success", "failed"):
        health, event = transition(health, job(last_status=status, last_run_id="r", last_error="boom"))
        if event is not None:
            events.append(event)
    assert [e.reason for e in events] == ["RunFailed", "Recovered", "RunFailed"]
    assert events[0].message == "run r failed: boom"


# ---- write budgets -----------------------------------------------------------------------


def test_token_bucket_allows_a_burst_then_the_rate() -> None:
    clock = ManualClock(T0)
    bucket = TokenBucket(rate=20.0, burst=20.0, clock=clock)
    assert sum(bucket.try_take() for _ in range(100)) == 20
    clock.advance(timedelta(seconds=0.5))
    assert sum(bucket.try_take() for _ in range(100)) == 10
    clock.advance(timedelta(seconds=60))
    assert sum(bucket.try_take() for _ in range(100)) == 20, "savings are capped at the burst"


def test_token_bucket_over_a_minute_never_exceeds_its_rate() -> None:
    clock = ManualClock(T0)
    bucket = TokenBucket(rate=20.0, burst=20.0, clock=clock)
    taken = 0
    for _ in range(600):  # a greedy caller every 100 ms for a minute
        taken += sum(bucket.try_take() for _ in range(50))
        clock.advance(timedelta(milliseconds=100))
    assert taken <= 20 + 20 * 60


def test_spacing_is_per_key() -> None:
    clock = ManualClock(T0)
    spacing: Spacing[str] = Spacing(interval=2.0, clock=clock)
    assert spacing.ready("a")
    spacing.mark("a")
    assert not spacing.ready("a")
    assert spacing.ready("b")
    clock.advance(timedelta(seconds=1.9))
    assert not spacing.ready("a")
    clock.advance(timedelta(seconds=0.1))
    assert spacing.ready("a")
    spacing.mark("a")
    spacing.forget("a")
    assert spacing.ready("a")
