from __future__ import annotations

import pytest

from sundial.core.retry import RetryPolicy


@pytest.mark.parametrize(
    ("policy", "failed_attempt", "requested", "expected"),
    [
        (RetryPolicy(), 1, None, 5.0),
        (RetryPolicy(), 2, None, 10.0),
        (RetryPolicy(), 3, None, 20.0),
        (RetryPolicy(delay_seconds=1, max_delay_seconds=30), 10, None, 30.0),
        (RetryPolicy(exponential=False, delay_seconds=7), 4, None, 7.0),
        (RetryPolicy(), 1, 42.0, 42.0),
        (RetryPolicy(max_delay_seconds=60), 1, 10_000.0, 60.0),
        (RetryPolicy(), 1, -3.0, 0.0),
    ],
)
def test_delay_after(policy: RetryPolicy, failed_attempt: int, requested: float | None, expected: float) -> None:
    assert policy.delay_after(failed_attempt, requested) == expected


@pytest.mark.parametrize(("attempts", "failed_attempt", "expected"), [(3, 1, True), (3, 2, True), (3, 3, False),
                                                                      (1, 1, False)])
def test_should_retry_counts_the_first_attempt(attempts: int, failed_attempt: int, expected: bool) -> None:
    assert RetryPolicy(attempts=attempts).should_retry(failed_attempt) is expected


def test_round_trips_through_a_dict() -> None:
    policy = RetryPolicy(attempts=7, exponential=False, delay_seconds=1.5, max_delay_seconds=9)
    assert RetryPolicy.from_dict(policy.to_dict()) == policy
