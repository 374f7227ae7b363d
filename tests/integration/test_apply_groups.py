"""APPLY_PLANS sends entries that share a plan as one group: outcomes still come back per entry,
in the order the plans were given, whatever the grouping, and a stale entry inside a group is
left alone while the others of its group fire."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from sundial.core.broker import Broker, PlanCommand
from sundial.core.clock import to_ms
from sundial.core.keys import run_id_for_slot
from sundial.core.store import Store
from tests.integration.engine import armed

pytestmark = pytest.mark.services

NOW = datetime(2030, 1, 1, 12, 0, 0, 500_000, tzinfo=UTC)


async def test_interleaved_groups_answer_per_entry_in_order(broker: Broker, store: Store) -> None:
    jobs = [(await armed(broker, store, NOW, f"g{i}", schedule="* * * * * *"))[0] for i in range(4)]
    entries = [await broker.entry(job.job_id) for job in jobs]
    assert all(entries)
    due = entries[0].next_due_ms if entries[0] else 0
    shared = ((due, "scheduled"),)
    other = ((due, "catchup"),)

    def plan(index: int, fires: tuple[tuple[int, str], ...], version: str | None = None) -> PlanCommand:
        entry = entries[index]
        assert entry is not None
        return PlanCommand(entry.job_id, version or entry.version, due, due + 1000, fires)

    # Groups interleave (shared, other, shared, shared) and the third entry's version is stale.
    plans = [plan(0, shared), plan(1, other), plan(2, shared, version="not-this-one"), plan(3, shared)]
    outcomes = await broker.apply_plans(broker.keys.all_shards()[0], plans, to_ms(NOW))

    assert outcomes == [None, None, ["stale"], None]
    queued = {fields["run"]: fields["trigger"] for _, fields in await broker.queued(broker.keys.all_shards()[0])}
    assert queued == {run_id_for_slot(jobs[0].job_id, due): "scheduled",
                      run_id_for_slot(jobs[1].job_id, due): "catchup",
                      run_id_for_slot(jobs[3].job_id, due): "scheduled"}
    after = [await broker.entry(job.job_id) for job in jobs]
    assert [entry.next_due_ms if entry else None for entry in after] == [due + 1000, due + 1000, due, due + 1000]
