"""Write budgets for the status sync: a token bucket overall, a minimum spacing per object.

Both read a monotonic clock they are given, so tests move time by hand.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Generic, TypeVar

from sundial.core.clock import Clock

K = TypeVar("K", bound=Hashable)


class TokenBucket:
    """`rate` tokens per second, at most `burst` saved up."""

    def __init__(self, rate: float, burst: float, clock: Clock) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = burst
        self._at = clock.monotonic()

    def _refill(self) -> None:
        now = self._clock.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now

    def available(self) -> bool:
        self._refill()
        return self._tokens >= 1

    def try_take(self) -> bool:
        self._refill()
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True


class Spacing(Generic[K]):
    """At most one action per key every `interval` seconds."""

    def __init__(self, interval: float, clock: Clock) -> None:
        self.interval = interval
        self._clock = clock
        self._last: dict[K, float] = {}

    def ready(self, key: K) -> bool:
        last = self._last.get(key)
        return last is None or self._clock.monotonic() - last >= self.interval

    def mark(self, key: K) -> None:
        self._last[key] = self._clock.monotonic()

    def forget(self, key: K) -> None:
        self._last.pop(key, None)
