"""The churn watch: a job deleted or suspended stops firing the moment the API server accepts
the change, and new or changed jobs are armed as fast as they arrive.

kopf handles objects one at a time in a bounded pool of workers (`handlers.configure`), each
ending with API writes and a wait for their echo. Under churn (thousands of objects applied or
deleted at once) its queue runs minutes behind the API server, and a job deleted or suspended
kept firing until kopf reached it. This loop lists the objects and then watches them from the
LIST's version, as an informer does, keeps only the newest view of each object, and acts on a
whole batch of them at once:

- a deletion (the object gone, or deletionTimestamp set while someone's finalizer keeps it):
  the UID is tombstoned and the Redis entry removed at once, one pipelined round trip for the
  batch. Then, off the hot path, the row and history go (or stay, as
  `sundial.dev/history-on-delete` says), and the finalizer an older Sundial added, if the
  object still has it, is removed;
- any other change with a valid spec (suspending is one): armed as `projection.project`
  decides, which never lets an older view of a job undo a newer one.

kopf's handlers still see every object and do everything else (status, conditions, Events,
run-now, invalid specs); they find the job armed or disarmed already. Deletions are this loop's
alone: ScheduledJobs carry no finalizer (docs/architecture.md says why). A deletion this
process could not see (it was down) is the start-up sweep's (`sundial.operator.resync`); one
that fell into a gap of the watch (a 410 and a new LIST) shows as an object known before and
missing from the new LIST, and is acted on as if its DELETED event had come.

Every (re)start of the watch lists first. A watch started at the collection's current version
instead missed whatever changed before it started: the objects created between start-up
priming's LIST and the watch, or during a restart, were left to kopf's queue alone, and after
a mass apply they were armed minutes late (2,000 jobs: the last ~100 s after the apply ended,
the operator idle meanwhile). A LIST costs one read of every object; objects armed already
cost nothing more (`armed_generations`, else one batched read in `projection.project`).
Only the active peer acts; a standby follows the watch and drops what it sees.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from lightkube import ApiError

from sundial.core.aio import sleep_unless_stopped
from sundial.core.jobs import ArmRequest, disarm_entries
from sundial.core.runs import JobRef
from sundial.core.spec import SpecError, parse_spec
from sundial.kube.errors import is_transient
from sundial.operator.projection import Projection, project
from sundial.operator.reconcile import HISTORY_ON_DELETE_ANNOTATION, history_policy, plain
from sundial.operator.runtime import BACKEND_ERRORS, JobDeps, describe_backend_error

log = logging.getLogger("sundial.operator.churn")

# Jobs armed per round trip to PostgreSQL and Redis.
ARM_BATCH: Final = 200
# Deleted jobs whose rows go in one transaction, and finalizer removals in flight at once.
FINALIZE_BATCH: Final = 200
RELEASE_CONCURRENCY: Final = 32
FINALIZERS: Final = 2
SLOW_SECONDS: Final = 1.0
# Objects per LIST request when the watch (re)starts.
LIST_PAGE_SIZE: Final = 500
# The watch reconnects this often even when quiet; after a failure it waits this long.
WATCH_TIMEOUT_SECONDS: Final = 300
RETRY_SECONDS: Final = 2.0

Event = tuple[str, Mapping[str, Any]]


@dataclass(frozen=True)
class Doomed:
    """A job whose object is being deleted, or gone."""

    job: JobRef
    retain_history: bool
    # The object's resourceVersion while it still waits for our finalizer (None: nothing to
    # release), and the finalizers it keeps once ours is gone.
    resource_version: str | None
    other_finalizers: tuple[str, ...]


def vanished(known: Mapping[str, Event], listed: Iterable[str], namespace: str | None) -> list[Event]:
    """DELETED events for the objects of `namespace` (every one when None) in `known` (uid ->
    their last event) that a complete new LIST no longer holds: their deletions fell in a gap."""
    present = set(listed)
    return [("DELETED", obj) for uid, (_, obj) in known.items()
            if uid not in present and (namespace is None or obj["metadata"].get("namespace") == namespace)]


def sort_events(events: Iterable[Event], finalizer: str, armed: Mapping[str, int]
                ) -> tuple[list[Doomed], list[ArmRequest]]:
    """What the newest view of each object asks for: disarming, or arming its spec.

    Left out: objects whose spec does not parse (kopf's handler reports them), and those whose
    generation is `armed` already.
    """
    doomed: list[Doomed] = []
    requests: list[ArmRequest] = []
    for kind, obj in events:
        meta = obj.get("metadata") or {}
        job = JobRef(str(meta["uid"]), str(meta["namespace"]), str(meta["name"]))
        if kind == "DELETED" or meta.get("deletionTimestamp"):
            finalizers = tuple(meta.get("finalizers") or ())
            waiting = kind != "DELETED" and finalizer in finalizers
            doomed.append(Doomed(
                job, history_policy(meta.get("annotations") or {})[0],
                str(meta["resourceVersion"]) if waiting else None,
                tuple(f for f in finalizers if f != finalizer),
            ))
            continue
        generation = int(meta.get("generation") or 0)
        if armed.get(job.job_id) == generation:
            continue
        try:
            spec = parse_spec(plain(obj.get("spec") or {}))
        except SpecError:
            continue
        requests.append(ArmRequest(job, spec, generation))
    return doomed, requests


def identity(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    """What a deletion of `obj` needs of it: its identity and history annotation (a few hundred
    bytes where the object takes kilobytes, for each of 10k objects)."""
    meta = obj["metadata"]
    annotations = meta.get("annotations") or {}
    kept = {key: annotations[key] for key in (HISTORY_ON_DELETE_ANNOTATION,) if key in annotations}
    return {"metadata": {"uid": meta["uid"], "namespace": meta.get("namespace"), "name": meta.get("name"),
                         "resourceVersion": meta.get("resourceVersion"), "annotations": kept}}


def suspending(requests: Iterable[ArmRequest], armed: Mapping[str, int]) -> list[str]:
    """Jobs whose Redis entry can go before `project` reads PostgreSQL (which can take seconds
    under load): suspended in a view no older than what is armed. With the job's lock held no
    handler is arming it meanwhile, so nothing newer can be undone; `project` then writes the row.
    """
    return [r.job.job_id for r in requests if r.spec.suspend and r.generation >= armed.get(r.job.job_id, 0)]


class ChurnWatch:
    def __init__(self, deps: JobDeps, *, namespaces: Sequence[str], legacy_finalizer: str) -> None:
        # deps.armed_generations: uid -> the generation last found armed, shared with the handlers:
        # the events of status and metadata writes (most events) carry no new spec and cost nothing.
        self.deps = deps
        self.namespaces = tuple(namespaces)
        self.finalizer = legacy_finalizer
        # uid -> the last event of each object seen, shrunk to what a deletion needs (its
        # identity and history annotation): to tell what a new LIST misses.
        self._known: dict[str, Event] = {}
        # uid -> the newest event not yet acted on: a burst of events for one object costs one action.
        self._pending: dict[str, Event] = {}
        self._pending_since = 0.0
        self._wake = asyncio.Event()
        self._finalize: asyncio.Queue[Doomed] = asyncio.Queue()
        self._releases = asyncio.Semaphore(RELEASE_CONCURRENCY)
        self._stragglers: set[asyncio.Task[None]] = set()
        # Since start, for logs and tests.
        self.disarmed = 0
        self.armed = 0
        self.released = 0

    async def run(self, stop: asyncio.Event) -> None:
        tasks = [asyncio.create_task(self._follow(namespace, stop), name=f"churn watch {namespace or 'all'}")
                 for namespace in self.namespaces or (None,)]
        tasks.append(asyncio.create_task(self._act(), name="churn watch actions"))
        tasks += [asyncio.create_task(self._finalize_loop(), name="churn watch finalizer") for _ in range(FINALIZERS)]
        try:
            await stop.wait()
        finally:
            for task in [*tasks, *self._stragglers]:
                task.cancel()
            await asyncio.gather(*tasks, *self._stragglers, return_exceptions=True)

    # ---- following the watch -------------------------------------------------------------

    async def _follow(self, namespace: str | None, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                version = await self._list(namespace)
                async for kind, obj in self.deps.kube.watch_scheduledjobs(namespace, version, WATCH_TIMEOUT_SECONDS):
                    self.note(kind, obj)
            except ApiError as exc:
                # 410 Gone: too far behind; list again.
                level = logging.INFO if exc.status.code == 410 else logging.WARNING
                log.log(level, "churn watch restarts: %s", exc.status.message or exc)
            except Exception as exc:
                if not is_transient(exc):
                    log.exception("churn watch failed; restarting it")
                else:
                    log.warning("churn watch restarts: Kubernetes API: %s", exc)
            # Deletions may have gone unseen meanwhile: forget what only they would remove.
            self.deps.armed_generations.clear()
            await sleep_unless_stopped(stop, RETRY_SECONDS)

    async def _list(self, namespace: str | None) -> str:
        """Note every object listed, and the deletion of every known one the LIST misses; returns
        the LIST's resourceVersion."""
        listed: list[str] = []

        def sink(obj: Mapping[str, Any]) -> None:
            listed.append(str(obj["metadata"]["uid"]))
            self.note("ADDED", obj)

        version = await self.deps.kube.list_scheduledjobs(namespace, LIST_PAGE_SIZE, sink)
        for kind, obj in vanished(self._known, listed, namespace):
            self.note(kind, obj)
        return version

    def note(self, kind: str, obj: Mapping[str, Any]) -> None:
        if kind not in ("ADDED", "MODIFIED", "DELETED"):
            return
        uid = str(obj["metadata"]["uid"])
        if not self._pending:
            self._pending_since = self.deps.clock.monotonic()
        self._pending[uid] = (kind, obj)
        if kind == "DELETED":
            self._known.pop(uid, None)
        else:
            self._known[uid] = (kind, identity(obj))
        self._wake.set()

    async def _act(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._pending = self._pending, {}
            waited = self.deps.clock.monotonic() - self._pending_since
            self.deps.tombstones.prune()
            if not await self.deps.gate.active():
                continue
            started = self.deps.clock.monotonic()
            try:
                await self.act_on(batch.values())
            except BACKEND_ERRORS as exc:
                # Tried again shortly, unless a newer view of an object arrived meanwhile.
                log.warning("churn watch: %d changes wait: %s", len(batch), describe_backend_error(exc))
                self._pending = {**batch, **self._pending}
                await asyncio.sleep(RETRY_SECONDS)
                self._wake.set()
                continue
            except Exception:
                log.exception("churn watch dropped %d changes; the handlers act on them", len(batch))
                continue
            took = self.deps.clock.monotonic() - started
            # Slower than the ~1 s a deletion or suspension may take to stop a job: worth a line.
            log.log(logging.INFO if waited + took > SLOW_SECONDS else logging.DEBUG,
                    "churn watch: %d changes acted on in %.2f s, %.2f s after the first arrived", len(batch), took,
                    waited)

    async def act_on(self, events: Iterable[Event]) -> None:
        doomed, requests = sort_events(events, self.finalizer, self.deps.armed_generations)
        if doomed:
            await self._disarm(doomed)
        for start in range(0, len(requests), ARM_BATCH):
            await self._arm(requests[start:start + ARM_BATCH])

    # ---- disarming and arming ------------------------------------------------------------

    async def _disarm(self, doomed: Sequence[Doomed]) -> None:
        ids = [d.job.job_id for d in doomed]
        for job_id in ids:
            self.deps.tombstones.add(job_id)  # from now on, nothing arms it again
            self.deps.armed_generations.pop(job_id, None)
        await disarm_entries(self.deps.broker, self.deps.store, ids)
        self.disarmed += len(ids)
        for job_id in ids:
            if self.deps.locks.busy(job_id):
                # A handler may be arming it right now, past its tombstone check: once it is
                # done, the entry it wrote goes too.
                self._straggle(self._disarm_after(job_id))
        for d in doomed:
            self._finalize.put_nowait(d)

    async def _disarm_after(self, job_id: str) -> None:
        async with self.deps.locks.hold(job_id):
            await disarm_entries(self.deps.broker, self.deps.store, [job_id])

    async def _arm(self, requests: Sequence[ArmRequest]) -> None:
        async with self.deps.locks.hold_free(r.job.job_id for r in requests) as free:
            held = set(free)
            outcome = await self._project([r for r in requests if r.job.job_id in held])
        self._note_armed(requests, outcome)
        for request in requests:
            if request.job.job_id not in held:
                # A handler holds it: arm this view once the handler is done (a suspension
                # must not wait for kopf's queue to reach it).
                self._straggle(self._arm_after(request))

    async def _arm_after(self, request: ArmRequest) -> None:
        async with self.deps.locks.hold(request.job.job_id):
            if self.deps.armed_generations.get(request.job.job_id, -1) >= request.generation:
                return  # the handler that held it armed this view, or a newer one
            outcome = await self._project([request])
        self._note_armed([request], outcome)

    async def _project(self, requests: Sequence[ArmRequest]) -> Projection:
        """`project`, the caller holding the jobs' locks; a suspension's entry goes first."""
        await self.deps.broker.disarm_many(suspending(requests, self.deps.armed_generations))
        return await project(self.deps.store, self.deps.broker, requests, self.deps.clock.now(), self.deps.tombstones,
                             queue_grace_seconds=self.deps.queue_grace_seconds)

    def _note_armed(self, requests: Sequence[ArmRequest], outcome: Projection) -> None:
        self.armed += len(outcome.rearmed)
        for request in requests:
            if request.job.job_id in outcome.armed:
                self.deps.armed_generations[request.job.job_id] = request.generation

    def _straggle(self, action: Any) -> None:
        task: asyncio.Task[None] = asyncio.create_task(self._guard(action))
        self._stragglers.add(task)
        task.add_done_callback(self._stragglers.discard)

    @staticmethod
    async def _guard(action: Any) -> None:
        try:
            await action
        except BACKEND_ERRORS as exc:
            log.warning("churn watch: %s; the handlers act on it", describe_backend_error(exc))
        except Exception:
            log.exception("churn watch failed on one job; the handlers act on it")

    # ---- after a deletion: rows, history, finalizer ---------------------------------------

    async def _finalize_loop(self) -> None:
        while True:
            batch = [await self._finalize.get()]
            while len(batch) < FINALIZE_BATCH and not self._finalize.empty():
                batch.append(self._finalize.get_nowait())
            await self._guard(self.finalize(batch))

    async def finalize(self, batch: Sequence[Doomed]) -> None:
        """Forget the jobs' rows (as each one's history policy says), then let the objects go."""
        for retain in (True, False):
            await self.deps.store.delete_jobs([d.job.job_id for d in batch if d.retain_history is retain],
                                         retain_history=retain)
        await asyncio.gather(*(self._release(d) for d in batch if d.resource_version is not None))

    async def _release(self, doomed: Doomed) -> None:
        assert doomed.resource_version is not None
        async with self._releases:
            try:
                outcome = await self.deps.kube.patch_metadata(
                    doomed.job.namespace, doomed.job.name, {"finalizers": list(doomed.other_finalizers)},
                    doomed.resource_version,
                )
            except Exception as exc:
                if not is_transient(exc):
                    raise
                outcome = False
        # False: it changed since; its next event comes back here (or kopf releases it).
        self.released += outcome is not False and outcome is not None
