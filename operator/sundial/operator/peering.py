"""Is this replica the active one? kopf's peering rule, applied to the operator's own loops.

kopf pauses its handlers while a peer with a higher or equal priority is alive, but keeps
that decision to itself; the status sync and the drift repair are our own tasks, so they read
the same peering object and apply the same rule (kopf/_core/engines/peering.py,
`process_peering_event`): act only while no *other* live peer has a priority >= ours.
Disagreement with kopf can only last one keep-alive, and both sides are idempotent.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from sundial.core.clock import Clock

# kopf's default when a peer does not say (kopf.PeeringSettings.lifetime).
DEFAULT_LIFETIME_SECONDS = 60


def _alive(info: Mapping[str, Any], now: datetime) -> bool:
    try:
        seen = datetime.fromisoformat(str(info["lastseen"]))
        lifetime = int(info.get("lifetime", DEFAULT_LIFETIME_SECONDS))
    except (KeyError, TypeError, ValueError):
        return False
    return seen + timedelta(seconds=lifetime) > now


def is_active(peers: Mapping[str, Any], identity: str, priority: int, now: datetime) -> bool:
    """`peers` is a peering object's `status`: identity -> {priority, lifetime, lastseen}.

    Until our own keep-alive is in there, kopf may not have decided either: not active.
    """
    own = peers.get(identity)
    if not isinstance(own, Mapping) or not _alive(own, now):
        return False
    for peer, info in peers.items():
        if peer == identity or not isinstance(info, Mapping) or not _alive(info, now):
            continue
        if int(info.get("priority", 0)) >= priority:
            return False
    return True


PeeringReader = Callable[[], Awaitable[list[Mapping[str, Any]]]]


class PeeringGate:
    """Answers `active()` from the peering objects, re-read at most every `refresh` seconds.

    Standalone (no reader) is always active. A read that fails answers "not active": a replica
    that cannot see its peers must not assume it is alone.
    """

    def __init__(
        self, reader: PeeringReader | None, identity: str, priority: int, clock: Clock, refresh: float = 2.0
    ) -> None:
        self._reader = reader
        self.identity = identity
        self.priority = priority
        self._clock = clock
        self._refresh = refresh
        self._checked_at: float | None = None
        self._active = reader is None

    async def alone(self) -> bool:
        """No live replica is in the peering objects (standalone: always). Whoever starts alone
        acts first; a replica that cannot read its peers does not assume so."""
        if self._reader is None:
            return True
        try:
            statuses = await self._reader()
        except Exception:
            return False
        wall = self._clock.now()
        return not any(
            isinstance(info, Mapping) and _alive(info, wall) for status in statuses for info in status.values()
        )

    async def active(self) -> bool:
        if self._reader is None:
            return True
        now = self._clock.monotonic()
        if self._checked_at is not None and now - self._checked_at < self._refresh:
            return self._active
        self._checked_at = now
        try:
            statuses = await self._reader()
        except Exception:
            self._active = False
            return False
        wall = self._clock.now()
        self._active = bool(statuses) and all(
            is_active(status, self.identity, self.priority, wall) for status in statuses
        )
        return self._active
