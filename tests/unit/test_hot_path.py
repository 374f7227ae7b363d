"""Pure pieces of the hot path: the queue message's fields, the fire-record fold, a run's stored output."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from sundial.core.retry import RetryPolicy
from sundial.core.runs import JobRef, RunMessage, RunStatus, RunTemplate, Trigger, parse_template
from sundial.core.spec import ConcurrencyPolicy, ScheduledJobSpec
from sundial.core.store import BufferedSlot, FireRecord
from sundial.worker.executor import MAX_OUTPUT_BYTES, _success
from sundial.worker.recorder import _fold, period_for

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _template() -> RunTemplate:
    spec = ScheduledJobSpec.model_validate({"target": "noop", "schedule": "* * * * *", "timeZone": "UTC"})
    return RunTemplate.from_spec(JobRef("00000000-0000-0000-0000-000000000001", "ns", "job"), spec)


def test_a_message_round_trips_with_its_deadline() -> None:
    message = RunMessage(run_id="j:1000", template=_template(), trigger=Trigger.SCHEDULED, attempt=1,
                         logical_ms=1000, scheduled_ms=1000, enqueued_ms=1005, expires_ms=6000)
    assert RunMessage.from_fields(message.to_fields()) == message


def test_a_message_without_a_deadline_field_still_parses() -> None:
    """Messages an older ticker queued carry no `exp`: they never expire."""
    fields = RunMessage(run_id="j:1000", template=_template(), trigger=Trigger.SCHEDULED, attempt=1,
                        logical_ms=1000, scheduled_ms=1000, enqueued_ms=1005).to_fields()
    del fields["exp"]
    assert RunMessage.from_fields(fields).expires_ms is None


def test_a_retry_never_expires() -> None:
    message = RunMessage(run_id="j:1000", template=_template(), trigger=Trigger.SCHEDULED, attempt=1,
                         logical_ms=1000, scheduled_ms=1000, enqueued_ms=1005, expires_ms=6000)
    assert message.next_attempt(9000).expires_ms is None


def test_templates_are_parsed_once_per_text() -> None:
    raw = _template().to_json()
    assert parse_template(raw) is parse_template(str(raw))  # equal text, another object: same parse
    assert parse_template(raw).retry == RetryPolicy.from_dict(_template().retry.to_dict())
    assert parse_template(raw).concurrency_policy is ConcurrencyPolicy.ALLOW


def _at(second: int | None) -> datetime | None:
    return None if second is None else T0 + timedelta(seconds=second)


def _buffered(second: int) -> BufferedSlot:
    at = T0 + timedelta(seconds=second)
    return BufferedSlot(run_id=f"j:{second}", logical_time=at, scheduled_for=at, trigger=Trigger.SCHEDULED)


@pytest.mark.parametrize(("earlier", "later", "folded"), [
    # (last slot, missed, buffered) of each; the next run is always the later record's
    ((1, 1, ()), (None, 2, ()), (1, 3, ())),
    ((1, 0, ()), (2, 0, ()), (2, 0, ())),  # on time, every second: the later record as it is
    ((None, 0, ()), (None, 1, ()), (None, 1, ())),
    ((3, 0, ()), (2, 0, ()), (3, 0, ())),  # the latest slot wins whichever record holds it
    ((1, 0, ()), (None, 0, ()), (1, 0, ())),
    ((1, 0, (1,)), (2, 0, (2,)), (2, 0, (1, 2))),
])
def test_fire_records_of_one_job_fold_into_one(earlier: tuple[int | None, int, tuple[int, ...]],
                                                 later: tuple[int | None, int, tuple[int, ...]],
                                                 folded: tuple[int | None, int, tuple[int, ...]]) -> None:
    def record(next_second: int, fields: tuple[int | None, int, tuple[int, ...]]) -> FireRecord:
        slot, missed, buffered = fields
        return FireRecord("j", next_run_at=_at(next_second), last_slot=_at(slot), missed=missed,
                          buffered=tuple(_buffered(second) for second in buffered))

    assert _fold(record(2, earlier), record(3, later)) == record(3, folded)


@pytest.mark.parametrize(("rows", "interval", "rows_per_second", "period"), [
    (1_000, 5.0, 1_000.0, 5.0),  # under the rate: the interval
    (5_000, 5.0, 1_000.0, 5.0),
    (10_000, 5.0, 1_000.0, 10.0),  # 10,000 every-second jobs: each row every 10 s, 1,000 rows a second
    (0, 5.0, 1_000.0, 5.0),
    (10_000, 5.0, 0.0, 5.0),  # no limit
    (10_000, 0.0, 1_000.0, 0.0),  # at once, as asked
])
def test_a_period_stretches_to_keep_the_job_rows_under_their_rate(rows: int, interval: float, rows_per_second: float,
                                                                  period: float) -> None:
    assert period_for(rows, interval, rows_per_second) == period


@pytest.mark.parametrize("output", [
    None, 7, True, "done", {"ok": True}, {"count": 3, "id": "a", "none": None},
    {"nested": {"a": [1, 2]}}, [1, "two"], {"ratio": 0.5}, {"x" * 300: 1}, {str(i): i for i in range(100)},
])
def test_an_output_is_stored_as_json_gives_it_back(output: Any) -> None:
    """The fast path for flat outputs must give what the JSON round trip gives."""
    outcome = _success(output)
    assert (outcome.status, outcome.output) == (RunStatus.SUCCESS, output)


def test_a_flat_output_is_copied_so_a_target_changing_it_later_changes_no_record() -> None:
    output = {"ok": True}
    recorded = _success(output).output
    output["ok"] = False
    assert recorded == {"ok": True}


@pytest.mark.parametrize("output", [math.nan, {"x": math.inf}, [math.inf]])
def test_an_output_json_cannot_carry_fails_the_run(output: Any) -> None:
    """NaN would reach PostgreSQL as invalid JSON and fail the whole batch of records."""
    outcome = _success(output)
    assert outcome.status is RunStatus.FAILED
    assert "not JSON" in (outcome.error or "")


@pytest.mark.parametrize(("output", "stored"), [
    ({1: "a"}, {"1": "a"}), (("a", 1), ["a", 1]), ({"when": T0}, {"when": str(T0)}),
])
def test_an_output_json_would_change_is_stored_as_json_gives_it_back(output: Any, stored: Any) -> None:
    assert _success(output).output == stored


def test_an_oversized_output_is_truncated() -> None:
    outcome = _success({"blob": "x" * MAX_OUTPUT_BYTES})
    assert outcome.output["truncated"] is True
    assert len(outcome.output["preview"]) == 2048
