"""Start-up priming: arm every ScheduledJob in bulk before kopf looks at them one at a time.

kopf handles objects one by one: for an object it has never seen, it calls the handler, which
reads the job's row and entry and reports its status: per object, round trips and an API write
(the kube-apiserver spends 3-5 ms of CPU on each). Over 10k objects that took minutes.
Priming does the same work in bulk while kopf is not yet watching (it runs from the startup
handler): one paged LIST; per page, one batched read of the rows and cron entries, one
pipelined arm of the jobs that need it, and one status write per object whose status differs.
Every job fires and shows its next run once this pass is over. Objects an older Sundial gave a
finalizer then lose it (one metadata write each, once).

When kopf then lists the objects, each one is new to it (kopf keeps its state in memory,
`sundial.operator.kopfstate`), at the resourceVersion priming left it at (`Runtime.primed`),
and the handler returns at once: nothing is read or written.

Only the plain case is primed: a valid spec whose target a live worker offers (or that is
suspended), no pending run-now request, not being deleted and no kopf handler in progress.
Everything else (invalid specs and their Events, unknown targets and their retries, run-now)
is left to the handlers, which then handle it exactly as before. So are objects that changed
after the LIST (the metadata write carries the resourceVersion priming saw, so a person's edit
makes it fail cleanly), and whatever remains when the time budget runs out. An object deleted
meanwhile is disarmed on the spot.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Literal, cast

import kopf
from lightkube import ApiError

from sundial.core.broker import Broker
from sundial.core.clock import Clock, to_ms
from sundial.core.heartbeat import LiveWorkers
from sundial.core.jobs import ArmRequest, disarm_job
from sundial.core.runs import JobRef
from sundial.core.spec import ScheduledJobSpec, SpecError, parse_spec
from sundial.core.store import Store
from sundial.kube.api import KubeApi, ObjectRef
from sundial.operator.projection import project
from sundial.operator.reconcile import (
    history_policy,
    missing_target,
    pending_backfill,
    pending_run_now,
    plain,
    ready_fields,
)
from sundial.operator.status_builder import SYNC_KEYS
from sundial.operator.status_sync import StatusReport, StatusSync

log = logging.getLogger("sundial.operator.prime")

# One LIST page, one batch of backend round trips.
PAGE_SIZE: Final = 500
PAGES_IN_FLIGHT: Final = 2
# API writes in flight at once: enough to keep the apiserver's cores busy, few enough that
# the operator's single Python thread is not just juggling sockets.
WRITE_CONCURRENCY: Final = 16


@dataclass(frozen=True)
class KopfState:
    """Where kopf keeps its per-object state, as configured in `handlers.configure`."""

    progress: kopf.ProgressStorage
    # Removed where found (handlers.FINALIZER); none is added.
    legacy_finalizer: str
    handler_ids: tuple[str, ...]


@dataclass(frozen=True)
class Candidate:
    job: JobRef
    spec: ScheduledJobSpec
    generation: int
    resource_version: str
    status: Mapping[str, Any]
    metadata_patch: dict[str, Any] | None
    retain_history: bool


@dataclass
class PrimeReport:
    listed: int = 0
    armed: int = 0
    already_armed: int = 0
    status_written: int = 0
    metadata_written: int = 0
    left_to_kopf: Counter[str] = field(default_factory=Counter)
    gone: int = 0
    armed_after: float = 0.0
    # Every object listed (and every candidate armed), and every metadata write done.
    complete: bool = False
    finished: bool = False
    # uid -> the sync-owned status fields each listed object shows now, for the status sync.
    statuses: dict[str, dict[str, Any]] = field(default_factory=dict)

    def summary(self, seconds: float) -> str:
        left = ", ".join(f"{count} {why}" for why, count in sorted(self.left_to_kopf.items())) or "none"
        return (f"primed {self.listed} ScheduledJobs in {seconds:.1f}s (armed after {self.armed_after:.1f}s): "
                f"{self.armed} armed, {self.already_armed} "
                f"already armed, {self.status_written} status and {self.metadata_written} metadata writes, "
                f"{self.gone} deleted meanwhile; left to the handlers: {left}"
                + ("" if self.finished else " (stopped early: the rest too)"))


def finalizer_patch(raw: Mapping[str, Any], state: KopfState) -> dict[str, Any] | None:
    """The metadata priming writes so that kopf finds nothing left to do on this object: its
    finalizers without the one an older Sundial added; None when it has none."""
    finalizers = list(raw.get("metadata", {}).get("finalizers") or [])
    if state.legacy_finalizer not in finalizers:
        return None
    return {"finalizers": [name for name in finalizers if name != state.legacy_finalizer]}


def triage(
    raw: Mapping[str, Any], state: KopfState, live_workers: LiveWorkers
) -> Candidate | str:
    """A candidate for priming, or why the handlers should see this object instead."""
    meta = raw.get("metadata", {})
    if meta.get("deletionTimestamp"):
        return "being deleted"
    body = kopf.Body(cast(kopf.RawBody, raw))
    if any(state.progress.fetch(key=kopf.HandlerId(handler), body=body) for handler in state.handler_ids):
        return "handler in progress"
    try:
        spec = parse_spec(plain(raw.get("spec", {})))
    except SpecError:
        return "invalid spec"
    status = raw.get("status") or {}
    if pending_run_now(meta.get("annotations") or {}, status) is not None:
        return "run-now requested"
    if pending_backfill(meta.get("annotations") or {}, status) is not None:
        return "backfill requested"
    if not spec.suspend and missing_target(spec.run_target, live_workers) is not None:
        return "target not offered"
    return Candidate(
        job=JobRef(str(meta["uid"]), str(meta["namespace"]), str(meta["name"])),
        spec=spec,
        generation=int(meta.get("generation") or 0),
        resource_version=str(meta["resourceVersion"]),
        status=status,
        metadata_patch=finalizer_patch(raw, state),
        retain_history=history_policy(meta.get("annotations") or {})[0],
    )


def status_report(candidate: Candidate, now: datetime) -> StatusReport:
    """The status fields priming owns, as the handler would report them (the status sync adds
    the run-derived ones from the row priming has just armed)."""
    job = candidate.job
    return StatusReport(
        ObjectRef(job.namespace, job.name, job.job_id),
        ready_fields(candidate.status, candidate.generation, candidate.spec, now),
        shown=candidate.status,
        resource_version=candidate.resource_version,
    )


class Primer:
    def __init__(
        self,
        store: Store,
        broker: Broker,
        kube: KubeApi,
        clock: Clock,
        state: KopfState,
        status: StatusSync,
        *,
        namespaces: Sequence[str],
        budget_seconds: float,
        primed: dict[str, str],
        queue_grace_seconds: float,
    ) -> None:
        self.store = store
        self.broker = broker
        self.kube = kube
        self.clock = clock
        self.state = state
        self.status = status
        self.namespaces = tuple(namespaces)
        self.budget_seconds = budget_seconds
        self.queue_grace_seconds = queue_grace_seconds
        # uid -> resourceVersion of each object left complete (armed, status and metadata
        # written): the handlers find nothing to do for it at that version.
        self.primed = primed
        self._writes = asyncio.Semaphore(WRITE_CONCURRENCY)
        # Objects armed, waiting for their legacy finalizer's removal: (job, retain its
        # history?, its resourceVersion since, the metadata to write).
        self._unfinished: list[tuple[JobRef, bool, str, dict[str, Any]]] = []

    async def prime(self) -> PrimeReport:
        started = self.clock.monotonic()
        report = PrimeReport()
        workers = await self.broker.live_workers(to_ms(self.clock.now()))
        # Two passes: first every job armed and its status written, page by page, then the
        # legacy finalizer removed where an older Sundial added it. Jobs fire and show their
        # next run after the first pass alone.
        report.complete = await self._arm_pages(workers, report, started)
        report.armed_after = self.clock.monotonic() - started
        if not report.complete:
            return report
        try:
            for start in range(0, len(self._unfinished), PAGE_SIZE):
                if self.clock.monotonic() - started > self.budget_seconds:
                    log.warning("priming stopped after %.0fs; kopf writes the remaining state",
                                self.clock.monotonic() - started)
                    return report
                await self._finish(self._unfinished[start:start + PAGE_SIZE], report)
        except ApiError as exc:
            # Say, a validating webhook with failurePolicy Fail that this very operator serves,
            # once started: the jobs are armed all the same, and kopf adds what is missing.
            log.warning("priming could not write metadata (%s); kopf writes the remaining state",
                        exc.status.message or exc)
            return report
        report.finished = True
        return report

    async def _arm_pages(self, workers: LiveWorkers, report: PrimeReport, started: float
                         ) -> bool:
        # Two pages at a time: while one waits on PostgreSQL and Redis, or for the next LIST
        # chunk, the other keeps the API writes flowing.
        slots = asyncio.Semaphore(PAGES_IN_FLIGHT)
        pages: set[asyncio.Task[None]] = set()
        try:
            async for page in self.kube.scheduledjob_pages(self.namespaces, PAGE_SIZE):
                await slots.acquire()
                task = asyncio.create_task(self._arm_page(page, workers, report))
                task.add_done_callback(lambda _: slots.release())
                pages.add(task)
                for done in [t for t in pages if t.done()]:
                    pages.discard(done)
                    done.result()  # a failed page ends priming
                if self.clock.monotonic() - started > self.budget_seconds:
                    log.warning("priming stopped after %.0fs; the handlers arm the rest",
                                self.clock.monotonic() - started)
                    await asyncio.gather(*pages)
                    return False
            await asyncio.gather(*pages)
        except BaseException:
            for task in pages:
                task.cancel()
            await asyncio.gather(*pages, return_exceptions=True)
            raise
        return True

    async def _arm_page(
        self, page: Sequence[Mapping[str, Any]], workers: LiveWorkers, report: PrimeReport
    ) -> None:
        report.listed += len(page)
        began = self.clock.monotonic()
        candidates: list[Candidate] = []
        for raw in page:
            uid = str(raw["metadata"]["uid"])
            try:
                verdict = triage(raw, self.state, workers)
            except Exception:
                # Whatever it is, the handlers meet it too, and report it on the object.
                log.exception("priming skips %s/%s", raw["metadata"].get("namespace"), raw["metadata"].get("name"))
                verdict = "unexpected"
            report.statuses[uid] = {key: (raw.get("status") or {}).get(key) for key in SYNC_KEYS}
            if isinstance(verdict, str):
                report.left_to_kopf[verdict] += 1
            else:
                candidates.append(verdict)
        if not candidates:
            return

        requests = [ArmRequest(c.job, c.spec, c.generation) for c in candidates]
        # Nothing else acts yet (kopf is not watching), so no locks and no tombstones.
        outcome = await project(self.store, self.broker, requests, self.clock.now(), (),
                                queue_grace_seconds=self.queue_grace_seconds)
        report.armed += len(outcome.rearmed)
        report.already_armed += len(outcome.armed) - len(outcome.rearmed)
        # A job priming must leave alone (a deleted row under a live object) goes to kopf.
        if outcome.stale:
            report.left_to_kopf["deleted row"] += len(outcome.stale)
        candidates = [c for c in candidates if c.job.job_id in outcome.armed]
        armed_done = self.clock.monotonic()

        now = self.clock.now()
        versions = await self.status.write_now([status_report(c, now) for c in candidates])
        gone: list[tuple[JobRef, bool]] = []
        for c, version in zip(candidates, versions, strict=True):
            if version is None:
                gone.append((c.job, c.retain_history))
                continue
            report.status_written += version != c.resource_version
            if c.metadata_patch is not None:
                self._unfinished.append((c.job, c.retain_history, version, c.metadata_patch))
            else:
                self.primed[c.job.job_id] = version
        await self._disarm_gone(gone, report)
        log.debug("primed a page of %d: arming %.2fs, status %.2fs", len(page), armed_done - began,
                  self.clock.monotonic() - armed_done)

    async def _finish(self, batch: Sequence[tuple[JobRef, bool, str, dict[str, Any]]], report: PrimeReport) -> None:
        """The legacy finalizer's removal, on objects still as they were listed
        (give or take our status write); any other change leaves the object to kopf."""
        outcomes = await asyncio.gather(
            *(self._write_metadata(job, version, patch) for job, _, version, patch in batch)
        )
        gone: list[tuple[JobRef, bool]] = []
        for (job, retain, _, _), outcome in zip(batch, outcomes, strict=True):
            if outcome is None:
                gone.append((job, retain))
            elif outcome is False:
                report.left_to_kopf["changed since listed"] += 1
            else:
                self.primed[job.job_id] = outcome
                report.metadata_written += 1
        await self._disarm_gone(gone, report)

    async def _disarm_gone(self, gone: Sequence[tuple[JobRef, bool]], report: PrimeReport) -> None:
        # Deleted after the LIST: the churn watch is not running yet to see it go.
        for job, retain in gone:
            await disarm_job(self.broker, self.store, job.job_id, retain_history=retain)
            report.statuses.pop(job.job_id, None)
        report.gone += len(gone)

    async def _write_metadata(self, job: JobRef, version: str, patch: Mapping[str, Any]
                              ) -> str | Literal[False] | None:
        """The new resourceVersion once written, False when the object changed since `version`,
        None when it is gone."""
        async with self._writes:
            return await self.kube.patch_metadata(job.namespace, job.name, patch, version)
