"""`sundial-operator`: the process that reconciles ScheduledJobs (see `--help`).

Start-up checks everything it can before kopf starts (settings, kubeconfig, PostgreSQL, Redis,
the CRDs, the peering object), so a misconfigured operator exits non-zero with one readable
line instead of retrying handlers forever.
"""

from __future__ import annotations

import asyncio
import functools
import getpass
import logging
import os
import socket
import sys
import threading
from collections.abc import Sequence
from typing import Any, cast

import kopf
from lightkube import SingleConfig

from sundial.core.broker import Broker
from sundial.core.clock import SYSTEM_CLOCK
from sundial.core.config import ConfigError, Settings, load_settings
from sundial.core.logs import configure_logging
from sundial.core.store import BackendUnavailable, Store, redact_dsn
from sundial.kube.api import KubeApi
from sundial.kube.config import load_config
from sundial.kube.errors import KubeError, KubeUnreachable
from sundial.operator import admission, handlers
from sundial.operator.login import connection_info
from sundial.operator.metrics import serve_metrics
from sundial.operator.options import OperatorOptions, parse_options
from sundial.operator.peering import PeeringGate
from sundial.operator.policies import PolicyBook
from sundial.operator.runtime import Runtime

PROG = "sundial-operator"
# How long closing each client may take on the way out, and the whole way out once kopf has
# stopped.
CLOSE_SECONDS = 2.0
EXIT_SECONDS = 10.0

__all__ = ["handlers", "main", "serve"]  # handlers: imported to register them with kopf


def main(argv: Sequence[str] | None = None) -> None:
    options = parse_options(argv)
    try:
        settings = load_settings()
        for variable, value in (("DATABASE_URL", settings.database_url), ("REDIS_URL", settings.redis_url)):
            if not value.strip():
                raise ConfigError(f"invalid configuration: {variable} is empty")
        kube_config = load_config()
        connection_info(kube_config)  # kopf's login, checked before kopf retries it forever
    except (ConfigError, KubeError, KubeUnreachable) as exc:
        sys.exit(f"{PROG}: {exc}")
    configure_logging("DEBUG" if options.verbose else settings.log_level, settings.log_format)
    # One line per HTTP request (lightkube's client) is noise next to kopf's own logging.
    logging.getLogger("httpx2").setLevel(logging.WARNING)
    if options.webhook:
        admission.register()
    try:
        asyncio.run(serve(options, settings, kube_config))
    except (BackendUnavailable, KubeError, KubeUnreachable) as exc:
        sys.exit(f"{PROG}: {exc}")


def peer_identity() -> str:
    """How this replica appears among the peers: the pod's name in a cluster (POD_ID, as kopf
    reads it), else user@host/pid so two local replicas differ."""
    return os.environ.get("POD_ID") or f"{getpass.getuser()}@{socket.gethostname()}/{os.getpid()}"


async def serve(options: OperatorOptions, settings: Settings, kube_config: SingleConfig) -> None:
    identity = peer_identity()
    pool_log = logging.getLogger("psycopg.pool")
    quiet, pool_log.disabled = pool_log.disabled, True  # a failure is reported once, below
    try:
        # Handlers, the churn watch and the status sync share it: a few more connections keep a
        # handler's short read from queueing behind a batch of hundreds.
        store = await Store.open(settings.database_url, max_size=8, wait_seconds=10.0)
    finally:
        pool_log.disabled = quiet
    broker = Broker.from_url(settings.redis_url, settings.keyspace)
    kube = KubeApi.connect(kube_config, component=PROG, instance=identity)
    try:
        try:
            await broker.redis.ping()
        except Exception as exc:
            raise BackendUnavailable(f"Redis at {redact_dsn(settings.redis_url)} is unreachable: {exc}") from exc
        await kube.check_scheduledjob_crd()
        reader = None
        if not options.standalone:
            await kube.ensure_peering(options.peering, options.namespaces)
            reader = functools.partial(kube.peering_statuses, options.peering, options.namespaces)
        runtime = Runtime(
            options=options,
            store=store,
            broker=broker,
            kube=kube,
            clock=SYSTEM_CLOCK,
            identity=identity,
            gate=PeeringGate(reader, identity, options.priority, SYSTEM_CLOCK),
            policy_book=PolicyBook(store, kube, settings.default_policy, settings.policy_refresh_seconds),
            queue_grace_seconds=settings.queue_grace_seconds,
        )
        serve_metrics(settings.metrics_host, settings.metrics_port)
        await kopf.operator(
            clusterwide=options.clusterwide,
            namespaces=list(options.namespaces),
            standalone=options.standalone,
            peering_name=None if options.standalone else options.peering,
            # kopf's Identity is a NewType of str it does not export.
            identity=cast(Any, identity),
            liveness_endpoint=options.liveness,
            memo=kopf.Memo(runtime=runtime),
        )
    finally:
        exit_within(EXIT_SECONDS)
        await close_all(kube, broker, store)


def exit_within(seconds: float) -> None:
    """End the process `seconds` from now, whatever still runs. kopf's own last resort
    (`ultimate_exiting_timeout`) is a callback of its event loop; seen at load 35, with the API
    server and PostgreSQL gone, an operator was still alive 2 minutes after SIGTERM, its last
    log line from asyncio.run closing tasks and async generators after kopf had returned. A
    thread's timer does not depend on the loop, nor on what the interpreter waits for on exit."""
    def give_up() -> None:
        logging.getLogger("sundial.operator").error("still exiting after %.0f s; exiting now", seconds)
        logging.shutdown()
        os._exit(1)

    timer = threading.Timer(seconds, give_up)
    timer.daemon = True
    timer.start()


async def close_all(kube: KubeApi, broker: Broker, store: Store) -> None:
    """Close the clients, each within CLOSE_SECONDS: a backend that hangs (a stopped
    PostgreSQL never answers a query's cancellation, and psycopg's pool closes in-use
    connections only once they come back) must not hold a SIGTERM'd operator for minutes."""
    for name, closing in (("Kubernetes client", kube.aclose), ("Redis", broker.close),
                          ("PostgreSQL pool", functools.partial(store.close, wait_seconds=CLOSE_SECONDS))):
        try:
            async with asyncio.timeout(CLOSE_SECONDS):
                await closing()
        except TimeoutError:
            logging.getLogger("sundial.operator").warning("%s not closed within %.0f s; exiting anyway", name,
                                                          CLOSE_SECONDS)


if __name__ == "__main__":
    main()
