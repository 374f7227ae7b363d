"""kopf handlers for ScheduledJob: thin wrappers around `sundial.core.jobs` and `reconcile`.

Create, update and resume share one level-based reconcile: validate the spec, arm it (which is
idempotent), queue a pending run-now, then report `observedGeneration`, `nextRunAt` and the
Ready condition. kopf calls it only when the object's essence changes (spec, labels,
annotations): status writes, ours or the status sync's, never trigger it. Deletion goes
through a finalizer that disarms the job. The annotations a person may set are documented in
`sundial.operator.reconcile`.

The handlers own `status.conditions`, `status.observedGeneration` and
`status.lastRunNowRequest`; the status sync owns the run-derived fields.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Any, Final

import kopf

from sundial.core.clock import to_ms
from sundial.core.crd import GROUP, PLURAL, VERSION
from sundial.core.jobs import arm_job, disarm_job, run_now
from sundial.core.runs import JobRef
from sundial.core.spec import ScheduledJobSpec, SpecError, parse_spec
from sundial.core.status import (
    REASON_BACKEND_UNAVAILABLE,
    REASON_SCHEDULED,
    REASON_SUSPENDED,
    REASON_UNKNOWN_TARGET,
    rfc3339,
)
from sundial.operator import metrics
from sundial.operator.metrics import JobMetrics
from sundial.operator.ratelimit import Spacing, TokenBucket
from sundial.operator.reconcile import (
    LAST_RUN_NOW_FIELD,
    conditions_with,
    history_policy,
    invalid_reason,
    missing_target,
    pending_run_now,
    plain,
    ready,
)
from sundial.operator.resync import DriftRepair
from sundial.operator.runtime import BACKEND_ERRORS, Runtime, describe_backend_error, runtime_of
from sundial.operator.status_sync import StatusSync
from sundial.operator.webhook import SelfSignedWebhookServer

# kopf's own bookkeeping (progress, last handled spec) under our domain, apart from the
# annotations people set (sundial.dev/run-now), so neither can be mistaken for the other.
KOPF_PREFIX: Final = "operator.sundial.dev"
FINALIZER: Final = "sundial.dev/finalizer"
WEBHOOK_CONFIGURATION: Final = "sundial.dev"

# Objects reconciled at once (see configure).
QUEUE_WORKER_LIMIT: Final = 64
# How soon an UnknownTarget job looks for a worker again.
UNKNOWN_TARGET_RETRY_SECONDS: Final = 30
# How soon a handler that could not reach PostgreSQL or Redis tries again.
BACKEND_RETRY_SECONDS: Final = 10
# PostgreSQL's pool waits 30 s for a connection by default; a handler should give up sooner
# and report BackendUnavailable rather than hold a kopf worker that long.
BACKEND_TIMEOUT_SECONDS: Final = 10.0

log = logging.getLogger("sundial.operator")


# ---- process lifecycle -------------------------------------------------------------------


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    """Every tuning knob of the operator, with why it has the value it has."""
    runtime = runtime_of(memo)
    options = runtime.options

    # Progress and the last handled spec in annotations, not in status: status is ours and
    # the status sync rewrites it, and the CRD keeps unknown status fields (kopf's would pile up).
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=KOPF_PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=KOPF_PREFIX, key="last-handled-configuration"
    )
    settings.persistence.finalizer = FINALIZER

    # kopf starts a worker per object with pending events, unbounded by default, and its HTTP
    # session allows unlimited connections: a cold start over 10k jobs opened ~3,700 TLS
    # connections and grew past 1.7 GB. A bounded pool keeps memory flat and connections reused;
    # handlers are short, so 64 at a time keeps both cores busy. An idle worker holds its slot
    # for idle_timeout (5 s by default), which would cap a cold start at ~13 objects a second.
    settings.queueing.worker_limit = QUEUE_WORKER_LIMIT
    settings.queueing.idle_timeout = 0.5

    # kopf scans CRDs (and namespaces) to discover what to watch. We know both up front: the
    # one CRD, checked at start-up, and the namespaces from the flags. Scanning would need
    # cluster-wide list rights the chart should not grant, and retries for a minute without them.
    settings.scanning.disabled = True

    # Events are for what a person must act on (an invalid spec, a job that started failing):
    # only explicit warnings are posted. Log lines stay logs (posting.loggers), or every retry
    # of an UnknownTarget job would add an Event to `kubectl describe`.
    settings.posting.loggers = False
    settings.posting.level = logging.WARNING

    # Reconnect a watch every 10 minutes even when quiet: a stuck TCP connection through a
    # proxy or load balancer otherwise goes unnoticed for hours.
    settings.watching.server_timeout = 600
    settings.watching.client_timeout = 630
    settings.watching.connect_timeout = 30
    # Per-request ceiling; no request of ours (a PATCH, a LIST page) should take longer.
    settings.networking.request_timeout = 60

    # An unexpected error in a handler is retried after this long (kopf's default is 60 s);
    # in practice it is a backend hiccup that outran BACKEND_ERRORS, gone in seconds.
    settings.execution.default_backoff = BACKEND_RETRY_SECONDS

    # Peering: the live replica with the highest priority is the active one (options.py says
    # why the default is random). Keep-alives every ~50 s, a replica that died hard is
    # replaced after 60 s; quiet logs, since keep-alives are routine.
    settings.peering.priority = options.priority
    settings.peering.lifetime = 60
    settings.peering.stealth = True

    if options.webhook and options.webhook_certfile:
        # A real certificate means a real deployment, which declares the webhook itself: the
        # operator then needs no permission on admission configurations.
        settings.admission.server = kopf.WebhookServer(
            addr=options.webhook_host, port=options.webhook_port,
            certfile=options.webhook_certfile, pkeyfile=options.webhook_keyfile,
        )
    elif options.webhook:
        # Local development: kopf serves HTTPS with a self-signed certificate and keeps the
        # ValidatingWebhookConfiguration pointed at it (and empties it on exit).
        settings.admission.server = SelfSignedWebhookServer(
            addr=options.webhook_host, host=options.webhook_host, port=options.webhook_port
        )
        settings.admission.managed = WEBHOOK_CONFIGURATION

    # Status sync: a poll a second keeps `kubectl get sj` within ~1-2 s of the database; at
    # most 20 PATCH/s overall (bursts of 20) and one per object every 2 s keep a cluster of
    # thousands of jobs from flooding the API server: each object's intermediate states
    # coalesce into its next write.
    status_sync = StatusSync(
        runtime.store, runtime.kube, runtime.gate, runtime.clock,
        namespaces=options.namespaces,
        poll_seconds=options.status_poll_seconds or 1.0,
        bucket=TokenBucket(rate=20.0, burst=20.0, clock=runtime.clock),
        spacing=Spacing(interval=2.0, clock=runtime.clock),
        # PostgreSQL stamps updated_at at transaction start; 5 s covers any of our writes.
        lookback=timedelta(seconds=5),
        report_seconds=60.0,
        # Forget deleted jobs now and then: memory stays proportional to live jobs.
        prune_seconds=300.0,
    )
    # Drift repair: a lost Redis entry costs at most ~30 s of missed slots before it is
    # re-armed (and those go through the missed-run policy); orphans are harmless until
    # swept, so every 5 minutes is plenty and keeps full LISTs rare.
    drift_repair = DriftRepair(
        runtime.store, runtime.broker, runtime.kube, runtime.gate, runtime.locks, runtime.clock,
        namespaces=options.namespaces,
        resync_seconds=options.resync_seconds or 30.0,
        sweep_seconds=options.orphan_sweep_seconds or 300.0,
    )
    job_metrics = JobMetrics(runtime.store, runtime.broker, runtime.clock, namespaces=options.namespaces)
    runtime.loops = {"status sync": status_sync.run, "drift repair": drift_repair.run, "job metrics": job_metrics.run}
    runtime.start_background()


@kopf.on.cleanup()
async def stop_background(memo: kopf.Memo, **_: Any) -> None:
    await runtime_of(memo).stop_background()


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    # The same sources lightkube reads, in the same order, whatever else happens to be
    # installed (kopf would piggyback on a `kubernetes` package and its own quirks).
    info: kopf.ConnectionInfo | None = kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(
        **kwargs
    )
    return info


@kopf.on.probe(id="background")
def background_loops(memo: kopf.Memo, **_: Any) -> str:
    dead = runtime_of(memo).dead_loops()
    if dead:
        # A failing probe fails the liveness endpoint: better a restart than a silent operator.
        raise RuntimeError(f"background loops stopped: {', '.join(dead)}")
    return "running"


# ---- ScheduledJob ------------------------------------------------------------------------


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL)
async def reconcile(
    body: kopf.Body, meta: kopf.Meta, status: kopf.Status, patch: kopf.Patch, memo: kopf.Memo, **_: Any
) -> None:
    runtime = runtime_of(memo)
    now = runtime.clock.now()
    generation = int(meta.get("generation") or 0)
    job = JobRef(str(meta["uid"]), str(meta["namespace"]), str(meta["name"]))

    def report(ok: bool, reason: str, message: str) -> None:
        if not ok:
            metrics.RECONCILE_ERRORS.labels(reason).inc()
        patch.status["observedGeneration"] = generation
        patch.status["conditions"] = conditions_with(
            status.get("conditions"), ready(ok, reason, message, generation), now
        )

    try:
        spec = parse_spec(plain(body.get("spec", {})))
    except SpecError as exc:
        reason = invalid_reason(exc)
        report(False, reason, str(exc))
        kopf.warn(body, reason=reason, message=str(exc))
        raise kopf.PermanentError(str(exc)) from exc

    request = pending_run_now(meta.annotations, status)
    try:
        async with asyncio.timeout(BACKEND_TIMEOUT_SECONDS), runtime.locks.hold(job.job_id):
            armed = await arm_job(runtime.broker, runtime.store, job, spec, generation, now)
            if request is not None:
                await _run_now(runtime, job, spec, request)
            workers = {} if spec.suspend else await runtime.broker.live_workers(to_ms(now))
    except BACKEND_ERRORS as exc:
        message = describe_backend_error(exc)
        report(False, REASON_BACKEND_UNAVAILABLE, message)
        raise kopf.TemporaryError(message, delay=BACKEND_RETRY_SECONDS) from exc

    patch.status["nextRunAt"] = rfc3339(armed.next_run_at) if armed.next_run_at else None
    if request is not None:
        patch.status[LAST_RUN_NOW_FIELD] = request
    if spec.suspend:
        report(True, REASON_SUSPENDED, "suspended: no runs until spec.suspend is false")
        log.info("%s/%s: suspended (generation %d)", job.namespace, job.name, generation)
        return
    missing = missing_target(spec.target, workers)
    if missing is not None:
        # Armed all the same: the first worker that offers the target will run it.
        report(False, REASON_UNKNOWN_TARGET, missing)
        raise kopf.TemporaryError(missing, delay=UNKNOWN_TARGET_RETRY_SECONDS)
    report(True, REASON_SCHEDULED, f"armed: {spec.schedule} in {spec.time_zone}")
    log.info("%s/%s: armed (generation %d), next run %s", job.namespace, job.name, generation, armed.next_run_at)


async def _run_now(runtime: Runtime, job: JobRef, spec: ScheduledJobSpec, request: str) -> None:
    run_id, queued = await run_now(runtime.broker, job, spec, request, runtime.clock.now())
    if queued:
        log.info("%s/%s: manual run %s queued (request %r)", job.namespace, job.name, run_id, request)
    else:
        log.info("%s/%s: request %r already ran as %s", job.namespace, job.name, request, run_id)


@kopf.on.delete(GROUP, VERSION, PLURAL)
async def forget(meta: kopf.Meta, memo: kopf.Memo, logger: kopf.Logger, **_: Any) -> None:
    runtime = runtime_of(memo)
    job_id = str(meta["uid"])
    retain, warning = history_policy(meta.annotations)
    if warning is not None:
        logger.warning(warning)
    try:
        async with asyncio.timeout(BACKEND_TIMEOUT_SECONDS), runtime.locks.hold(job_id):
            await disarm_job(runtime.broker, runtime.store, job_id, retain_history=retain)
    except BACKEND_ERRORS as exc:
        # The finalizer stays until the job is really disarmed: otherwise it would keep firing.
        raise kopf.TemporaryError(describe_backend_error(exc), delay=BACKEND_RETRY_SECONDS) from exc
    log.info("%s/%s: disarmed, history %s", meta.get("namespace"), meta.get("name"),
             "retained" if retain else "deleted")
