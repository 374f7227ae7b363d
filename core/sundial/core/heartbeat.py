"""A worker's heartbeat: the one definition of what the `workers` hash holds per worker.

The worker writes it (`WorkerHeartbeat.to_json` through `Broker.heartbeat_worker`); the
operator, the dashboard and `sundial doctor` read it through `Broker.live_workers`, which parses
it here, once. A record that does not parse is treated as a worker long gone, never as a crash.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class WorkerHeartbeat:
    seen_ms: int
    """The worker's own clock when it beat (Unix ms): doctor compares it with Redis's."""
    targets: tuple[str, ...] = ()
    concurrency: int | None = None
    in_flight: int = 0

    def to_json(self) -> str:
        return json.dumps({"seen_ms": self.seen_ms, "targets": list(self.targets),
                           "concurrency": self.concurrency, "in_flight": self.in_flight})

    @classmethod
    def from_json(cls, raw: str | bytes) -> WorkerHeartbeat | None:
        """The heartbeat in `raw`, or None when it is not one (any version's extra keys are ignored)."""
        try:
            data = json.loads(raw)
            targets = data.get("targets") or []
            concurrency = data.get("concurrency")
            return cls(
                seen_ms=int(data["seen_ms"]),
                targets=tuple(sorted(str(target) for target in targets)) if isinstance(targets, list) else (),
                concurrency=int(concurrency) if concurrency is not None else None,
                in_flight=int(data.get("in_flight") or 0),
            )
        except (ValueError, TypeError, KeyError, AttributeError):
            return None


def offered_targets(heartbeats: Iterable[WorkerHeartbeat]) -> dict[str, int]:
    """Target name -> how many of these workers offer it."""
    offered: dict[str, int] = {}
    for heartbeat in heartbeats:
        for target in heartbeat.targets:
            offered[target] = offered.get(target, 0) + 1
    return offered


LiveWorkers = Mapping[str, WorkerHeartbeat]
