"""Pure pieces of the hot path: the queue message's fields, the fire-record fold, the prefetch."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sundial.core.retry import RetryPolicy
from sundial.core.runs import JobRef, RunMessage, RunTemplate, Trigger, parse_template
from sundial.core.spec import ConcurrencyPolicy, ScheduledJobSpec
from sundial.core.store import FireRecord
from sundial.worker.recorder import _fold

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


def test_fire_records_of_one_job_fold_into_one() -> None:
    earlier = FireRecord("j", next_run_at=T0 + timedelta(seconds=2), last_slot=T0 + timedelta(seconds=1), missed=1)
    later = FireRecord("j", next_run_at=T0 + timedelta(seconds=3), last_slot=None, missed=2)
    assert _fold(earlier, later) == FireRecord("j", next_run_at=T0 + timedelta(seconds=3),
                                               last_slot=T0 + timedelta(seconds=1), missed=3)
