"""The runs API's shared change feed (sundial.dashboard.runswatch) and its OpenAPI documents:
pure, no server (the real watch is in tests/k8s/test_runs_api.py)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from sundial.core.clock import ManualClock
from sundial.core.store import RunQuery, RunRow
from sundial.dashboard import runsopenapi, runswatch
from sundial.dashboard.runswatch import Expired, RunChanges, Seen, matches, parse_version

SLOT = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
ROW = RunRow(
    run_id="8c2f:1", job_id="8c2f", namespace="team-a", job_name="nightly", logical_time=SLOT, scheduled_for=SLOT,
    trigger_type="scheduled", status="running", attempt=1, started_at=SLOT, completed_at=None, duration_ms=None,
    error_message=None, worker="w", reason=None, deliveries=1, next_retry_at=None,
)


def _row(version: int, created: int, **fields: object) -> RunRow:
    return replace(ROW, resource_version=version, created_version=created, **fields)  # type: ignore[arg-type]


async def test_a_watch_resumes_after_its_version_and_tells_added_from_modified() -> None:
    changes = RunChanges()
    changes.start_at(100)
    assert changes.resource_version == 99
    await changes.add([_row(100, 100, attempt=1), _row(100, 100, attempt=2), _row(104, 90, attempt=3)], 105)
    assert changes.resource_version == 104
    found, cursor = changes.since(changes.cursor(99))
    seen = Seen(99)
    # Two rows inserted by one transaction are both new to a watcher that listed at 99; a row
    # the list held is MODIFIED, and so is a new row's second change.
    assert [seen.event_type(change.row) for change in found] == ["ADDED", "ADDED", "MODIFIED"]
    assert seen.event_type(_row(106, 100, attempt=1)) == "MODIFIED"
    assert Seen(99).event_type(_row(106, 100, attempt=1)) == "ADDED", "inserted and updated between two reads"
    assert changes.since(changes.cursor(100))[0][0].row.attempt == 3
    assert changes.since(cursor) == ([], cursor)
    assert changes.cursor(None) == cursor, "no version: from now on"


async def test_versions_older_than_the_kept_window_are_gone() -> None:
    changes = RunChanges(capacity=2)
    changes.start_at(10)
    early = changes.cursor(9)
    await changes.add([_row(10, 10), _row(11, 11), _row(12, 12)], 13)
    with pytest.raises(Expired, match="too old resource version"):
        changes.cursor(9)
    with pytest.raises(Expired):
        changes.since(early)
    assert [c.row.resource_version for c in changes.since(changes.cursor(10))[0]] == [11, 12]


async def test_a_version_ahead_of_every_change_read_is_waited_for_then_gone() -> None:
    """A list reads its version from PostgreSQL, a tick ahead of the poller: a watch from it waits
    for the tick. One never reached was given out before the database was restored into a cluster
    that numbers its transactions lower; the watcher is told to list again, not left waiting."""
    changes = RunChanges()
    changes.start_at(100)
    clock = ManualClock(SLOT)
    waiting = asyncio.create_task(changes.caught_up(104, 3.0, clock))
    await asyncio.sleep(0)
    assert not waiting.done()
    await changes.add([_row(104, 104)], 105)
    await asyncio.wait_for(waiting, 1.0)
    assert changes.since(changes.cursor(104)) == ([], changes.cursor(None))

    await asyncio.wait_for(changes.caught_up(5_000, 0.0, clock), 1.0)  # its wait is over
    with pytest.raises(Expired, match="ahead of every change read"):
        changes.cursor(5_000)


def test_a_deleted_attempt_is_deleted_only_for_watchers_that_knew_it() -> None:
    seen = Seen(99)
    assert seen.event_type(_row(105, 80, deleted=True)) == "DELETED", "listed before the watch"
    assert seen.event_type(_row(106, 101, deleted=True)) is None, "created and deleted unseen: nothing to tell"
    assert seen.event_type(_row(107, 102, attempt=2)) == "ADDED"
    assert seen.event_type(_row(108, 102, attempt=2, deleted=True)) == "DELETED"


async def test_a_restart_expires_every_watch_and_older_version() -> None:
    changes = RunChanges()
    changes.start_at(10)
    await changes.add([_row(10, 10), _row(11, 11)], 12)
    cursor = changes.cursor(9)
    await changes.restart_at(50)
    with pytest.raises(Expired):
        changes.since(cursor)
    with pytest.raises(Expired):
        changes.cursor(11)
    assert changes.since(changes.cursor(None)) == ([], changes.cursor(None))
    assert changes.resource_version == 49


async def test_a_poller_that_could_not_read_for_long_restarts_its_window() -> None:
    """Tombstones are trimmed after TOMBSTONE_KEEP_SECONDS: a poller away for half of that
    cannot know it missed none, so its watchers list again."""
    clock = ManualClock(SLOT)
    store = _FlakyStore()
    changes = RunChanges()

    async def tick(_: float) -> None:
        clock.advance(timedelta(seconds=runswatch.MAX_READ_GAP_SECONDS + 1) if store.failing else timedelta(0))
        store.ticks += 1
        if store.ticks == 2:
            store.failing = True
        elif store.ticks == 3:
            store.failing = False
        elif store.ticks == 5:
            raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await runswatch.poll(store, changes, 0.5, sleep=tick, clock=clock)  # type: ignore[arg-type]
    assert store.horizon_reads == 2, "a start, then a restart after the gap"
    with pytest.raises(Expired):
        changes.cursor(store.first_horizon)


class _FlakyStore:
    def __init__(self) -> None:
        self.ticks = 0
        self.failing = False
        self.horizon_reads = 0
        self.first_horizon = 0
        self.version = 100

    async def run_version_horizon(self) -> int:
        self.horizon_reads += 1
        self.version += 10
        self.first_horizon = self.first_horizon or self.version
        return self.version

    async def runs_changed(self, after: int) -> tuple[list[RunRow], int]:
        if self.failing:
            raise TimeoutError("PostgreSQL did not answer")
        return [], max(after, self.version)


def test_resource_versions_and_filters() -> None:
    assert parse_version("") is None
    assert parse_version("0") is None
    assert parse_version("42") == 42
    with pytest.raises(ValueError, match="resourceVersion must be a number"):
        parse_version("abc")
    assert matches(RunQuery(namespace="team-a", job_names=["nightly"], statuses=["running"]), ROW)
    assert not matches(RunQuery(namespace="team-b"), ROW)
    assert not matches(RunQuery(triggers=["manual"]), ROW)


def test_openapi_documents_describe_the_kind_for_kubectl_explain() -> None:
    v2 = json.loads(runsopenapi.openapi_v2())
    run = v2["definitions"][runsopenapi.RUN]
    assert run["x-kubernetes-group-version-kind"] == [
        {"group": "runs.sundial.dev", "version": "v1alpha1", "kind": "ScheduledJobRun"}]
    assert run["properties"]["status"]["properties"]["phase"]["enum"][:3] == ["Running", "Succeeded", "Failed"]
    v3 = json.loads(runsopenapi.openapi_v3_group())
    for ref in json.dumps(v3).split('"$ref": "')[1:]:
        assert ref.split('"')[0].removeprefix("#/components/schemas/") in v3["components"]["schemas"]
    discovery = json.loads(runsopenapi.openapi_v3_discovery())
    url = discovery["paths"]["apis/runs.sundial.dev/v1alpha1"]["serverRelativeURL"]
    assert url.endswith(runsopenapi.etag(runsopenapi.openapi_v3_group()))
