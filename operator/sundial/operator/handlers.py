"""kopf handlers for ScheduledJob: thin wrappers around `sundial.core.jobs` and `reconcile`.

Create, update and resume share one level-based reconcile: validate the spec, arm it (which is
idempotent, and never undoes a newer view: `sundial.operator.projection`), queue a pending
run-now, then report `observedGeneration` and the Ready condition. kopf calls it only when the
object's essence changes (spec, labels, annotations): status writes never trigger it.
Deletions are not kopf's: ScheduledJobs carry no finalizer, the churn watch
(`sundial.operator.churn`) disarms a job on the watch event of its deletion, and the start-up
sweep (`sundial.operator.resync`) those deleted while no operator ran. The annotations a person
may set are documented in `sundial.operator.reconcile`.

A reconcile that finds the job armed already (the usual resume after a restart) arms nothing
and writes only the status fields that differ, usually none. Before kopf starts watching, the
startup handler primes every object in bulk (`sundial.operator.prime`); kopf's resume of an
object priming left complete is then a no-op.

The handlers decide `status.conditions`, `status.observedGeneration` and
`status.lastRunNowRequest` but do not write them: they report them to the status sync, the one
writer of `status`, which sends them with the run-derived fields (`nextRunTime` among them)
built from the job's row.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any, Final

import kopf

from sundial.core.backfill import BackfillError, BackfillRequest
from sundial.core.clock import to_ms
from sundial.core.crd import GROUP, LAST_BACKFILL_FIELD, LAST_RUN_NOW_FIELD, PLURAL, VERSION
from sundial.core.jobs import ArmRequest, BackfillProgress, backfill, disarm_job, run_now, serving_broker
from sundial.core.runs import JobRef
from sundial.core.spec import ScheduledJobSpec, SpecError, parse_spec
from sundial.core.status import REASON_BACKEND_UNAVAILABLE, REASON_NOT_ALLOWED, REASON_UNKNOWN_TARGET
from sundial.kube.api import ObjectRef
from sundial.kube.config import load_config
from sundial.kube.errors import KubeError, KubeUnreachable, is_transient
from sundial.operator import metrics, slim
from sundial.operator.churn import ChurnWatch
from sundial.operator.kopfstate import MemoryDiffBase, ProgressAnnotations
from sundial.operator.login import connection_info
from sundial.operator.metrics import JobMetrics
from sundial.operator.policies import PolicyBook
from sundial.operator.prime import KopfState, Primer, PrimeReport
from sundial.operator.projection import project
from sundial.operator.ratelimit import Spacing, TokenBucket
from sundial.operator.reconcile import (
    changed_fields,
    conditions_with,
    history_policy,
    invalid_reason,
    missing_target,
    pending_backfill,
    pending_run_now,
    plain,
    ready,
    ready_fields,
)
from sundial.operator.resync import DriftRepair
from sundial.operator.runtime import BACKEND_ERRORS, Runtime, describe_backend_error, runtime_of
from sundial.operator.status_sync import StatusSync
from sundial.operator.webhook import SelfSignedWebhookServer

# kopf's own bookkeeping (a retrying handler's progress) under our domain, apart from the
# annotations people set (sundial.dev/run-now), so neither can be mistaken for the other.
KOPF_PREFIX: Final = "operator.sundial.dev"
# Deletions seen within this window that make a mass delete (StatusSync's hold).
MASS_DELETE_SECONDS: Final = 2.0
MASS_DELETE_COUNT: Final = 50
# The finalizer an older Sundial put on every ScheduledJob; none is added any more.
FINALIZER: Final = "sundial.dev/finalizer"
# Handler ids, which name kopf's progress annotations (the function names, kopf's default).
RECONCILE_ID: Final = "reconcile"
FORGET_ID: Final = "forget"
WEBHOOK_CONFIGURATION: Final = "sundial.dev"

# Objects reconciled at once, and how long a worker waits for more events of its object
# before it frees its slot (see configure).
QUEUE_WORKER_LIMIT: Final = 64
QUEUE_IDLE_SECONDS: Final = 0.05
LIST_PAGE_SIZE: Final = 500
# The first Kubernetes release whose API server serves streaming lists (WatchList) by default.
STREAMING_LIST_SINCE: Final = (1, 34)
ULTIMATE_EXIT_SECONDS: Final = 20.0
# How soon an UnknownTarget job looks for a worker again.
UNKNOWN_TARGET_RETRY_SECONDS: Final = 30
# How soon a handler that could not reach PostgreSQL or Redis tries again.
BACKEND_RETRY_SECONDS: Final = 10
# A one-at-a-time backfill looks this often whether its running slot has ended.
BACKFILL_POLL_SECONDS: Final = 5
# PostgreSQL's pool waits 30 s for a connection by default; a handler should give up sooner
# and report BackendUnavailable rather than hold a kopf worker that long.
BACKEND_TIMEOUT_SECONDS: Final = 10.0
# kopf serves its liveness endpoint only once the startup handlers are done, and the chart's
# startup probe waits 3 minutes: priming stops after this long and leaves the rest to kopf.
PRIME_BUDGET_SECONDS: Final = 120.0

log = logging.getLogger("sundial.operator")


# ---- process lifecycle -------------------------------------------------------------------


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    """Every tuning knob of the operator, with why it has the value it has."""
    runtime = runtime_of(memo)
    options = runtime.options

    # kopf writes nothing to an object it handled without a retry: the last handled spec stays
    # in this process, so no PATCH and no wait for its echo per object (kopfstate.py says why
    # that is safe across restarts). A retrying handler's progress goes in annotations, not in
    # status: status is ours, and the CRD keeps unknown status fields (kopf's would pile up).
    settings.persistence.progress_storage = ProgressAnnotations(prefix=KOPF_PREFIX)
    settings.persistence.diffbase_storage = MemoryDiffBase()
    # No handler needs a finalizer (see forget): kopf, told its name, removes the one an older
    # Sundial put on every object.
    settings.persistence.finalizer = FINALIZER

    # kopf starts a worker per object with pending events, unbounded by default, and its HTTP
    # session allows unlimited connections: a cold start over 10k jobs opened ~3,700 TLS
    # connections and grew past 1.7 GB. A bounded pool keeps memory flat and connections reused;
    # handlers are short, so 64 at a time keeps both cores busy. An idle worker holds its slot
    # for idle_timeout (5 s by default), which caps a pass over every object at limit/timeout
    # objects a second: 13/s with the default, still 128/s with 0.5 s (78 s for 10k resumes).
    # A worker waiting for the echo of its own patch is kept anyway (consistency), so a short
    # timeout only ends workers with nothing left to do; a later event starts a new one.
    settings.queueing.worker_limit = QUEUE_WORKER_LIMIT
    settings.queueing.idle_timeout = QUEUE_IDLE_SECONDS
    # Objects waiting for a worker wait with their events' bodies: under churn, thousands of
    # them. Without managedFields, which nothing here reads, a body weighs 40 % as much
    # (slim.py; MemoryDiffBase knows a DELETED event by its cut). More workers do not drain the
    # queue sooner: 256 were measured slower (handlers queued for the PostgreSQL pool, kopf
    # opened a TLS connection each) and the memory grew faster (docs/performance.md,
    # "Operator memory through a 10,000-job cycle"). The echoes of our status writes, which
    # change nothing kopf acts on, do not reach its queue at all (slim.EchoFilter).
    slim.install()

    # kopf scans CRDs (and namespaces) to discover what to watch. We know both up front: the
    # one CRD, checked at start-up, and the namespaces from the flags. Scanning would need
    # cluster-wide list rights the chart should not grant, and retries for a minute without them.
    settings.scanning.disabled = True

    # Events are for what a person must act on (an invalid spec, a job that started failing):
    # only explicit warnings are posted. Log lines stay logs (posting.loggers), or every retry
    # of an UnknownTarget job would add an Event to `kubectl describe`.
    settings.posting.loggers = False
    settings.posting.level = logging.WARNING

    await _choose_listing(settings, runtime)
    # Reconnect a watch every 10 minutes even when quiet: a stuck TCP connection through a
    # proxy or load balancer otherwise goes unnoticed for hours.
    settings.watching.server_timeout = 600
    settings.watching.client_timeout = 630
    settings.watching.connect_timeout = 30
    # Per-request ceiling; no request of ours (a PATCH, a LIST page) should take longer.
    settings.networking.request_timeout = 60

    # The last resort of a SIGTERM'd operator whose graceful exit still hangs (psycopg waits up
    # to 10 s for a hung PostgreSQL to confirm each cancelled query): kopf kills the process
    # this long after the stop began (its default is 10 minutes), inside the chart's 30 s grace.
    settings.process.ultimate_exiting_timeout = ULTIMATE_EXIT_SECONDS

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
        gone=runtime.tombstones,
        # More than 25 deletions a second is a mass delete (`kubectl delete --all`, a namespace
        # going): status writes wait until it is over (see StatusSync.run).
        hold=lambda: runtime.tombstones.added_since(MASS_DELETE_SECONDS, MASS_DELETE_COUNT),
    )
    runtime.status = status_sync

    # Arm everything in bulk before kopf starts watching (see sundial.operator.prime), but
    # only when no other replica is alive: one that is may be acting right now.
    report = None
    alone = await runtime.gate.alone()
    if alone:
        kopf_state = KopfState(
            progress=settings.persistence.progress_storage, legacy_finalizer=FINALIZER,
            handler_ids=(RECONCILE_ID, FORGET_ID),
        )
        report = await _prime(runtime, kopf_state, status_sync)
    primed = report is not None and report.complete

    if report is not None and primed:
        status_sync.seed(report.statuses)  # priming has just read every status: no LIST of its own
    # Drift repair: a lost Redis entry costs at most ~30 s of missed slots before it is
    # re-armed (and those go through the missed-run policy); orphans are harmless until
    # swept, so every 5 minutes is plenty and keeps full LISTs rare. Priming has just
    # re-armed every lost entry, so then the first pass waits one interval, and leaves kopf's
    # first pass over every object to itself.
    resync_seconds = options.resync_seconds or 30.0
    drift_repair = DriftRepair(
        runtime.deps, namespaces=options.namespaces,
        resync_seconds=resync_seconds,
        sweep_seconds=options.orphan_sweep_seconds or 300.0,
        first_pass_delay=resync_seconds if primed else 0.0,
    )
    if alone:
        # Jobs deleted while no operator ran (no finalizer kept their objects) stop firing
        # now, before kopf watches, rather than at the first periodic sweep.
        await drift_repair.sweep()
    job_metrics = JobMetrics(runtime.store, runtime.broker, runtime.clock, namespaces=options.namespaces)
    # Deletions and suspensions take effect as the API server accepts them, arming as objects
    # arrive, whatever kopf's queue holds (see sundial.operator.churn).
    churn_watch = ChurnWatch(runtime.deps, namespaces=options.namespaces, legacy_finalizer=FINALIZER)
    runtime.loops = {"status sync": status_sync.run, "drift repair": drift_repair.run, "job metrics": job_metrics.run,
                     "churn watch": churn_watch.run}
    if runtime.policy_book is not None:
        await _first_policies(runtime.policy_book)
        runtime.loops["policies"] = runtime.policy_book.run
    runtime.start_background()


async def _choose_listing(settings: kopf.OperatorSettings, runtime: Runtime) -> None:
    """How kopf gets the objects before watching them (on start, and after each 410 of its watch).

    A paged LIST holds a continue token that the API server honours only while the LIST's
    version is in its watch cache or not yet compacted away in etcd (every 5 minutes by
    default). kopf hands every listed object to its queue before fetching the next page, and
    under load a 10k LIST outlived that: the next page answered 410 Gone, which kopf 1.45 does
    not catch (`kopf._cogs.clients.watching.continuous_watch` catches only connection errors
    around `fetching.fetch_objs`), so the operator exited. A streaming list (a watch with
    `sendInitialEvents`, served from the watch cache from Kubernetes 1.34) has no continue
    token to lose, and delivers the objects one by one instead of 500 at a time. Older API
    servers refuse it: there, one page of 500 stays, and a 410 on a later page ends the
    operator as before (and its Deployment restarts it).
    """
    try:
        version = await runtime.kube.server_version()
    except (KubeError, KubeUnreachable) as exc:
        log.warning("API server version unknown (%s): kopf lists in pages", exc)
        version = (0, 0)
    if version >= STREAMING_LIST_SINCE:
        settings.watching.initial_streaming = True
    else:
        settings.watching.chunk_size = LIST_PAGE_SIZE


async def _first_policies(book: PolicyBook) -> None:
    """Read the policies before admission answers anything; a failure leaves the default (the
    safe side) until the loop's next pass."""
    try:
        await book.refresh()
    except Exception as exc:
        log.warning("namespace policies not read at start-up (%s); the default applies until they are", exc)


async def _prime(runtime: Runtime, kopf_state: KopfState, status_sync: StatusSync) -> PrimeReport | None:
    primer = Primer(runtime.store, runtime.broker, runtime.kube, runtime.clock, kopf_state, status_sync,
                    namespaces=runtime.options.namespaces, budget_seconds=PRIME_BUDGET_SECONDS,
                    primed=runtime.primed, queue_grace_seconds=runtime.queue_grace_seconds)
    started = runtime.clock.monotonic()
    try:
        report = await primer.prime()
    except BACKEND_ERRORS as exc:
        log.warning("priming skipped: %s; the handlers arm every job", describe_backend_error(exc))
        return None
    except Exception as exc:
        # Priming only saves time: whatever it did not do, the handlers do.
        if not is_transient(exc):
            log.exception("priming failed; the handlers arm every job")
        else:
            log.warning("priming skipped: Kubernetes API: %s; the handlers arm every job", exc)
        return None
    log.info("%s", report.summary(runtime.clock.monotonic() - started))
    return report


@kopf.on.cleanup()
async def stop_background(memo: kopf.Memo, **_: Any) -> None:
    await runtime_of(memo).stop_background()


@kopf.on.login()
def login(**_: Any) -> kopf.ConnectionInfo:
    # The cluster sundial.kube.config chooses, as for the operator's own calls and the CLI.
    return connection_info(load_config())


@kopf.on.probe(id="background")
def background_loops(memo: kopf.Memo, **_: Any) -> str:
    dead = runtime_of(memo).dead_loops()
    if dead:
        # A failing probe fails the liveness endpoint: better a restart than a silent operator.
        raise RuntimeError(f"background loops stopped: {', '.join(dead)}")
    return "running"


# ---- ScheduledJob ------------------------------------------------------------------------


@kopf.on.resume(GROUP, VERSION, PLURAL, id=RECONCILE_ID)
@kopf.on.create(GROUP, VERSION, PLURAL, id=RECONCILE_ID)
@kopf.on.update(GROUP, VERSION, PLURAL, id=RECONCILE_ID)
async def reconcile(body: kopf.Body, meta: kopf.Meta, status: kopf.Status, memo: kopf.Memo, **_: Any) -> None:
    runtime = runtime_of(memo)
    now = runtime.clock.now()
    generation = int(meta.get("generation") or 0)
    job = JobRef(str(meta["uid"]), str(meta["namespace"]), str(meta["name"]))
    if runtime.primed.pop(job.job_id, None) == meta.get("resourceVersion"):
        # Priming armed it and wrote its status at this very version: nothing is left to do.
        log.info("%s/%s: primed (generation %d)", job.namespace, job.name, generation)
        return

    owned: dict[str, Any] = {}

    def write(fields: Mapping[str, Any]) -> None:
        # Only what the object does not show yet: a resume that changes nothing writes nothing.
        owned.update(changed_fields(status, fields))

    def report(ok: bool, reason: str, message: str) -> None:
        if not ok:
            metrics.RECONCILE_ERRORS.labels(reason).inc()
        write({
            "observedGeneration": generation,
            "conditions": conditions_with(status.get("conditions"), ready(ok, reason, message, generation), now),
        })

    try:
        await _reconcile(runtime, body, meta, status, job, generation, write, report)
    finally:
        if owned:
            # The status sync writes status (see sundial.operator.status_sync).
            runtime.status.report(ObjectRef(job.namespace, job.name, job.job_id), owned)


async def _reconcile(
    runtime: Runtime, body: kopf.Body, meta: kopf.Meta, status: kopf.Status, job: JobRef, generation: int,
    write: Callable[[Mapping[str, Any]], None], report: Callable[[bool, str, str], None],
) -> None:
    now = runtime.clock.now()
    try:
        spec = parse_spec(plain(body.get("spec", {})))
    except SpecError as exc:
        reason = invalid_reason(exc)
        report(False, reason, str(exc))
        kopf.warn(body, reason=reason, message=str(exc))
        raise kopf.PermanentError(str(exc)) from exc

    request = pending_run_now(meta.annotations, status)
    backfill_request = pending_backfill(meta.annotations, status)
    backfilling: BackfillProgress | BackfillError | None = None
    try:
        async with asyncio.timeout(BACKEND_TIMEOUT_SECONDS), runtime.locks.hold(job.job_id):
            if job.job_id in runtime.tombstones:
                log.info("%s/%s: being deleted, nothing to do", job.namespace, job.name)
                return
            if runtime.armed_generations.get(job.job_id) == generation:
                changed = False  # the churn watch armed this generation already
            else:
                projection = await project(runtime.store, runtime.broker, [ArmRequest(job, spec, generation)], now,
                                           runtime.tombstones, queue_grace_seconds=runtime.queue_grace_seconds)
                if job.job_id in projection.stale:
                    # A newer generation is armed already: this view is out of date, and the
                    # event that overtook it is on its way to this handler.
                    log.info("%s/%s: generation %d overtaken, nothing to do", job.namespace, job.name, generation)
                    return
                changed = job.job_id in projection.rearmed
                runtime.armed_generations[job.job_id] = generation
            if request is not None:
                await _run_now(runtime, job, spec, request)
            if backfill_request is not None:
                backfilling = await _backfill(runtime, job, spec, backfill_request)
            # The job's own pool's workers: another pool offering the target cannot run it.
            workers = {} if spec.suspend else await serving_broker(runtime.broker, spec).live_workers(to_ms(now))
    except BACKEND_ERRORS as exc:
        message = describe_backend_error(exc)
        report(False, REASON_BACKEND_UNAVAILABLE, message)
        raise kopf.TemporaryError(message, delay=BACKEND_RETRY_SECONDS) from exc

    if request is not None:
        write({LAST_RUN_NOW_FIELD: request})
    if isinstance(backfilling, BackfillError):
        kopf.warn(body, reason="BackfillRefused", message=str(backfilling))
    if backfilling is not None and (isinstance(backfilling, BackfillError) or backfilling.complete):
        write({LAST_BACKFILL_FIELD: backfill_request})
    if spec.suspend:
        write(ready_fields(status, generation, spec, now))
        log.info("%s/%s: suspended (generation %d)", job.namespace, job.name, generation)
        return
    refusal = None if runtime.policy_book is None else await runtime.policy_book.refusal(spec, job.namespace)
    if refusal is not None:
        # Admission refuses this when the webhook runs. Without it the job stays armed, its
        # workers refuse each run (recorded Failed with this reason), and the retry below
        # turns Ready back on once a TargetPolicy grants what it needs.
        report(False, REASON_NOT_ALLOWED, refusal)
        kopf.warn(body, reason=REASON_NOT_ALLOWED, message=refusal)
        raise kopf.TemporaryError(refusal, delay=UNKNOWN_TARGET_RETRY_SECONDS)
    missing = missing_target(spec.run_target, workers)
    if missing is not None:
        # Armed all the same: the first worker that offers the target will run it.
        report(False, REASON_UNKNOWN_TARGET, missing)
        raise kopf.TemporaryError(missing, delay=UNKNOWN_TARGET_RETRY_SECONDS)
    write(ready_fields(status, generation, spec, now))
    log.info("%s/%s: %s (generation %d)", job.namespace, job.name, "armed" if changed else "already armed",
             generation)
    if isinstance(backfilling, BackfillProgress) and not backfilling.complete:
        # One run at a time: kopf calls back until the last slot is queued, even after a restart.
        raise kopf.TemporaryError(f"backfill: {backfilling.recorded} of {backfilling.slots} slots run, next when "
                                  "the running one ends", delay=BACKFILL_POLL_SECONDS)


async def _run_now(runtime: Runtime, job: JobRef, spec: ScheduledJobSpec, request: str) -> None:
    run_id, queued = await run_now(runtime.broker, job, spec, request, runtime.clock.now(),
                                   queue_grace_seconds=runtime.queue_grace_seconds)
    if queued:
        log.info("%s/%s: manual run %s queued (request %r)", job.namespace, job.name, run_id, request)
    else:
        log.info("%s/%s: request %r already ran as %s", job.namespace, job.name, request, run_id)


async def _backfill(runtime: Runtime, job: JobRef, spec: ScheduledJobSpec, request: str,
                    ) -> BackfillProgress | BackfillError:
    try:
        progress = await backfill(runtime.broker, runtime.store, job, spec, BackfillRequest.from_json(request),
                                  runtime.clock.now())
    except BackfillError as exc:
        log.warning("%s/%s: backfill %r refused: %s", job.namespace, job.name, request, exc)
        return exc
    log.info("%s/%s: backfill %r: %d slots, %d queued now, %d run already%s", job.namespace, job.name, request,
             progress.slots, progress.queued, progress.recorded, "" if progress.complete else ", more to come")
    return progress


# optional: no finalizer. A deletion is acted on from the watch event (sundial.operator.churn)
# and, for one the operator missed while down, by the start-up sweep (sundial.operator.resync);
# docs/architecture.md says why. kopf calls this only for an object that some other finalizer
# keeps, and removes our finalizer from objects an older Sundial gave one.
@kopf.on.delete(GROUP, VERSION, PLURAL, id=FORGET_ID, optional=True)
async def forget(meta: kopf.Meta, memo: kopf.Memo, logger: kopf.Logger, **_: Any) -> None:
    runtime = runtime_of(memo)
    job_id = str(meta["uid"])
    runtime.primed.pop(job_id, None)
    runtime.armed_generations.pop(job_id, None)
    runtime.tombstones.add(job_id)
    retain, warning = history_policy(meta.annotations)
    if warning is not None:
        logger.warning(warning)
    try:
        async with asyncio.timeout(BACKEND_TIMEOUT_SECONDS), runtime.locks.hold(job_id):
            await disarm_job(runtime.broker, runtime.store, job_id, retain_history=retain)
    except BACKEND_ERRORS as exc:
        raise kopf.TemporaryError(describe_backend_error(exc), delay=BACKEND_RETRY_SECONDS) from exc
    log.info("%s/%s: disarmed, history %s", meta.get("namespace"), meta.get("name"),
             "retained" if retain else "deleted")
