"""Status reflection: one loop that follows `scheduled_jobs` changes and patches `/status`.

Not a kopf timer per object: one poll of `job_states_changed_since(cursor)` a second covers
every job, and only jobs whose row moved cost anything (the poll leaves the spec out: at 1,000
runs a second it returns thousands of rows). The cursor lags a few seconds behind the newest
`updated_at` seen, because PostgreSQL stamps `now()` at transaction start: a write can commit
with an older stamp than one already read. Rows already taken are recognised by their
`updated_at`, so the overlap costs nothing. Statuses are built in batches, two queries per
batch for the runs in flight and the latest attempts.

Writes are coalesced and bounded: a status equal to the one last written is not sent, all
objects share a token bucket, and one object is written at most once per spacing interval
(its newer changes wait in `pending` and go out together). Only this replica's active peer
writes. Events are posted on health transitions only (`status_builder.transition`).

This is the one writer of `status`. The handlers and priming own some fields
(`observedGeneration`, `conditions`, `lastRunNowRequest`) but do not write them: they hand
them over (`report`, or `write_now` when priming must know the resulting resourceVersion),
and each goes out in one patch with the run-derived fields built from the job's row at that
moment, `nextRunTime` among them: it travels from the arming, through the row, to the object by
this one path. A person's change (a report) is written at once, outside the write budget.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Awaitable, Callable, Container, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sundial.core.aio import sleep_unless_stopped
from sundial.core.clock import Clock
from sundial.core.store import Store
from sundial.kube.api import KubeApi, ObjectRef
from sundial.kube.errors import is_transient
from sundial.operator import metrics
from sundial.operator.peering import PeeringGate
from sundial.operator.ratelimit import Spacing, TokenBucket
from sundial.operator.reconcile import changed_fields
from sundial.operator.runtime import BACKEND_ERRORS, describe_backend_error
from sundial.operator.status_builder import (
    RUNS_TO_READ,
    SYNC_KEYS,
    Health,
    RunEvent,
    build_status,
    health_of,
    transition,
)

log = logging.getLogger("sundial.operator.status")

Row = Mapping[str, Any]

# Jobs whose status is built per round trip to PostgreSQL, and at most per pass (a second),
# so a pass that finds thousands of changed rows neither floods PostgreSQL nor holds the
# event loop for long.
EVALUATE_BATCH = 100
EVALUATE_PER_PASS = 2000
# Reported statuses written at once, per round trip to PostgreSQL and in flight to the API.
REPORT_BATCH = 100
WRITE_CONCURRENCY = 16
# How often a held sync looks whether it may write again.
HOLD_POLL_SECONDS = 0.5


@dataclass(frozen=True)
class StatusReport:
    """The fields of one object's status a handler (or priming) owns, to be written."""

    ref: ObjectRef
    fields: Mapping[str, Any]
    # The status the object shows, when the reporter knows it: only what differs is sent.
    shown: Mapping[str, Any] | None = None
    # The object's resourceVersion as the reporter saw it: answered back when nothing is sent.
    resource_version: str | None = None


class StatusSync:
    def __init__(
        self,
        store: Store,
        kube: KubeApi,
        gate: PeeringGate,
        clock: Clock,
        *,
        namespaces: Sequence[str],
        poll_seconds: float,
        bucket: TokenBucket,
        spacing: Spacing[str],
        lookback: timedelta,
        report_seconds: float,
        prune_seconds: float,
        gone: Container[str] = (),
        hold: Callable[[], bool] = lambda: False,
    ) -> None:
        self.store = store
        self.kube = kube
        self.gate = gate
        self.clock = clock
        self.namespaces = frozenset(namespaces)
        self.poll_seconds = poll_seconds
        self.bucket = bucket
        self.spacing = spacing
        self.lookback = lookback
        self.report_seconds = report_seconds
        self.prune_seconds = prune_seconds
        # Jobs whose deletion the churn watch has seen: nothing is written to them. A mass
        # delete otherwise spent about half the operator's status PATCHes on 404s, competing
        # with the deletes themselves for the API server.
        self.gone = gone
        # While this says so (a mass delete streaming in), nothing is written: see `run`.
        self.hold = hold
        self.patches = 0  # since start, for logs and tests
        self._reset()
        self._report_at = clock.monotonic()
        self._pruned_at = clock.monotonic()
        self._reported_patches = 0
        self._failing = False
        self._fresh_seed = False
        self._reports: dict[str, StatusReport] = {}
        self._wake = asyncio.Event()
        self._writes = asyncio.Semaphore(WRITE_CONCURRENCY)

    def _reset(self) -> None:
        self._cursor: datetime | None = None
        self._seen: dict[str, datetime] = {}
        self._pending: dict[str, Row] = {}
        self._written: dict[str, dict[str, Any]] = {}
        self._health: dict[str, Health | None] = {}
        self._seeded = False
        self._seed_complete = False

    async def run(self, stop: asyncio.Event) -> None:
        was_active = False
        next_pass = self.clock.monotonic()
        while not stop.is_set():
            active = await self.gate.active()
            if active and not was_active and not self._fresh_seed:
                # Another replica may have written meanwhile: what we remember is stale.
                self._reset()
            was_active, self._fresh_seed = active, False
            if active and self.hold():
                # A mass delete gets the API server to itself: every write now competes with
                # the DELETEs, and after an apply most would go to objects about to be deleted
                # (`gone` drops those once the deletions are seen). Reports and row changes
                # wait, merged per object, and go out when the deletions stop; a pass under
                # way stops at its next batch.
                await sleep_unless_stopped(stop, HOLD_POLL_SECONDS)
                continue
            if active:
                # A poll a `poll_seconds`; reports in between are written as they come.
                full = self.clock.monotonic() >= next_pass
                if full:
                    next_pass = self.clock.monotonic() + self.poll_seconds
                try:
                    await self._guarded_pass(self.sync_once if full else self._flush_reports)
                except Exception:
                    # A bug must not stop status reflection for every job: log it, go on.
                    log.exception("status sync pass failed")
            # Reports wait while this replica does not see itself active yet: kopf runs the
            # handlers only on the active one, and its peering may be a beat ahead of the gate.
            await self._sleep(stop, next_pass - self.clock.monotonic(), active)

    async def _sleep(self, stop: asyncio.Event, seconds: float, active: bool) -> None:
        """Until the next poll, a report, or the stop."""
        if active and self._reports and not self._failing:
            return  # reported while the pass ran
        self._wake.clear()
        waits = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self._wake.wait())]
        try:
            await asyncio.wait(waits, timeout=max(seconds, 0.0), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()

    async def _guarded_pass(self, action: Callable[[], Awaitable[None]]) -> None:
        try:
            await action()
        except BACKEND_ERRORS as exc:
            if not self._failing:
                log.warning("status sync paused: %s", describe_backend_error(exc))
            self._failing = True
            return
        except Exception as exc:
            if not is_transient(exc):
                raise
            if not self._failing:
                log.warning("status sync paused: Kubernetes API: %s", exc)
            self._failing = True
            return
        if self._failing:
            log.info("status sync resumed")
        self._failing = False
        self._report()

    async def sync_once(self) -> None:
        if not self._seeded:
            await self._seed()
        await self._flush_reports()
        await self._collect()
        await self._prune()
        ready = (job_id for job_id in list(self._pending) if self.spacing.ready(job_id))
        evaluated = 0
        while evaluated < EVALUATE_PER_PASS and self.bucket.available() and not self.hold():
            batch = {job_id: self._pending.pop(job_id) for job_id in itertools.islice(ready, EVALUATE_BATCH)}
            if not batch:
                break
            evaluated += len(batch)
            try:
                await self._sync_batch(batch)
            except Exception:
                for job_id, row in batch.items():
                    self._pending.setdefault(job_id, row)  # try again next pass
                raise

    async def _sync_batch(self, batch: dict[str, Row]) -> None:
        """Build the statuses of these jobs and write those that changed, as the budget allows.

        Written (or found unchanged) jobs leave `batch`; what is left in it goes back to
        `pending`. Two queries serve the whole batch: most statuses turn out unchanged (every
        job, on the first pass after a restart), and two round trips per job made that pass
        cost more than everything else the operator does.
        """
        ids = list(batch)
        running = await self.store.running_of(ids)
        runs = await self.store.latest_runs_of(ids, RUNS_TO_READ)
        for job_id in ids:
            row = batch[job_id]
            status = build_status(row, running.get(job_id, []), runs.get(job_id, []))
            health, event = transition(self._known_health(job_id), row)
            if status == self._written.get(job_id):
                self._health[job_id] = health
                del batch[job_id]
                continue
            if not self.bucket.available():
                continue  # stays pending, health untold: the write that happens tells it
            self._health[job_id] = health
            del batch[job_id]
            try:
                await self._write(job_id, row, status, event)
            except Exception as exc:
                if is_transient(exc):
                    batch[job_id] = row
                    raise
                # This job's status cannot be written (refused by the API server, say): skip it
                # until its row changes again rather than block every other job behind it.
                log.error("status of %s/%s not written: %s", row["namespace"], row["name"], exc)

    def report(self, ref: ObjectRef, fields: Mapping[str, Any]) -> None:
        """Write these handler-owned fields soon (with the job's run-derived ones); a later
        report of the same object before the write adds to it."""
        earlier = self._reports.get(ref.uid)
        merged = {**earlier.fields, **fields} if earlier is not None else dict(fields)
        self._reports[ref.uid] = StatusReport(ref, merged)
        self._wake.set()

    async def _flush_reports(self) -> None:
        while self._reports and not self.hold():
            batch = dict(itertools.islice(self._reports.items(), REPORT_BATCH))
            for uid in batch:
                del self._reports[uid]
            try:
                await self.write_now(list(batch.values()))
            except Exception:
                for uid, report in batch.items():
                    self._reports.setdefault(uid, report)  # try again next pass
                raise

    async def write_now(self, reports: Sequence[StatusReport]) -> list[str | None]:
        """Write each object's reported fields and its run-derived fields, built from its row
        now; only what differs from what it shows (`shown`, else what was last written).

        Returns each object's resourceVersion afterwards (the reported one when nothing was
        sent), None for an object that is gone. Outside the write budget: a person is waiting.
        """
        ids = [report.ref.uid for report in reports]
        try:
            rows = {uid: row for uid, row in (await self.store.jobs_by_id(ids)).items() if not row["deleted"]}
            running = await self.store.running_of(list(rows))
            runs = await self.store.latest_runs_of(list(rows), RUNS_TO_READ)
        except BACKEND_ERRORS:
            # PostgreSQL down: the reported fields go alone (a BackendUnavailable condition
            # must reach the object precisely then); the run-derived ones follow its rows.
            rows, running, runs = {}, {}, {}
        patches: list[dict[str, Any]] = []
        events: list[RunEvent | None] = []
        for report in reports:
            uid = report.ref.uid
            derived, event = {}, None
            if uid in rows:
                derived = build_status(rows[uid], running.get(uid, []), runs.get(uid, []))
                self._health[uid], event = transition(self._known_health(uid), rows[uid])
                self._pending.pop(uid, None)  # this write carries the row's latest state
            if report.shown is not None:
                patches.append(changed_fields(report.shown, {**report.fields, **derived}))
            else:
                patches.append({**report.fields, **changed_fields(self._written.get(uid, {}), derived)})
            events.append(event)
        versions = await asyncio.gather(*(self._write_reported(report, patch, event)
                                          for report, patch, event in zip(reports, patches, events, strict=True)))
        for report, patch, version in zip(reports, patches, versions, strict=True):
            uid = report.ref.uid
            if version is None:
                self.forget(uid)
            elif uid in rows:
                shown = dict(report.shown or self._written.get(uid, {}))
                self._written[uid] = {key: patch.get(key, shown.get(key)) for key in SYNC_KEYS}
        return versions

    async def _write_reported(self, report: StatusReport, patch: Mapping[str, Any], event: RunEvent | None
                              ) -> str | None:
        if not patch:
            return report.resource_version or ""
        try:
            async with self._writes:
                version = await self._send(report.ref, patch, event)
        except Exception as exc:
            if is_transient(exc):
                raise
            # Refused (by a webhook, say): the next report or row change tries again.
            log.error("status of %s/%s not written: %s", report.ref.namespace, report.ref.name, exc)
            return report.resource_version or ""
        return version

    def seed(self, statuses: dict[str, dict[str, Any]]) -> None:
        """Start from these statuses (uid -> the fields this sync owns) instead of a LIST of
        its own: priming has just read every object. What was written since is kept."""
        statuses.update(self._written)
        self._written = statuses
        self._seeded = self._seed_complete = self._fresh_seed = True

    async def _seed(self) -> None:
        """Learn the statuses the objects already carry, so a restart does not rewrite them all."""
        try:
            statuses = await self.kube.job_statuses(sorted(self.namespaces))
        except Exception as exc:
            if not is_transient(exc):
                raise
            log.info("status sync starts without seeding: %s", exc)
        else:
            for uid, status in statuses.items():
                self._written[uid] = {key: status.get(key) for key in SYNC_KEYS}
            self._seed_complete = True
        self._seeded = True

    async def _collect(self) -> None:
        since = None if self._cursor is None else self._cursor - self.lookback
        for row in await self.store.job_states_changed_since(since):
            job_id, updated = str(row["id"]), row["updated_at"]
            if self._cursor is None or updated > self._cursor:
                self._cursor = updated
            seen = self._seen.get(job_id)
            if seen is not None and updated <= seen:
                continue
            self._seen[job_id] = updated
            if self.namespaces and row["namespace"] not in self.namespaces:
                continue
            self._pending[job_id] = row

    async def _write(self, job_id: str, row: Row, status: dict[str, Any], event: RunEvent | None) -> None:
        self.bucket.try_take()
        if await self._send(ObjectRef(str(row["namespace"]), str(row["name"]), job_id), status, event) is None:
            self.forget(job_id)  # deleted; the churn watch forgets its row
            return
        self._written[job_id] = status

    async def _send(self, ref: ObjectRef, patch: Mapping[str, Any], event: RunEvent | None) -> str | None:
        """The one place `status` is written: the object's new resourceVersion, None when it is gone."""
        if ref.uid in self.gone:
            return None
        self.spacing.mark(ref.uid)
        version = await self.kube.patch_status(ref.namespace, ref.name, patch)
        if version is None:
            return None
        self.patches += 1
        metrics.STATUS_PATCHES.inc()
        if event is not None:
            try:
                await self.kube.post_event(ref, event.type, event.reason, event.message, self.clock.now())
            except Exception as exc:
                # An Event is a courtesy: losing one must not hold back the status.
                log.warning("could not post %s Event for %s/%s: %s", event.reason, ref.namespace, ref.name, exc)
        return version

    def _known_health(self, job_id: str) -> Health | None:
        """The health the object shows now: from the status last written, or the one it had when
        the sync started (a brand-new object shows none: a job that never ran is healthy)."""
        if job_id in self._health:
            return self._health[job_id]
        if job_id in self._written or self._seed_complete:
            return health_of(self._written.get(job_id, {}).get("lastStatus"))
        return None

    def forget(self, job_id: str) -> None:
        self._pending.pop(job_id, None)
        self._written.pop(job_id, None)
        self._health.pop(job_id, None)
        self.spacing.forget(job_id)

    async def _prune(self) -> None:
        """Drop what we remember about jobs that are gone, now and then."""
        now = self.clock.monotonic()
        if now - self._pruned_at < self.prune_seconds:
            return
        self._pruned_at = now
        live = await self.store.live_job_ids()
        for job_id in set(self._written) | set(self._health) | set(self._seen):
            if job_id not in live:
                self.forget(job_id)
                self._seen.pop(job_id, None)

    def _report(self) -> None:
        now = self.clock.monotonic()
        elapsed = now - self._report_at
        if elapsed < self.report_seconds:
            return
        written = self.patches - self._reported_patches
        if written:
            log.info("status sync: %d status patches in the last %.0fs (%.2f/s), %d waiting",
                     written, elapsed, written / elapsed, len(self._pending))
        self._report_at = now
        self._reported_patches = self.patches

