"""`sundial-launcher`: the worker pool that runs `jobTemplate` jobs as batch/v1 Jobs.

It is a worker like the others (ticker, consumer, recorder, retries, timeouts, concurrency
policies), on its own keyspace (`sundial.core.pools`), offering one target: create the run's
Job, track it to Complete or Failed, and record how it ended. It is the only Sundial process
that may create Jobs, with a ServiceAccount allowed exactly jobs create/get/list/watch/delete,
pods get/list and pods/log get; the Python-target workers keep no Kubernetes token.

A run in flight is a Job running, so concurrencyPolicy Forbid and Replace count running Jobs;
Replace and a timeout cancel the run, which deletes its Job (and, in the background, its pods).
A run therefore holds one of the launcher's lanes (`SUNDIAL_CONCURRENCY`) until its Job ends,
which is why the launcher's default is thousands of lanes, not the workers' 5 (TRACKED_JOBS).
"""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Any, Final, cast

from lightkube import ApiError, AsyncClient
from lightkube.resources.batch_v1 import Job
from lightkube.resources.core_v1 import Pod
from lightkube.types import CascadeType

from sundial.core.config import ConfigError, Settings, load_settings
from sundial.core.kubejobs import (
    POD_JOB_NAME_LABEL,
    RUN_ID_ANNOTATION,
    JobRequest,
    Verdict,
    job_manifest,
    job_verdict,
    jobs_to_prune,
    pods_needed,
)
from sundial.core.logs import configure_logging
from sundial.core.pools import KUBERNETES_JOB_TARGET, LAUNCHER_POOL
from sundial.core.store import BackendUnavailable
from sundial.kube.config import load_config
from sundial.kube.errors import KubeError, KubeUnreachable, is_transient
from sundial.launcher.watch import JobWatch
from sundial.worker.targets.registry import (
    HANDED_BACK,
    JsonObject,
    PermanentFailure,
    Retry,
    RunContext,
    TargetRegistry,
)

log = logging.getLogger("sundial.launcher")

FIELD_MANAGER: Final = "sundial-launcher"
# Requests in flight at once (the shared watch apart): creates, which decide a slot's lateness,
# and the rest (a finished Job's pods, pruning, deletes) apart, so finishing Jobs never holds up
# the next minute's creates. Together below the HTTP client's 100 connections: beyond them,
# requests queue inside its pool, whose hand-over is quadratic in waiting requests and which
# fails them after 10 s (PoolTimeout: 870 runs of 1,000-a-minute failed so before these gates).
CREATE_CONCURRENCY: Final = 48
API_CONCURRENCY: Final = 16
# A create the API server did not answer (busy, throttling, unreachable) is tried again this
# often before the run fails; the slot's lateness grows, but the Job is made once.
CREATE_RETRY_DELAYS: Final = (0.5, 1.0, 2.0, 4.0, 8.0)

# Lanes of a launcher whose SUNDIAL_CONCURRENCY is not set: running Jobs it tracks at once.
# A tracked Job costs the shared watch ~1 ms CPU a minute and no API request
# (bench.launcher_tracking), and CronJob has no cap on running Jobs; with full lanes the next
# slots wait and are recorded missed. A cap of 3 x jobs did exactly that beside the CronJob
# controller (bench.cronjob_side_by_side, 200 a side): the Job controller, rate-limited, failed
# the 45 s Jobs only ~2 min after their creation, so 600 lanes were all held by slot 4.
TRACKED_JOBS: Final = 5_000

Obj = dict[str, Any]


class JobLauncher:
    """The `sundial:kubernetes-job` target: one Job per attempt, tracked to its end."""

    def __init__(self, client: AsyncClient, watch: JobWatch) -> None:
        self.client = client
        self.watch = watch
        self.create_gate = asyncio.Semaphore(CREATE_CONCURRENCY)
        self.gate = asyncio.Semaphore(API_CONCURRENCY)

    async def __call__(self, ctx: RunContext, params: JsonObject) -> JsonObject:
        request = JobRequest(
            namespace=ctx.namespace, scheduled_job=ctx.name, job_uid=ctx.job_id, run_id=ctx.run_id,
            attempt=ctx.attempt, template=params["jobTemplate"], timeout_seconds=int(params["timeoutSeconds"]),
        )
        name = await self._create(request)
        try:
            verdict = await self._track(name, request.namespace)
        except asyncio.CancelledError as exc:
            # Timed out or replaced: the Job goes, its pods with it (Background propagation).
            # Handed back by a stopping launcher: the Job runs on, and the next one adopts it.
            if HANDED_BACK not in exc.args:
                await asyncio.shield(self._delete(name, request.namespace))
            raise
        await self._prune(request.namespace, request.job_uid, int(params["successfulJobsHistoryLimit"]),
                          int(params["failedJobsHistoryLimit"]))
        if not verdict.succeeded:
            raise Retry(f"{verdict.message}; pods: {', '.join(verdict.pods) or 'none'}")
        return {"job": name, "pods": list(verdict.pods)}

    async def _create(self, request: JobRequest) -> str:
        """Create the attempt's Job, again after a transient failure (the deterministic name
        makes a create that did land answer 409, which is then tracked as ours)."""
        manifest = job_manifest(request)
        name: str = manifest["metadata"]["name"]
        for delay in (*CREATE_RETRY_DELAYS, None):
            try:
                async with self.create_gate:
                    await self.client.create(cast(Job, Job.from_dict(manifest)))
                log.info("created Job %s/%s for run %s", request.namespace, name, request.run_id)
                return name
            except ApiError as exc:
                if exc.status.code == 409:  # another launcher (or an earlier try of this one) made it
                    await self._check_owner(name, request)
                    return name
                if exc.status.code in (400, 403, 422):
                    raise PermanentFailure(f"cannot create Job {name}: {exc.status.message}") from exc
                if delay is None or not is_transient(exc):
                    raise
            except Exception as exc:
                if delay is None or not is_transient(exc):
                    raise
            log.warning("creating Job %s/%s failed for now; trying again in %.0f s", request.namespace, name, delay)
            await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    async def _check_owner(self, name: str, request: JobRequest) -> None:
        async with self.gate:
            existing = await self.client.get(Job, name, namespace=request.namespace)
        owner = (existing.metadata.annotations or {}).get(RUN_ID_ANNOTATION) if existing.metadata else None
        if owner != request.run_id:
            raise PermanentFailure(f"Job {name} exists for run {owner}, not {request.run_id}")

    async def _track(self, name: str, namespace: str) -> Verdict:
        job = await self.watch.finished(namespace, name)
        if job is None:
            raise Retry(f"Job {name} was deleted before it finished")
        verdict = job_verdict(job, await self._pods(name, namespace) if pods_needed(job) else [])
        if verdict is None:  # cannot happen: the watch hands over only Complete or Failed Jobs
            raise Retry(f"Job {name} ended in no known condition")
        return verdict

    async def _pods(self, job_name: str, namespace: str) -> list[Obj]:
        async with self.gate:
            pods = self.client.list(Pod, namespace=namespace, labels={POD_JOB_NAME_LABEL: job_name})
            return [pod.to_dict() async for pod in pods]

    async def _delete(self, name: str, namespace: str) -> None:
        try:
            async with self.gate:
                await self.client.delete(Job, name, namespace=namespace, cascade=CascadeType.BACKGROUND)
            log.info("deleted Job %s/%s", namespace, name)
        except ApiError as exc:
            if exc.status.code != 404:
                log.warning("cannot delete Job %s/%s: %s", namespace, name, exc.status.message)

    async def _prune(self, namespace: str, job_uid: str, successful: int, failed: int) -> None:
        """Delete the finished Jobs beyond the job's history limits, their pods with them. The
        shared watch knows every finished Job of the namespace (it listed them when it started),
        so this costs no LIST; a Job deleted is forgotten at once, so it is deleted once."""
        for name in jobs_to_prune(self.watch.finished_of(namespace, job_uid), successful, failed):
            self.watch.forget(namespace, name)
            await self._delete(name, namespace)


def launcher_registry(client: AsyncClient, watch: JobWatch | None = None) -> TargetRegistry:
    """A registry offering only the Job target: a launcher runs nothing else."""
    registry = TargetRegistry()
    registry.register(KUBERNETES_JOB_TARGET, JobLauncher(client, watch or JobWatch(client)),
                      "Create a batch/v1 Job and wait for it")
    return registry


def launcher_settings(settings: Settings) -> Settings:
    """The worker settings a launcher runs with: its own pool, and TRACKED_JOBS lanes unless
    SUNDIAL_CONCURRENCY says otherwise."""
    update: dict[str, Any] = {"worker_pool": LAUNCHER_POOL}
    if "concurrency" not in settings.model_fields_set:
        update["concurrency"] = TRACKED_JOBS
    return settings.model_copy(update=update)


def main() -> None:
    from sundial.worker.main import serve  # the worker's process around a different registry and pool

    try:
        settings: Settings = load_settings()
        config = load_config()
    except (ConfigError, KubeError, KubeUnreachable) as exc:
        sys.exit(f"sundial-launcher: {exc}")
    configure_logging(settings.log_level, settings.log_format)
    client = AsyncClient(config, field_manager=FIELD_MANAGER)
    try:
        asyncio.run(serve(launcher_settings(settings), registry=launcher_registry(client)))
    except BackendUnavailable as exc:
        sys.exit(f"sundial-launcher: {exc}")


if __name__ == "__main__":
    main()
