"""The spec model: the seed's defaults, and errors a person can act on."""

from __future__ import annotations

from typing import Any

import pytest

from sundial.core.spec import ConcurrencyPolicy, ScheduledJobSpec, SpecError, parse_spec


def test_defaults_carry_over_from_the_seed() -> None:
    spec = parse_spec({"target": "biz:pipeline", "schedule": "0 12,18,20 * * *"})
    assert spec.time_zone == "America/Sao_Paulo"
    assert spec.timeout_seconds == 300
    assert spec.retry.attempts == 3
    assert spec.retry.backoff.type == "Exponential"
    assert spec.retry.backoff.delay_seconds == 5
    assert (spec.successful_runs_history_limit, spec.failed_runs_history_limit) == (100, 200)
    assert spec.concurrency_policy is ConcurrencyPolicy.ALLOW
    assert spec.suspend is False


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"schedule": "* * * * *"}, "spec.target: exactly one of target and jobTemplate must be set"),
        ({"target": "noop", "schedule": "61 * * * *"}, "spec.schedule:"),
        ({"target": "noop", "schedule": "* * * * *", "timeZone": "Mars/Base"},
         "spec.timeZone: unknown time zone 'Mars/Base'"),
        ({"target": "noop", "schedule": "* * * * *", "timeoutSeconds": 0},
         "spec.timeoutSeconds: Input should be greater than or equal to 1"),
        ({"target": "noop", "schedule": "* * * * *", "concurrencyPolicy": "Sometimes"},
         "spec.concurrencyPolicy: Input should be 'Allow', 'Forbid', 'Replace', 'BufferOne' or 'BufferAll'"),
        ({"target": "Bad Target", "schedule": "* * * * *"}, "spec.target: String should match pattern"),
        ({"target": "noop", "schedule": "* * * * *", "retry": {"attempts": 0}},
         "spec.retry.attempts: Input should be greater than or equal to 1"),
        ({"target": "noop", "schedule": "* * * * *", "colour": "blue"}, "spec.colour: Extra inputs"),
    ],
)
def test_invalid_specs_name_the_field(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec(raw)
    assert message in str(caught.value)


def test_fingerprint_changes_with_what_fires() -> None:
    base = {"target": "noop", "schedule": "* * * * *"}
    assert parse_spec(base).fingerprint() == parse_spec(dict(base)).fingerprint()
    assert parse_spec(base).fingerprint() != parse_spec({**base, "params": {"a": 1}}).fingerprint()


def test_snake_and_camel_case_both_accepted() -> None:
    spec = ScheduledJobSpec(target="noop", schedule="@hourly", time_zone="UTC")
    assert spec.model_dump(by_alias=True)["timeZone"] == "UTC"
