"""When a run is queued ahead of its slot, and until when a consumer holds it (sundial.worker.ahead)."""

from __future__ import annotations

import pytest

from sundial.worker.ahead import HeldRuns, apply_at_ms, hold_until_ms

SLOT = 1_700_000_000_000


@pytest.mark.parametrize(("concurrency", "ahead_ms", "expected"), [
    ("Allow", 500, SLOT - 500),
    ("Allow", 0, SLOT),
    # Decided against the runs still live, which only the slot can tell.
    ("Forbid", 500, SLOT),
    ("Replace", 500, SLOT),
    ("BufferOne", 500, SLOT),
    ("BufferAll", 500, SLOT),
])
def test_only_allow_is_queued_ahead(concurrency: str, ahead_ms: int, expected: int) -> None:
    assert apply_at_ms(SLOT, concurrency, ahead_ms) == expected


@pytest.mark.parametrize(("start_ms", "now_ms", "expected"), [
    (SLOT, SLOT - 400.0, float(SLOT)),  # read ahead: held until its slot
    (SLOT, SLOT - 0.5, float(SLOT)),  # half a millisecond early is still early
    (SLOT, float(SLOT), None),  # due: starts now
    (SLOT, SLOT + 30.0, None),  # late: starts now
    (None, SLOT - 400.0, None),  # a manual run has no slot
    (SLOT, SLOT - 60_000.0, SLOT - 60_000.0 + 5_000),  # a clock far behind: held 5 s at most
])
def test_a_run_is_held_until_its_slot_and_no_longer_than_the_bound(
        start_ms: int | None, now_ms: float, expected: float | None) -> None:
    assert hold_until_ms(start_ms, now_ms, 5_000) == expected


def test_held_runs_come_out_earliest_first_and_only_when_due() -> None:
    held: HeldRuns[str] = HeldRuns()
    for until, run in [(SLOT + 1000, "b1"), (SLOT, "a1"), (SLOT + 1000, "b2"), (SLOT, "a2"), (SLOT + 10, "c")]:
        held.push(until, run)
    assert len(held) == 5
    assert held.next_ms() == SLOT
    assert held.take(SLOT - 1) == []
    assert held.take(SLOT + 10) == [(SLOT, "a1"), (SLOT, "a2"), (SLOT + 10, "c")]
    assert held.next_ms() == SLOT + 1000
    assert held.take_all() == ["b1", "b2"]
    assert held.next_ms() is None
    assert len(held) == 0
