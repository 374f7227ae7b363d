"""`ticker.stagger_plan`: which plans are cut to begin a job's next group of slots on its phase.
Pure: a plan and the instant it was planned for."""

from __future__ import annotations

import pytest

from sundial.core.broker import PlanCommand
from sundial.core.schedule import job_phase, staggered_group
from sundial.worker.ticker import stagger_plan

SLOT = 1_000_000  # ms, an even second


def _job_off_its_phase_at(slot_ms: int) -> str:
    """A job id whose pairs do not begin at `slot_ms` (its group there is cut to one slot)."""
    return next(f"job-{i}" for i in range(100)
                if staggered_group(slot_ms, slot_ms + 1000, 2, job_phase(f"job-{i}")) == 1)


JOB = _job_off_its_phase_at(SLOT)


def _plan(fires: list[int], next_due: int, starts: tuple[int, ...] = ()) -> PlanCommand:
    return PlanCommand(JOB, "1", fires[0], next_due, tuple((slot, "scheduled") for slot in fires), starts_ms=starts)


@pytest.mark.parametrize(("plan", "now_ms", "fires", "next_due"), [
    # A due slot and the one fire_together added, off the job's phase: the first alone.
    (_plan([SLOT, SLOT + 1000], SLOT + 2000), SLOT, [SLOT], SLOT + 1000),
    # On its phase a second later: as planned.
    (_plan([SLOT + 1000, SLOT + 2000], SLOT + 3000), SLOT + 1000, [SLOT + 1000, SLOT + 2000], SLOT + 3000),
    # Catch-up slots (all due) are never cut, whatever the phase.
    (_plan([SLOT, SLOT + 1000], SLOT + 2000), SLOT + 1500, [SLOT, SLOT + 1000], SLOT + 2000),
    # One slot: nothing to cut.
    (_plan([SLOT], SLOT + 1000), SLOT, [SLOT], SLOT + 1000),
    # Jittered: the entry is next due at the jittered start of the slot left out.
    (_plan([SLOT, SLOT + 1000], SLOT + 2250, (SLOT + 250, SLOT + 1250)), SLOT + 250, [SLOT], SLOT + 1250),
])
def test_only_slots_added_ahead_are_cut_to_the_jobs_phase(plan: PlanCommand, now_ms: int, fires: list[int],
                                                          next_due: int) -> None:
    staggered = stagger_plan(plan, now_ms)
    assert [slot for slot, _ in staggered.fires] == fires
    assert staggered.next_due_ms == next_due
    assert len(staggered.starts_ms) in (0, len(fires))
    assert staggered.expected_due_ms == plan.expected_due_ms, "applied against the same due"
