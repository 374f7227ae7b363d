"""Backfill planning: which slots a window holds, and the requests refused with why."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sundial.core.backfill import (
    BackfillError,
    BackfillRequest,
    SlotState,
    backfill_slots,
    checked_request,
    next_batch,
    runs_one_at_a_time,
)
from sundial.core.runs import RunStatus
from sundial.core.spec import ScheduledJobSpec

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
UID = "2f6c1f7e-5b1a-4c55-9a63-3f0c2b7d9e10"


def spec(**fields: object) -> ScheduledJobSpec:
    return ScheduledJobSpec.model_validate({"target": "noop", "timeZone": "UTC", **fields})


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


@pytest.mark.parametrize(("fields", "start", "end", "expected"), [
    # Both ends inclusive.
    ({"schedule": "0 * * * *"}, "2026-03-01T00:00Z", "2026-03-01T02:00Z",
     ["2026-03-01T00:00Z", "2026-03-01T01:00Z", "2026-03-01T02:00Z"]),
    ({"schedule": "0 * * * *"}, "2026-03-01T00:01Z", "2026-03-01T00:59Z", []),
    # Exclusions drop slots; several schedules merge, a shared instant once.
    ({"schedule": "0 * * * *", "exclude": ["0 1 * * *"]}, "2026-03-01T00:00Z", "2026-03-01T02:00Z",
     ["2026-03-01T00:00Z", "2026-03-01T02:00Z"]),
    ({"schedule": "0 * * * *", "schedules": [{"schedule": "30 0 * * *"}, {"schedule": "0 1 * * *"}]},
     "2026-03-01T00:00Z", "2026-03-01T01:00Z", ["2026-03-01T00:00Z", "2026-03-01T00:30Z", "2026-03-01T01:00Z"]),
    ({"schedule": "0 9 * * *", "exclude": ["2026-03-02"]}, "2026-03-01T00:00Z", "2026-03-03T23:00Z",
     ["2026-03-01T09:00Z", "2026-03-03T09:00Z"]),
    # The active window bounds them: slots outside it were never slots.
    ({"schedule": "0 * * * *", "startTime": "2026-03-01T01:00:00Z"}, "2026-03-01T00:00Z", "2026-03-01T02:00Z",
     ["2026-03-01T01:00Z", "2026-03-01T02:00Z"]),
    # In the job's own time zone.
    ({"schedule": "0 0 * * *", "timeZone": "America/Sao_Paulo"}, "2026-03-01T00:00Z", "2026-03-02T12:00Z",
     ["2026-03-01T03:00Z", "2026-03-02T03:00Z"]),
    # Jitter does not move a backfilled slot.
    ({"schedule": "0 * * * *", "jitterSeconds": 600}, "2026-03-01T00:00Z", "2026-03-01T00:00Z",
     ["2026-03-01T00:00Z"]),
])
def test_the_slots_of_a_window(fields: dict[str, object], start: str, end: str, expected: list[str]) -> None:
    slots = backfill_slots(spec(**fields), UID, BackfillRequest(at(start), at(end)), NOW)
    assert slots == [at(slot) for slot in expected]


@pytest.mark.parametrize(("start", "end", "message"), [
    ("2026-03-02T00:00Z", "2026-03-01T00:00Z", "is before 'from'"),
    ("2026-03-01T00:00Z", "2026-03-10T12:00:01Z", "is in the future"),
    ("2026-01-01T00:00Z", "2026-03-01T00:00Z", "more than 1000 slots; split it"),
])
def test_refused_windows(start: str, end: str, message: str) -> None:
    with pytest.raises(BackfillError, match=message):
        backfill_slots(spec(schedule="0 * * * *"), UID, BackfillRequest(at(start), at(end)), NOW)


def test_the_cap_counts_slots_not_time() -> None:
    window = BackfillRequest(at("2026-03-01T00:00Z"), at("2026-03-01T16:39Z"))
    assert len(backfill_slots(spec(schedule="* * * * *"), UID, window, NOW)) == 1000
    with pytest.raises(BackfillError, match="more than 1000"):
        backfill_slots(spec(schedule="* * * * *"), UID, BackfillRequest(window.start, at("2026-03-01T16:40Z")), NOW)


@pytest.mark.parametrize(("text", "message"), [
    ("not json", "not JSON"),
    ("[1]", "must be a JSON object"),
    ('{"to": "2026-03-01T00:00:00Z"}', "'from' is required"),
    ('{"from": "2026-03-01T00:00:00", "to": "2026-03-01T00:00:00Z"}', "needs an offset"),
    ('{"from": "yesterday", "to": "2026-03-01T00:00:00Z"}', "not an RFC 3339 time"),
    ('{"from": "2026-03-01T00:00:00Z", "to": "2026-03-01T00:00:00Z", "sequential": "yes"}', "true or false"),
])
def test_refused_annotations(text: str, message: str) -> None:
    with pytest.raises(BackfillError, match=message):
        BackfillRequest.from_json(text)


def test_a_request_reads_back_as_written() -> None:
    request = BackfillRequest(at("2026-03-01T00:00Z"), at("2026-03-01T05:00+02:00"), True, "ticket-9")
    assert BackfillRequest.from_json(request.to_json()) == request


@pytest.mark.parametrize(("policy", "sequential", "expected"), [
    ("Allow", False, False), ("Allow", True, True), ("Forbid", False, True), ("Replace", False, True),
    ("BufferOne", False, True), ("BufferAll", False, True),
])
def test_who_runs_one_at_a_time(policy: str, sequential: bool, expected: bool) -> None:
    request = BackfillRequest(NOW - timedelta(hours=1), NOW, sequential)
    assert runs_one_at_a_time(spec(schedule="0 * * * *", concurrencyPolicy=policy), request) is expected


def test_an_invalid_spec_is_refused_before_asking() -> None:
    with pytest.raises(BackfillError, match="spec is invalid"):
        checked_request({"schedule": "not cron", "target": "noop"}, UID, NOW - timedelta(hours=1), NOW, False, "x",
                        NOW)


def test_an_exclusion_list_that_leaves_no_slot_is_a_clear_refusal() -> None:
    every_minute_excluded = spec(schedule="* * * * *", exclude=["* * * * *"])
    with pytest.raises(BackfillError, match="cannot list the window's slots"):
        backfill_slots(every_minute_excluded, UID, BackfillRequest(NOW - timedelta(days=30), NOW), NOW)


RUNNING, SUCCEEDED = SlotState(RunStatus.RUNNING), SlotState(RunStatus.SUCCESS)
FAILED, FAILED_RETRY_TO_COME = SlotState(RunStatus.FAILED), SlotState(RunStatus.FAILED, retry_pending=True)
TIMED_OUT_RETRY_TO_COME = SlotState(RunStatus.TIMED_OUT, retry_pending=True)
SKIPPED = SlotState(RunStatus.SKIPPED)


@pytest.mark.parametrize(("states", "one_at_a_time", "expected"), [
    # All at once: every slot without a run, whatever the others do.
    ({}, False, (["a", "b", "c"], True)),
    ({"a": FAILED_RETRY_TO_COME}, False, (["b", "c"], True)),
    # One at a time: the first slot without a run, once no slot is unfinished.
    ({}, True, (["a"], False)),
    ({"a": SUCCEEDED}, True, (["b"], False)),
    ({"a": FAILED, "b": SKIPPED}, True, (["c"], True)),
    ({"a": RUNNING}, True, ([], False)),
    # A failed slot whose retry is still to come holds the next one back.
    ({"a": FAILED_RETRY_TO_COME}, True, ([], False)),
    ({"a": TIMED_OUT_RETRY_TO_COME}, True, ([], False)),
    ({"a": SUCCEEDED, "b": SUCCEEDED, "c": FAILED_RETRY_TO_COME}, True, ([], False)),
    ({"a": SUCCEEDED, "b": SUCCEEDED, "c": SUCCEEDED}, True, ([], True)),
])
def test_next_batch(states: dict[str, SlotState], one_at_a_time: bool, expected: tuple[list[str], bool]) -> None:
    assert next_batch(["a", "b", "c"], states, one_at_a_time) == expected
