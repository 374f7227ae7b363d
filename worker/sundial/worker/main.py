"""`sundial-worker`: the process each worker replica runs."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import sys
from collections.abc import Awaitable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from sundial.core.broker import Broker
from sundial.core.clock import SYSTEM_CLOCK
from sundial.core.config import ConfigError, Settings, load_settings
from sundial.core.logs import configure_logging
from sundial.core.metrics import export_build_info
from sundial.core.store import BackendUnavailable, Store
from sundial.worker.app import Worker
from sundial.worker.readiness import Probe, readiness
from sundial.worker.secrets import install_redaction
from sundial.worker.targets.builtin import close_http_session, configure_http_egress
from sundial.worker.targets.egress import EgressPolicy
from sundial.worker.targets.registry import TargetLoadError, TargetRegistry, load_targets

log = logging.getLogger("sundial.worker")

# A probe answers within Kubernetes' default 1 s timeout even when PostgreSQL or Redis hangs
# (both are asked at once).
READY_PING_SECONDS = 0.8


def main() -> None:
    try:
        settings = load_settings()
    except ConfigError as exc:
        sys.exit(f"sundial-worker: {exc}")
    configure_logging(settings.log_level, settings.log_format)
    install_redaction()
    tune_garbage_collector()  # the process's own settings: not in serve(), which tests call in theirs
    try:
        asyncio.run(serve(settings))
    except (BackendUnavailable, TargetLoadError) as exc:
        sys.exit(f"sundial-worker: {exc}")


# A lane holds a connection only for a moment (a policy or status read; records go through the
# recorder's batches), so a few connections serve thousands of lanes: a launcher has 5,000, and
# one connection each would exhaust PostgreSQL's max_connections (100 by default) at once.
MAX_DB_CONNECTIONS = 16


async def serve(settings: Settings, *, registry: TargetRegistry | None = None) -> None:
    """Serve the keyspace of `settings.worker_pool` with `registry` (default: the Python targets installed)."""
    if registry is None:
        registry = load_targets(settings.target_modules)
        configure_http_egress(egress_policy(settings))
    store = await Store.open(settings.database_url, max_size=min(max(4, settings.concurrency), MAX_DB_CONNECTIONS))
    broker = Broker.from_url(settings.redis_url, settings.worker_keyspace)
    try:
        await broker.redis.ping()
    except Exception as exc:
        raise BackendUnavailable(f"Redis at {settings.redis_url} is unreachable: {exc}") from exc
    worker = Worker(settings, broker, store, registry, SYSTEM_CLOCK)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    runner = await _start_http(settings, worker, stop)
    try:
        await worker.run(stop)
    finally:
        await runner.cleanup()
        await close_http_session()
        await broker.close()
        await store.close()
        log.info("worker %s stopped", settings.worker_id)


# A run allocates a few dozen short-lived objects (its message, record, context...), while
# thousands of others (prefetched runs, runs waiting for their commit, imported modules) live on:
# at the default thresholds the collector ran a young collection every 700 allocations and
# re-scanned everything long-lived every 70,000. Timed while draining a queue, the collector
# took 0.65 s of a worker's 4.6 s of CPU; with these thresholds 0.18 s.
GC_YOUNG_THRESHOLD = 20_000
GC_OLDER_THRESHOLDS = (20, 100)


def tune_garbage_collector() -> None:
    """Move what start-up built out of the collector's sight, then collect young objects less often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *GC_OLDER_THRESHOLDS)


async def _failure(check: Awaitable[object], seconds: float) -> str | None:
    """None when `check` succeeds within `seconds`, else what went wrong."""
    try:
        async with asyncio.timeout(seconds):
            await check
    except Exception as exc:
        return str(exc) or type(exc).__name__
    return None


def egress_policy(settings: Settings) -> EgressPolicy:
    return EgressPolicy.build(
        allow_cidrs=settings.http_allow_cidrs,
        allow_hosts=settings.http_allow_hosts,
        deny_cidrs=settings.http_deny_cidrs,
        deny_hosts=settings.http_deny_hosts,
        deny_private=settings.http_deny_private,
    )


async def _start_http(settings: Settings, worker: Worker, stop: asyncio.Event) -> web.AppRunner:
    """/metrics for Prometheus, /healthz for liveness, /readyz for readiness."""
    app = web.Application()
    export_build_info("worker")

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"ok": worker.healthy}, status=200 if worker.healthy else 503)

    async def readyz(_: web.Request) -> web.Response:
        redis_error, postgres_error = await asyncio.gather(
            _failure(worker.broker.redis.ping(), READY_PING_SECONDS),
            _failure(worker.store.ping(READY_PING_SECONDS), READY_PING_SECONDS))
        status, body = readiness(Probe(
            stopping=stop.is_set(), redis_error=redis_error, postgres_error=postgres_error,
            unrecorded=worker.recorder.unrecorded,
            max_unrecorded=worker.recorder.max_unrecorded,
            in_flight=len(worker.consumer.in_flight),
        ))
        return web.json_response(body, status=status)

    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    if settings.metrics_port:
        await web.TCPSite(runner, settings.metrics_host, settings.metrics_port).start()
    return runner
