"""What the worker's /readyz answers: whether this replica can do its job right now.

A worker fires and runs from Redis; PostgreSQL only receives its records, which wait in the
recorder's bounded buffer while PostgreSQL is away. So readiness follows Redis and the room
left in that buffer, not PostgreSQL: failing readiness during a PostgreSQL outage would pause
every rollout while firing and running go on. PostgreSQL's state is reported as a degraded
detail (and `sundial_backend_up{backend="postgresql"}` drives `SundialPostgresUnreachable`).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Probe:
    """What the handler found; each error is None when that check passed."""

    stopping: bool
    redis_error: str | None
    postgres_error: str | None
    unrecorded: int  # finished runs (and starts) waiting for PostgreSQL
    max_unrecorded: int
    in_flight: int


def readiness(probe: Probe) -> tuple[int, dict[str, object]]:
    """(HTTP status, JSON body) of /readyz for this probe."""
    body: dict[str, object] = {
        "in_flight": probe.in_flight,
        "unrecorded": probe.unrecorded,
        "max_unrecorded": probe.max_unrecorded,
        "postgresql": "ok" if probe.postgres_error is None else f"unreachable: {probe.postgres_error}",
    }
    degraded = [] if probe.postgres_error is None else [
        "postgresql unreachable: run records wait in memory (bounded) and are written when it returns"]
    if probe.stopping:
        reason: str | None = "shutting down"
    elif probe.redis_error is not None:
        reason = f"redis: {probe.redis_error}"
    elif probe.unrecorded >= probe.max_unrecorded:
        reason = (f"record buffer full: {probe.unrecorded} records wait for PostgreSQL"
                  f" (bound {probe.max_unrecorded}); this worker takes no new runs until they are written")
    else:
        reason = None
    body["ready"] = reason is None
    if reason is not None:
        body["reason"] = reason
    if degraded:
        body["degraded"] = degraded
    return (200 if reason is None else 503), body
