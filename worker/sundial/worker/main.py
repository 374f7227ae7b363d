"""`sundial-worker`: the process each worker replica runs."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from sundial.core.broker import Broker
from sundial.core.clock import SYSTEM_CLOCK
from sundial.core.config import ConfigError, Settings, load_settings
from sundial.core.logs import configure_logging
from sundial.core.metrics import export_build_info
from sundial.core.pools import DEFAULT_POOL, keyspace_for
from sundial.core.store import BackendUnavailable, Store
from sundial.worker.app import Worker
from sundial.worker.targets.builtin import close_http_session, configure_http_egress
from sundial.worker.targets.egress import EgressPolicy
from sundial.worker.targets.registry import TargetLoadError, TargetRegistry, load_targets

log = logging.getLogger("sundial.worker")

# A probe answers within Kubernetes' default 1 s timeout even when PostgreSQL hangs.
READY_PING_SECONDS = 0.8


def main() -> None:
    try:
        settings = load_settings()
    except ConfigError as exc:
        sys.exit(f"sundial-worker: {exc}")
    configure_logging(settings.log_level, settings.log_format)
    try:
        asyncio.run(serve(settings))
    except (BackendUnavailable, TargetLoadError) as exc:
        sys.exit(f"sundial-worker: {exc}")


async def serve(settings: Settings, *, registry: TargetRegistry | None = None, pool: str = DEFAULT_POOL) -> None:
    """Serve `pool`'s keyspace with `registry` (default: the Python targets installed)."""
    if registry is None:
        registry = load_targets(settings.target_modules)
        configure_http_egress(egress_policy(settings))
    store = await Store.open(settings.database_url, max_size=max(4, settings.concurrency))
    broker = Broker.from_url(settings.redis_url, keyspace_for(settings.keyspace, pool))
    try:
        await broker.redis.ping()
    except Exception as exc:
        raise BackendUnavailable(f"Redis at {settings.redis_url} is unreachable: {exc}") from exc
    worker = Worker(settings, broker, store, registry, SYSTEM_CLOCK, pool=pool)
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
        if stop.is_set():
            return web.json_response({"ready": False, "reason": "shutting down"}, status=503)
        try:
            await worker.broker.redis.ping()
        except Exception as exc:
            return web.json_response({"ready": False, "reason": f"redis: {exc}"}, status=503)
        try:
            await worker.store.ping(READY_PING_SECONDS)
        except Exception as exc:
            reason = f"postgresql: {exc or type(exc).__name__}"
            return web.json_response({"ready": False, "reason": reason}, status=503)
        return web.json_response({"ready": True, "in_flight": len(worker.consumer.in_flight)})

    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    if settings.metrics_port:
        await web.TCPSite(runner, settings.metrics_host, settings.metrics_port).start()
    return runner
