"""Retry as a small policy object: how many attempts, and how long to wait before each."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sundial.core.spec import BackoffType, RetrySpec


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 3
    exponential: bool = True
    delay_seconds: float = 5.0
    max_delay_seconds: float = 3600.0

    @classmethod
    def from_spec(cls, spec: RetrySpec) -> RetryPolicy:
        return cls(
            attempts=spec.attempts,
            exponential=spec.backoff.type is BackoffType.EXPONENTIAL,
            delay_seconds=spec.backoff.delay_seconds,
            max_delay_seconds=spec.backoff.max_delay_seconds,
        )

    def should_retry(self, failed_attempt: int) -> bool:
        return failed_attempt < self.attempts

    def delay_after(self, failed_attempt: int, requested: float | None = None) -> float:
        """Seconds to wait before the attempt after `failed_attempt` (1-based).

        Exponential doubles from the base like BullMQ: 5 s, 10 s, 20 s, ... A target's own
        `Retry(delay=...)` wins, still capped so a bad value cannot park a run for years.
        """
        if requested is not None:
            return min(max(requested, 0.0), self.max_delay_seconds)
        factor = 2 ** (failed_attempt - 1) if self.exponential else 1
        return min(self.delay_seconds * factor, self.max_delay_seconds)

    def to_dict(self) -> dict[str, Any]:
        return {
            "attempts": self.attempts,
            "exponential": self.exponential,
            "delay": self.delay_seconds,
            "max_delay": self.max_delay_seconds,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RetryPolicy:
        return cls(
            attempts=int(data["attempts"]),
            exponential=bool(data["exponential"]),
            delay_seconds=float(data["delay"]),
            max_delay_seconds=float(data["max_delay"]),
        )
