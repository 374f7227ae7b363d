"""The worker heartbeat has one typed definition, read in one place."""

from __future__ import annotations

import pytest

from sundial.core.heartbeat import WorkerHeartbeat, offered_targets


def test_round_trip() -> None:
    beat = WorkerHeartbeat(seen_ms=1_700_000_000_000, targets=("http", "noop"), concurrency=5, in_flight=2)
    assert WorkerHeartbeat.from_json(beat.to_json()) == beat


def test_reads_what_another_version_wrote() -> None:
    raw = '{"seen_ms": "12", "targets": ["b", "a"], "in_flight": null, "something_new": 1}'
    assert WorkerHeartbeat.from_json(raw) == WorkerHeartbeat(seen_ms=12, targets=("a", "b"))


@pytest.mark.parametrize(
    "raw", ["", "not json", "[]", "{}", '{"seen_ms": "soon"}', '{"seen_ms": 1, "concurrency": "x"}'],
)
def test_anything_else_is_no_heartbeat(raw: str) -> None:
    assert WorkerHeartbeat.from_json(raw) is None


def test_offered_targets_counts_workers() -> None:
    beats = [WorkerHeartbeat(0, ("a", "b")), WorkerHeartbeat(0, ("a",)), WorkerHeartbeat(0)]
    assert offered_targets(beats) == {"a": 2, "b": 1}
