"""One watch per namespace over Sundial's Jobs, feeding every run the launcher tracks.

Polling each running Job cost a GET every few seconds per Job; a launcher tracking a
thousand Jobs spent its CPU on that. Instead each namespace the launcher has runs in gets one
LIST + WATCH of the Jobs carrying Sundial's `job-uid` label (the chart grants jobs list/watch
per served namespace, nothing cluster-wide), and a run waits on a future the watch resolves:

- A Job that is Complete or Failed resolves its waiter with the Job; one deleted before it
  finished resolves it with None (the run retries).
- The watch resumes from its last resourceVersion when the server closes it; a 410 Gone (the
  version expired) or any error re-lists, after a short backoff for errors.
- A slow safety re-list every `relist_seconds` also catches what a silently stalled watch
  missed. A namespace's watch stops once nothing has waited on it for that long.
- Only finished Jobs are remembered (name -> the few fields a verdict and pruning need), so a
  run that starts waiting after its Job finished (a restarted launcher adopting it) is answered
  at once, and the history limits are applied from this view (`finished_of`) instead of a LIST
  of the job's Jobs per finished run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Iterable
from dataclasses import dataclass, field
from typing import Any, Final, cast

from lightkube import ApiError, AsyncClient
from lightkube.operators import Operator, exists
from lightkube.resources.batch_v1 import Job

from sundial.core.clock import SYSTEM_CLOCK, Clock
from sundial.core.kubejobs import JOB_UID_LABEL

log = logging.getLogger("sundial.launcher.watch")

Obj = dict[str, Any]
RELIST_SECONDS: Final = 120.0
MAX_BACKOFF_SECONDS: Final = 30.0


def sundial_jobs() -> dict[str, str | Operator[Any] | Iterable[Any] | None]:
    """The label selector of the Jobs Sundial made."""
    return {JOB_UID_LABEL: exists()}


def finished_job(job: Job) -> Obj | None:
    """The fields a verdict and pruning read (name, job-uid label, creation time, conditions)
    when `job` is Complete or Failed, else None."""
    conditions = job.status.conditions if job.status and job.status.conditions else []
    if not any(c.type in ("Complete", "Failed") and c.status == "True" for c in conditions):
        return None
    meta = job.metadata
    created = meta.creationTimestamp if meta else None
    return {"metadata": {"name": meta.name if meta else "",
                         "labels": {JOB_UID_LABEL: ((meta.labels or {}) if meta else {}).get(JOB_UID_LABEL, "")},
                         "creationTimestamp": created.isoformat() if created else ""},
            "status": {"conditions": [{"type": c.type, "status": c.status, "reason": c.reason, "message": c.message}
                                      for c in conditions]}}


@dataclass
class _Namespace:
    waiters: dict[str, list[asyncio.Future[Obj | None]]] = field(default_factory=dict)
    finished: dict[str, Obj] = field(default_factory=dict)
    # The names in `finished` by their ScheduledJob's uid: a run's pruning reads its job's only.
    by_uid: dict[str, set[str]] = field(default_factory=dict)
    task: asyncio.Task[None] | None = None
    idle_since: float = 0.0

    def remember(self, name: str, job: Obj) -> None:
        self.finished[name] = job
        self.by_uid.setdefault(job["metadata"]["labels"][JOB_UID_LABEL], set()).add(name)

    def drop(self, name: str) -> None:
        job = self.finished.pop(name, None)
        if job is not None:
            uid = job["metadata"]["labels"][JOB_UID_LABEL]
            names = self.by_uid.get(uid, set())
            names.discard(name)
            if not names:
                self.by_uid.pop(uid, None)

    def of(self, uid: str) -> list[Obj]:
        return [self.finished[name] for name in self.by_uid.get(uid, ())]


class JobWatch:
    """Tells a run when its Job finishes, from one shared watch per namespace."""

    def __init__(self, client: AsyncClient, *, relist_seconds: float = RELIST_SECONDS,
                 clock: Clock = SYSTEM_CLOCK) -> None:
        self.client = client
        self.relist_seconds = relist_seconds
        self.clock = clock
        self._namespaces: dict[str, _Namespace] = {}

    async def finished(self, namespace: str, name: str) -> Obj | None:
        """Wait for Job `name` to be Complete or Failed and return it; None if it was deleted first."""
        space = self._namespaces.setdefault(namespace, _Namespace())
        if name in space.finished:
            return space.finished[name]
        future: asyncio.Future[Obj | None] = asyncio.get_running_loop().create_future()
        space.waiters.setdefault(name, []).append(future)
        if space.task is None or space.task.done():
            space.task = asyncio.create_task(self._serve(namespace, space), name=f"job-watch:{namespace}")
        try:
            return await future
        finally:
            waiting = space.waiters.get(name, [])
            if future in waiting:
                waiting.remove(future)
            if not waiting:
                space.waiters.pop(name, None)
            if not space.waiters:
                space.idle_since = self.clock.monotonic()

    def finished_of(self, namespace: str, job_uid: str) -> list[Obj]:
        """The finished Jobs of ScheduledJob `job_uid` the watch knows of in `namespace`: all of
        them while a run of that namespace waits or just stopped waiting (the watch listed every
        Sundial Job when it started and follows each change since)."""
        space = self._namespaces.get(namespace)
        if space is None:
            return []
        return space.of(job_uid)

    def forget(self, namespace: str, name: str) -> None:
        """Drop a Job the launcher just deleted, before the watch reports it gone, so the next
        run's pruning does not delete it again."""
        space = self._namespaces.get(namespace)
        if space is not None:
            space.drop(name)

    async def close(self) -> None:
        for space in self._namespaces.values():
            if space.task is not None:
                space.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await space.task
        self._namespaces.clear()

    async def _serve(self, namespace: str, space: _Namespace) -> None:
        backoff = 1.0
        while space.waiters or self.clock.monotonic() - space.idle_since < self.relist_seconds:
            try:
                version = await self._relist(namespace, space)
                events = cast(AsyncGenerator[tuple[str, Job]], self.client.watch(
                    Job, namespace=namespace, labels=sundial_jobs(), resource_version=version))
                async with asyncio.timeout(self.relist_seconds), contextlib.aclosing(events):
                    async for kind, job in events:
                        self._apply(space, kind, job)
                        backoff = 1.0
            except TimeoutError:
                continue  # the safety re-list
            except ApiError as exc:
                if exc.status.code != 410:
                    log.warning("watching Jobs in %s: %s; listing again in %.0f s", namespace, exc.status.message,
                                backoff)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
            except Exception as exc:  # the API server away: waiters wait, the watch retries
                log.warning("watching Jobs in %s: %r; listing again in %.0f s", namespace, exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
        self._namespaces.pop(namespace, None)

    async def _relist(self, namespace: str, space: _Namespace) -> str | None:
        # Only runs already waiting when the LIST starts can be missing from it because their Job
        # is gone: a later one may have created its Job after the LIST read.
        waiting = set(space.waiters)
        jobs = self.client.list(Job, namespace=namespace, labels=sundial_jobs())
        present: set[str] = set()
        async for job in jobs:
            if job.metadata and job.metadata.name:
                present.add(job.metadata.name)
                self._apply(space, "MODIFIED", job)
        for name in waiting - present:
            self._resolve(space, name, None)  # deleted while the watch was away
        for name in set(space.finished) - present:
            space.drop(name)
        return jobs.resourceVersion

    def _apply(self, space: _Namespace, kind: str, job: Job) -> None:
        name = job.metadata.name if job.metadata else None
        if not name:
            return
        if kind == "DELETED":
            space.drop(name)
            self._resolve(space, name, None)
            return
        done = finished_job(job)
        if done is not None:
            space.remember(name, done)
            self._resolve(space, name, done)

    @staticmethod
    def _resolve(space: _Namespace, name: str, job: Obj | None) -> None:
        for future in space.waiters.pop(name, []):
            if not future.done():
                future.set_result(job)
