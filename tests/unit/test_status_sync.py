"""The status sync as the one writer of `status`: what a handler's report turns into."""

from __future__ import annotations

import asyncio
from collections.abc import Container, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import psycopg

from sundial.core.clock import ManualClock
from sundial.kube.api import ObjectRef
from sundial.operator.ratelimit import Spacing, TokenBucket
from sundial.operator.status_sync import StatusReport, StatusSync

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
REF = ObjectRef("ns", "job", "0b8f3a52-59a5-4f0c-9a43-3c9d1c7e2f10")
READY = {"observedGeneration": 2, "conditions": [{"type": "Ready", "status": "True", "reason": "Scheduled"}]}


class Store:
    def __init__(self, rows: dict[str, dict[str, Any]], down: bool = False) -> None:
        self.rows = rows
        self.down = down

    async def jobs_by_id(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        if self.down:
            raise psycopg.OperationalError("connection refused")
        return {i: self.rows[i] for i in ids if i in self.rows}

    async def running_of(self, ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
        return {}

    async def job_states_changed_since(self, since: datetime | None) -> list[dict[str, Any]]:
        return []

    async def latest_runs_of(self, ids: Sequence[str], limit: int) -> dict[str, list[dict[str, Any]]]:
        return {}


class Kube:
    def __init__(self) -> None:
        self.patches: list[dict[str, Any]] = []

    async def patch_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> str | None:
        self.patches.append(dict(status))
        return str(len(self.patches))

    async def job_statuses(self, namespaces: Sequence[str]) -> dict[str, Mapping[str, Any]]:
        return {}


def sync(store: Store, kube: Kube, gone: Container[str] = ()) -> StatusSync:
    clock = ManualClock(NOW)
    return StatusSync(cast(Any, store), cast(Any, kube), cast(Any, None), clock, namespaces=[], poll_seconds=1,
                      bucket=TokenBucket(20, 20, clock), spacing=Spacing(2, clock), lookback=timedelta(seconds=5),
                      report_seconds=60, prune_seconds=300, gone=gone)


def row(**fields: Any) -> dict[str, Any]:
    return {"id": REF.uid, "namespace": "ns", "name": "job", "deleted": False, "run_count": 0,
            "next_run_at": NOW + timedelta(minutes=5), **fields}


async def test_a_report_goes_out_with_the_next_run_from_the_row_in_one_patch() -> None:
    kube = Kube()
    status = sync(Store({REF.uid: row()}), kube)
    assert await status.write_now([StatusReport(REF, READY)]) == ["1"]
    [patch] = kube.patches
    assert patch["observedGeneration"] == 2
    assert patch["nextRunTime"] == "2026-03-01T12:05:00Z"
    assert patch["runCount"] == 0

    # Reported again, with nothing new in the row: only the reported fields go.
    await status.write_now([StatusReport(REF, READY)])
    assert set(kube.patches[1]) == {"observedGeneration", "conditions"}


async def test_what_the_object_shows_already_is_not_sent() -> None:
    kube = Kube()
    status = sync(Store({REF.uid: row()}), kube)
    shown = {**READY, "nextRunTime": "2026-03-01T12:05:00Z", "runCount": 0, "active": [], "recentRuns": [],
             "successCount": 0, "failCount": 0, "missedCount": 0}
    versions = await status.write_now([StatusReport(REF, READY, shown=shown, resource_version="41")])
    assert (versions, kube.patches) == (["41"], [])


async def test_with_postgresql_down_the_reported_fields_go_alone() -> None:
    kube = Kube()
    await sync(Store({REF.uid: row()}, down=True), kube).write_now([StatusReport(REF, READY)])
    assert kube.patches == [READY]


async def test_a_job_without_a_row_gets_only_the_reported_fields() -> None:
    kube = Kube()
    await sync(Store({}), kube).write_now([StatusReport(REF, READY)])
    assert kube.patches == [READY]


async def test_a_job_seen_deleted_gets_no_write() -> None:
    # Its object is gone or going: a PATCH would be a 404, or a write racing the DELETE.
    kube = Kube()
    status = sync(Store({REF.uid: row()}), kube, gone={REF.uid})
    assert await status.write_now([StatusReport(REF, READY)]) == [None]
    assert kube.patches == []


async def test_reports_of_one_object_before_its_write_add_up() -> None:
    kube = Kube()
    status = sync(Store({}), kube)
    status.report(REF, READY)
    status.report(REF, {"lastRunNowRequest": "ticket-1"})
    status.seed({})
    await status.sync_once()
    assert kube.patches[0] == {**READY, "lastRunNowRequest": "ticket-1"}


class ActiveGate:
    async def active(self) -> bool:
        return True


async def test_a_held_sync_writes_nothing_until_the_hold_ends() -> None:
    kube, mass_delete = Kube(), [True]
    clock = ManualClock(NOW)
    status = StatusSync(cast(Any, Store({REF.uid: row()})), cast(Any, kube), cast(Any, ActiveGate()), clock,
                        namespaces=[], poll_seconds=1, bucket=TokenBucket(20, 20, clock), spacing=Spacing(2, clock),
                        lookback=timedelta(seconds=5), report_seconds=60, prune_seconds=300,
                        hold=lambda: mass_delete[0])
    stop = asyncio.Event()
    running = asyncio.create_task(status.run(stop))
    status.report(REF, READY)
    await asyncio.sleep(0.3)
    assert kube.patches == [], "held while deletions stream in"
    mass_delete[0] = False
    for _ in range(50):
        if kube.patches:
            break
        await asyncio.sleep(0.05)
    stop.set()
    await running
    [patch] = kube.patches
    assert patch["observedGeneration"] == 2, "the report waited, and went out once the hold ended"


async def test_a_hold_stops_a_flush_under_way_at_its_next_batch() -> None:
    kube, mass_delete = Kube(), [False]
    status = sync(Store({}), kube)
    status.hold = lambda: mass_delete[0]
    for index in range(250):  # three batches
        status.report(ObjectRef("ns", f"job-{index}", f"uid-{index}"), READY)
    real_write_now = status.write_now

    async def write_now_then_hold(reports: Sequence[StatusReport]) -> list[str | None]:
        written = await real_write_now(reports)
        mass_delete[0] = True  # the deletions start during the first batch
        return written

    status.write_now = write_now_then_hold  # type: ignore[method-assign]
    await status._flush_reports()
    assert len(kube.patches) == 100, "the rest waits for the hold to end"
