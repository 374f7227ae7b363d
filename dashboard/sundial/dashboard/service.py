"""What the endpoints do, independent of HTTP: every read and write as the calling user."""

from __future__ import annotations

import asyncio
import re
import secrets
from dataclasses import dataclass
from typing import Final

from sundial.core.backfill import BackfillError, checked_request
from sundial.core.broker import Broker, QueueSnapshot
from sundial.core.clock import Clock, to_ms
from sundial.core.config import DashboardSettings
from sundial.core.crd import BACKFILL_ANNOTATION, RUN_NOW_ANNOTATION
from sundial.core.heartbeat import WorkerHeartbeat
from sundial.core.jobs import pool_brokers
from sundial.core.store import Store
from sundial.dashboard.errors import ApiProblem, FieldProblem, invalid, not_found
from sundial.dashboard.kube import Caller, KubeGateway, Obj
from sundial.dashboard.models import (
    BACKFILL_LISTED,
    Accepted,
    BackfillAccepted,
    BackfillIn,
    DeadLettersOut,
    JobCreate,
    JobOut,
    JobPatch,
    PodLogOut,
    PoolQueueOut,
    QueueOut,
    RunPage,
)
from sundial.dashboard.views import (
    dead_letter_out,
    delayed_out,
    in_flight_out,
    job_out,
    new_resource,
    request_value,
    resource_patch,
    run_now_patch,
    run_out,
    workers_out,
)

UID_PATTERN: Final = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
FAILED_STATUSES: Final = ("failed", "timed_out", "cancelled")
IDENTITY_TTL_SECONDS: Final = 60.0
PATCH_ATTEMPTS: Final = 4


@dataclass(frozen=True)
class JobKey:
    namespace: str
    name: str
    uid: str | None = None

    @property
    def label(self) -> str:
        return f"{self.namespace}/{self.name}"


class Dashboard:
    def __init__(
        self, settings: DashboardSettings, kube: KubeGateway, store: Store, broker: Broker, clock: Clock
    ) -> None:
        self.settings = settings
        self.kube = kube
        self.store = store
        self.broker = broker
        self.clock = clock
        self._identities: dict[Caller, tuple[float, str, list[str]]] = {}

    # ---- who ----------------------------------------------------------------------------

    async def identity(self, caller: Caller) -> tuple[str, list[str]]:
        if caller.user:
            return caller.user, list(caller.groups)
        cached = self._identities.get(caller)
        if cached and cached[0] > self.clock.monotonic():
            return cached[1], cached[2]
        user, groups = await self.kube.whoami(caller)
        if len(self._identities) > 1000:  # tokens come and go; never grow without bound
            self._identities.clear()
        self._identities[caller] = (self.clock.monotonic() + IDENTITY_TTL_SECONDS, user, groups)
        return user, groups

    # ---- jobs ---------------------------------------------------------------------------

    async def resolve_uid(self, caller: Caller, uid: str) -> JobKey:
        """PostgreSQL maps the UID to its name; a job the operator has not projected yet is
        looked for among the caller's own listing."""
        if not UID_PATTERN.match(uid):
            raise not_found(f"job with uid {uid}")
        row = await self.store.job(uid)
        if row is not None:
            return JobKey(row["namespace"], row["name"], uid)
        for obj in await self.visible(caller, None):
            meta = obj.get("metadata", {})
            if meta.get("uid") == uid:
                return JobKey(meta["namespace"], meta["name"], uid)
        raise not_found(f"job with uid {uid}")

    async def get(self, caller: Caller, key: JobKey) -> Obj:
        obj = await self.kube.get_job(caller, key.namespace, key.name)
        if key.uid and obj.get("metadata", {}).get("uid") != key.uid:
            raise not_found(f"job with uid {key.uid}")  # deleted and re-created under the name
        return obj

    async def jobs(self, caller: Caller, namespace: str | None, category: str | None) -> list[JobOut]:
        jobs = [job_out(obj) for obj in await self.visible(caller, namespace)]
        if category:
            jobs = [job for job in jobs if job.spec.get("category") == category]
        return sorted(jobs, key=lambda job: (job.namespace, job.name))

    async def visible(self, caller: Caller, namespace: str | None) -> list[Obj]:
        """Jobs the caller may list: one namespace, the configured ones, or all they can see.

        A user allowed to list only some namespaces gets those, found among the namespaces
        that have jobs, instead of a 403 for the cluster-wide list.
        """
        if namespace:
            return await self.kube.list_jobs(caller, namespace)
        if not self.settings.namespaces:
            try:
                return await self.kube.list_jobs(caller, None)
            except ApiProblem as exc:
                if exc.status != 403:
                    raise
                candidates = sorted({*await self.store.job_namespaces(), self.settings.default_namespace})
                return await self._list_each(caller, candidates, exc)
        return await self._list_each(caller, self.settings.namespaces, None)

    async def _list_each(self, caller: Caller, namespaces: list[str], denied: ApiProblem | None) -> list[Obj]:
        results = await asyncio.gather(
            *(self.kube.list_jobs(caller, ns) for ns in namespaces), return_exceptions=True
        )
        items: list[Obj] = []
        allowed = False
        for result in results:
            if isinstance(result, ApiProblem) and result.status == 403:
                denied = denied or result
                continue
            if isinstance(result, BaseException):
                raise result
            allowed = True
            items.extend(result)
        if not allowed and denied:
            raise denied
        return items

    async def create(self, caller: Caller, body: JobCreate, *, dry_run: bool) -> JobOut:
        namespace = body.namespace or self.settings.default_namespace
        created = await self.kube.create_job(caller, namespace, new_resource(body, namespace), dry_run=dry_run)
        return job_out(created)

    async def patch(self, caller: Caller, key: JobKey, body: JobPatch, *, dry_run: bool) -> JobOut:
        for attempt in range(PATCH_ATTEMPTS):
            current = await self.get(caller, key)
            try:
                patched = await self.kube.patch_job(
                    caller, key.namespace, key.name, resource_patch(body, current), dry_run=dry_run
                )
            except ApiProblem as exc:
                # The operator writes status every few seconds; that race is not the user's
                # conflict, so read again (a changed spec is then caught by `generation`).
                if exc.status == 409 and attempt + 1 < PATCH_ATTEMPTS:
                    continue
                raise
            return job_out(patched)
        raise AssertionError("unreachable")

    async def delete(self, caller: Caller, key: JobKey) -> None:
        await self._check_uid(caller, key)
        await self.kube.delete_job(caller, key.namespace, key.name)

    async def run_now(self, caller: Caller, key: JobKey) -> Accepted:
        await self._check_uid(caller, key)
        return await self._request_run(caller, key, "run now")

    async def backfill(self, caller: Caller, key: JobKey, body: BackfillIn, *, dry_run: bool = False
                       ) -> BackfillAccepted:
        """Ask the operator, as the caller, to run the slots of a past window; refused here, with
        the reason beside its field, when the window is backwards, in the future or too long for
        one request. A dry run lists the slots and changes nothing (the page's preview)."""
        obj = await self.get(caller, key)
        user, _ = await self.identity(caller)
        request_id = request_value(user, self.clock.now(), secrets.token_hex(3), "backfill")
        try:
            request, slots = checked_request(obj.get("spec") or {}, obj["metadata"]["uid"], body.from_, body.to,
                                             body.sequential, request_id, self.clock.now())
        except BackfillError as exc:
            if exc.field:
                raise invalid([FieldProblem(exc.field, str(exc))]) from None
            raise ApiProblem(400, "Invalid", str(exc)) from None
        if not dry_run:
            patch = run_now_patch(BACKFILL_ANNOTATION, request.to_json())
            await self.kube.patch_job(caller, key.namespace, key.name, patch)
        return BackfillAccepted(job=key.label, request=request.to_json(), slots=len(slots),
                                slot_times=slots[:BACKFILL_LISTED])

    async def retry(self, caller: Caller, run_id: str) -> Accepted:
        run = await self.store.latest_attempt(run_id)
        if run is None:
            raise not_found(f"run {run_id}")
        key = await self.resolve_uid(caller, run["job_id"])
        await self.get(caller, key)  # hide runs of jobs the caller cannot see, before saying more
        if run["status"] not in FAILED_STATUSES:
            raise ApiProblem(409, "Conflict", f"run {run_id} is {run['status']}; only failed runs can be retried")
        return await self._request_run(caller, key, f"retry of {run_id}")

    async def _check_uid(self, caller: Caller, key: JobKey) -> None:
        # A write by name needs no read first: the API server answers 403 or 404 itself. A
        # UID must still name the object that now carries the name.
        if key.uid:
            await self.get(caller, key)

    async def _request_run(self, caller: Caller, key: JobKey, what: str) -> Accepted:
        user, _ = await self.identity(caller)
        request = request_value(user, self.clock.now(), secrets.token_hex(3), what)
        await self.kube.patch_job(caller, key.namespace, key.name, run_now_patch(RUN_NOW_ANNOTATION, request))
        return Accepted(job=key.label, request=request)

    async def runs(self, caller: Caller, key: JobKey, limit: int, offset: int, status: list[str] | None) -> RunPage:
        uid = (await self.get(caller, key))["metadata"]["uid"]
        rows, total = await asyncio.gather(
            self.store.runs(uid, limit=limit, offset=offset, statuses=status),
            self.store.count_runs(uid, statuses=status),
        )
        return RunPage(items=[run_out(row) for row in rows], total=total, limit=limit, offset=offset)

    async def logs(self, caller: Caller, key: JobKey, run_id: str | None) -> list[PodLogOut]:
        uid = (await self.get(caller, key))["metadata"]["uid"]
        found = await self.kube.run_logs(caller, key.namespace, uid, run_id)
        return [PodLogOut(job=log.job, pod=log.pod, container=log.container, phase=log.phase, text=log.text,
                          available=log.available) for log in found]

    # ---- queue --------------------------------------------------------------------------

    async def queue(self, caller: Caller, namespace: str | None) -> QueueOut:
        visible = {obj["metadata"]["uid"] for obj in await self.visible(caller, namespace)}
        now_ms = to_ms(self.clock.now())
        brokers = await pool_brokers(self.broker, self.store)
        pools, failed = await asyncio.gather(
            asyncio.gather(*(self._pool_queue(pool, broker, now_ms) for pool, broker in brokers.items())),
            self.store.recent_runs(sorted(visible), FAILED_STATUSES, 50),
        )
        in_flight = [run for _, snapshot, _ in pools for run in snapshot.in_flight]
        delayed = sorted((run for _, snapshot, _ in pools for run in snapshot.delayed), key=lambda run: run.due_ms)
        return QueueOut(
            waiting=sum(snapshot.waiting for _, snapshot, _ in pools),
            in_flight=[in_flight_out(run) for run in in_flight if run.message.job_id in visible],
            delayed=[delayed_out(run) for run in delayed if run.message.job_id in visible],
            delayed_total=sum(snapshot.delayed_total for _, snapshot, _ in pools),
            failed=[run_out(row) for row in failed],
            workers=[worker for _, _, out in pools for worker in out.workers],
            pools=[out for _, _, out in pools],
        )

    async def _pool_queue(self, pool: str, broker: Broker, now_ms: int) -> tuple[str, QueueSnapshot, PoolQueueOut]:
        snapshot, workers, stats = await asyncio.gather(
            broker.snapshot(), broker.live_workers(now_ms),
            asyncio.gather(*(broker.queue_stats(shard, now_ms) for shard in broker.keys.all_shards())))
        out = PoolQueueOut(
            pool=pool, waiting=snapshot.waiting,
            oldest_waiting_ms=max((s.oldest_waiting_ms or 0 for s in stats), default=0),
            in_flight=len(snapshot.in_flight), delayed_total=snapshot.delayed_total, workers=workers_out(workers))
        return pool, snapshot, out

    async def dead_letters(self, caller: Caller, namespace: str | None, limit: int) -> DeadLettersOut:
        """Read-only: the newest dead letters of the jobs this caller can see."""
        visible = {obj["metadata"]["uid"] for obj in await self.visible(caller, namespace)}
        brokers = await pool_brokers(self.broker, self.store)
        found = [await broker.all_dead_letters(limit) for broker in brokers.values()]
        letters = sorted((letter for pool_letters, _ in found for letter in pool_letters), key=lambda d: d.died_ms,
                         reverse=True)[:limit]
        total = sum(count for _, count in found)
        shown = [dead_letter_out(letter) for letter in letters if letter.job and letter.job.job_id in visible]
        return DeadLettersOut(total=total, items=shown, hidden=total - len(shown))

    async def targets(self) -> list[WorkerHeartbeat]:
        return list((await self.broker.live_workers(to_ms(self.clock.now()))).values())
