"""`sundial doctor`: is everything Sundial needs there, and does it agree with itself?

One line per check, a verdict first (OK, WARN, FAIL; SKIP when what it needs already failed)
and a hint under every WARN and FAIL saying what to do. Exit 1 when anything FAILs, so it can
gate a deploy or a CI step.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Final, Literal

import click
import psycopg

from sundial.cli.backends import CONNECT_TIMEOUT_SECONDS, open_broker, open_store
from sundial.cli.kube import Kube, KubeError, KubeOptions, KubeUnreachable
from sundial.cli.options import BackendOptions, backend_options, kube_options, output_option
from sundial.cli.render import VERDICT_COLOURS, dump, error_summary, paint
from sundial.core.broker import LIVE_WORKER_MAX_AGE_MS, Broker, DeadLetter, QueueStats
from sundial.core.crd import CRD_NAME, VERSION, spec_schema
from sundial.core.heartbeat import LiveWorkers, WorkerHeartbeat, offered_targets
from sundial.core.migrate import discover, schema_version
from sundial.core.pools import DEFAULT_POOL, LAUNCHER_POOL, every_pool, pool_keyspace
from sundial.core.store import BackendUnavailable, MissedSlots, Store, redact_dsn

Verdict = Literal["OK", "WARN", "FAIL", "SKIP"]

CRD_FILE: Final = "deploy/crds/sundial.dev_scheduledjobs.yaml"
# A worker heart-beats every visibility_timeout/3 (10 s by default) and counts as live for 30 s.
HEARTBEAT_LATE_MS: Final = 15_000
# Slots fire by the clock of whichever worker's ticker wins: skew is lateness (or earliness).
SKEW_WARN_MS: Final = 1_000
SKEW_FAIL_MS: Final = 5_000
LOCAL_SKEW_WARN_MS: Final = 2_000
# A run waiting this long for a worker is already later than most jobs tolerate.
QUEUE_LAG_WARN_MS: Final = 10_000
# Under overload the queue's wait stays under a run's deadline (the ticker records a share of
# the slots missed, docs/performance.md "Overload policy"), so missed slots, not the wait, say
# it best.
MISSED_WINDOW_SECONDS: Final = 15 * 60
MISSED_JOBS_LISTED: Final = 3
NAME_WIDTH: Final = 16


@dataclass(frozen=True)
class Check:
    verdict: Verdict
    name: str
    detail: str
    hint: str | None = None
    pool: str | None = None  # the worker pool a Workers or Queue check is about


@click.command(short_help="Check the cluster, CRD, backends, workers, clocks, queue and missed slots.")
@kube_options()
@backend_options()
@output_option("text", "json", "yaml", default="text")
def doctor(kube: KubeOptions, backends: BackendOptions, output: str) -> None:
    """Check the Kubernetes API, the CRD, PostgreSQL and its schema, Redis, live workers, clocks, the
    queue and slots recorded missed."""
    checks = asyncio.run(run_checks(kube, backends))
    if output == "text":
        for line in render_checks(checks):
            click.echo(line)
    else:
        click.echo(dump([{key: value for key, value in asdict(check).items() if key != "pool" or value}
                         for check in checks], output))
    if any(check.verdict == "FAIL" for check in checks):
        raise SystemExit(1)


def render_checks(checks: Sequence[Check]) -> list[str]:
    lines = []
    for check in checks:
        verdict = paint(check.verdict.ljust(4), VERDICT_COLOURS[check.verdict], bold=check.verdict == "FAIL")
        lines.append(f"{verdict}   {check.name.ljust(NAME_WIDTH)}{check.detail}".rstrip())
        if check.hint and check.verdict in ("WARN", "FAIL"):
            lines.append(f"{'':7}{'':{NAME_WIDTH}}hint: {check.hint}")
    counts = {verdict: sum(1 for c in checks if c.verdict == verdict) for verdict in ("OK", "WARN", "FAIL", "SKIP")}
    lines.append(", ".join(f"{count} {verdict}" for verdict, count in counts.items() if count))
    return lines


async def run_checks(kube: KubeOptions, backends: BackendOptions) -> list[Check]:
    checks = await kubernetes_checks(kube)
    database = await database_checks(backends.database_url)
    checks += database
    # One pool for every check that reads jobs, opened only when PostgreSQL answered: a server
    # that hangs costs its connect timeout once, in the PostgreSQL check.
    store = await _open_store(backends.database_url) if database[0].verdict == "OK" else None
    try:
        checks += await redis_checks(backends.redis_url, backends.redis_prefix, store)
    finally:
        if store is not None:
            await store.close()
    return checks


async def _open_store(database_url: str | None) -> Store | None:
    if not database_url:
        return None
    try:
        return await open_store(database_url)
    except BackendUnavailable:
        return None


# ---- Kubernetes ------------------------------------------------------------------------------


async def kubernetes_checks(options: KubeOptions) -> list[Check]:
    skip_crd = Check("SKIP", "CRD", "needs the Kubernetes API")
    try:
        kube = Kube.connect(options)
    except (KubeUnreachable, KubeError) as exc:
        return [Check("FAIL", "Kubernetes API", str(exc),
                      "set KUBECONFIG or pass --kubeconfig/--context (kubectl config get-contexts)"), skip_crd]
    where = f"{kube.server} (context {kube.context_name})"
    try:
        crd = await kube.get_crd()
    except KubeUnreachable as exc:
        return [Check("FAIL", "Kubernetes API", str(exc), "is the cluster up and the kubeconfig current?"), skip_crd]
    except KubeError as exc:
        if exc.code == 401:
            return [Check("FAIL", "Kubernetes API", f"{where}: unauthorized", "refresh your credentials"), skip_crd]
        return [Check("OK", "Kubernetes API", where),
                Check("WARN", "CRD", f"cannot read CustomResourceDefinitions: {exc}",
                      f"ask for get on customresourcedefinitions/{CRD_NAME}")]
    finally:
        await kube.aclose()
    return [Check("OK", "Kubernetes API", where), crd_check(crd)]


def crd_check(crd: dict[str, Any] | None) -> Check:
    if crd is None:
        return Check("FAIL", "CRD", f"{CRD_NAME} is not installed",
                     f"kubectl apply -f {CRD_FILE} (or install the Helm chart)")
    versions = {str(v.get("name")): v for v in (crd.get("spec") or {}).get("versions") or []}
    ours = versions.get(VERSION)
    if ours is None or not ours.get("served"):
        served = ", ".join(name for name, v in versions.items() if v.get("served")) or "none"
        return Check("FAIL", "CRD", f"{CRD_NAME} does not serve {VERSION} (serves: {served})",
                     "install the CRD that matches this sundial version")
    conditions = (crd.get("status") or {}).get("conditions") or []
    established = any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions)
    if not established:
        return Check("FAIL", "CRD", f"{CRD_NAME} is not Established yet",
                     f"kubectl describe crd {CRD_NAME}")
    installed = set(((ours.get("schema") or {}).get("openAPIV3Schema") or {})
                    .get("properties", {}).get("spec", {}).get("properties", {}))
    expected = set(spec_schema().get("properties", {}))
    detail = f"{CRD_NAME} {VERSION} (served{', storage' if ours.get('storage') else ''}, established)"
    if expected - installed:
        return Check("WARN", "CRD", f"{detail} lacks spec fields {', '.join(sorted(expected - installed))}",
                     f"the CRD is older than this sundial: kubectl apply -f {CRD_FILE}")
    if installed - expected:
        return Check("WARN", "CRD", f"{detail} has spec fields this CLI does not know: "
                     f"{', '.join(sorted(installed - expected))}", "upgrade the sundial CLI")
    return Check("OK", "CRD", detail)


# ---- PostgreSQL ----------------------------------------------------------------------------


async def database_checks(database_url: str | None) -> list[Check]:
    if not database_url:
        return [Check("FAIL", "PostgreSQL", "not configured", "set DATABASE_URL or pass --database-url"),
                Check("SKIP", "Schema", "needs PostgreSQL")]
    where = redact_dsn(database_url)
    try:
        async with await psycopg.AsyncConnection.connect(
            database_url, autocommit=True, connect_timeout=int(CONNECT_TIMEOUT_SECONDS)
        ) as conn:
            row = await (await conn.execute("SHOW server_version")).fetchone()
    except psycopg.Error as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return [Check("FAIL", "PostgreSQL", f"{where} is unreachable: {detail}",
                      "check DATABASE_URL, the server and the network path to it"),
                Check("SKIP", "Schema", "needs PostgreSQL")]
    version = f" (PostgreSQL {str(row[0]).split()[0]})" if row else ""
    return [Check("OK", "PostgreSQL", f"{where}{version}"), await schema_check(database_url)]


async def schema_check(database_url: str) -> Check:
    newest = max((m.version for m in discover()), default=0)
    try:
        current = await asyncio.to_thread(schema_version, database_url)
    except psycopg.Error as exc:
        return Check("FAIL", "Schema", f"cannot read schema_migrations: {exc}", "sundial migrate")
    if current is None:
        return Check("FAIL", "Schema", f"no Sundial schema (this sundial needs version {newest})",
                     "run: sundial migrate")
    if current < newest:
        return Check("FAIL", "Schema", f"version {current}, this sundial needs {newest}", "run: sundial migrate")
    if current > newest:
        return Check("WARN", "Schema", f"version {current} is newer than this sundial knows ({newest})",
                     "upgrade the sundial CLI")
    return Check("OK", "Schema", f"version {current} (up to date)")


# ---- Redis, workers, clocks ----------------------------------------------------------------


async def redis_checks(redis_url: str | None, prefix: str, store: Store | None) -> list[Check]:
    dependent = [Check("SKIP", name, "needs Redis")
                 for name in ("Workers", "Targets", "Clocks", "Queue", "Dead letters", "Missed slots")]
    if not redis_url:
        return [Check("FAIL", "Redis", "not configured", "set REDIS_URL or pass --redis-url"), *dependent]
    broker = open_broker(redis_url, prefix)
    where = redact_dsn(redis_url)
    try:
        try:
            info = await broker.redis.info("server")
            before = time.time()
            seconds, micros = await broker.redis.time()
            after = time.time()
        except Exception as exc:
            return [Check("FAIL", "Redis", f"{where} is unreachable: {exc}",
                          "check REDIS_URL, the server and the network path to it"), *dependent]
        redis_ms = seconds * 1000 + micros // 1000
        # The midpoint of the round trip is the best guess of when Redis read its clock.
        local_ms = round((before + after) / 2 * 1000)
        checks = [Check("OK", "Redis", f"{where} (Redis {info.get('redis_version', '?')}, prefix {prefix!r})")]
        pools = [await PoolState.read(pool, pool_broker, redis_ms)
                 for pool, pool_broker in (await _pool_brokers(broker, store)).items()]
        default, others = pools[0], [state for state in pools[1:] if state.in_use]
        checks.append(workers_check(default.workers, redis_ms, prefix))
        checks += [pool_workers_check(state, redis_ms) for state in others]
        checks.append(await targets_check(default.workers, redis_ms, default.armed, store))
        every_worker = {f"{state.pool}/{wid}" if state.pool != DEFAULT_POOL else wid: info
                        for state in pools for wid, info in state.workers.items()}
        checks.append(clocks_check(every_worker, redis_ms, local_ms))
        checks += [queue_check(state.queues, pool=state.pool) for state in (default, *others)]
        letters = [await state.broker.all_dead_letters(1) for state in pools]
        newest = sorted((letter for found, _ in letters for letter in found), key=lambda d: d.died_ms, reverse=True)
        checks.append(dead_letters_check(newest[:1], sum(total for _, total in letters), redis_ms))
        checks.append(await _missed_slots(set().union(*(state.armed for state in pools)), store))
        return checks
    finally:
        await broker.close()


@dataclass(frozen=True)
class PoolState:
    """What doctor reads of one worker pool's keyspace."""

    pool: str
    broker: Broker
    workers: LiveWorkers
    armed: set[str]
    queues: list[QueueStats]

    @classmethod
    async def read(cls, pool: str, broker: Broker, redis_ms: int) -> PoolState:
        return cls(pool, broker, await broker.live_workers(redis_ms, 10**15),  # forgets nothing
                   await broker.armed_job_ids(),
                   [await broker.queue_stats(shard, redis_ms) for shard in broker.keys.all_shards()])

    @property
    def in_use(self) -> bool:
        """A pool with workers, armed jobs or queued runs (the rest have nothing to report)."""
        return bool(self.workers or self.armed or any(q.length or q.pending or q.delayed for q in self.queues))


async def _pool_brokers(broker: Broker, store: Store | None) -> dict[str, Broker]:
    """Every pool's broker, the default first: the built-in ones, and those jobs name when
    PostgreSQL can say."""
    named: set[str] = set()
    if store is not None:
        with contextlib.suppress(psycopg.Error, TimeoutError):
            named = await store.named_pools()
    return {pool: broker.for_keyspace(pool_keyspace(broker.keys, pool)) for pool in every_pool(named)}


def pool_workers_check(state: PoolState, redis_ms: int) -> Check:
    """A pool other than the default: FAIL when jobs are armed in it and no worker serves it."""
    live = _live(state.workers, redis_ms)
    if live:
        names = ", ".join(f"{wid} ({info.in_flight}/{info.concurrency or '?'} busy)"
                          for wid, info in sorted(live.items()))
        return Check("OK", "Workers", f"{state.pool} pool: {len(live)} live: {names}", pool=state.pool)
    if not state.armed:
        return Check("OK", "Workers", f"{state.pool} pool: no live workers and no jobs armed", pool=state.pool)
    deploy = ("deploy the launcher (chart launcher.enabled) with the same REDIS_URL and SUNDIAL_REDIS_PREFIX"
              if state.pool == LAUNCHER_POOL else f"deploy the pool's workers (chart workerPools.{state.pool})")
    return Check("FAIL", "Workers", f"{state.pool} pool: no live workers; {len(state.armed)} jobs armed here"
                 " wait for nobody", deploy, pool=state.pool)


def queue_check(shards: Sequence[QueueStats], pool: str = DEFAULT_POOL) -> Check:
    """Queue lag of one pool: runs no worker has taken yet, and how long the oldest has waited."""
    waiting = sum(stats.lag for stats in shards)
    oldest_ms = max((stats.oldest_waiting_ms or 0 for stats in shards), default=0)
    where = "" if pool == DEFAULT_POOL else f"{pool} pool: "
    detail = f"{where}{waiting} runs waiting for a worker, the oldest for {oldest_ms / 1000:.1f}s"
    if oldest_ms > QUEUE_LAG_WARN_MS:
        more = ("add launcher replicas or raise its SUNDIAL_CONCURRENCY" if pool == LAUNCHER_POOL
                else "add worker replicas or raise SUNDIAL_CONCURRENCY")
        return Check("WARN", "Queue", detail, f"the {pool} pool's workers cannot keep up: {more};"
                     " late scheduled runs are recorded missed (docs/performance.md)", pool=pool)
    return Check("OK", "Queue", detail, pool=pool)


def dead_letters_check(newest: Sequence[DeadLetter], total: int, redis_ms: int) -> Check:
    """Runs no worker could run: each is a slot that will not run unless someone acts."""
    if not total:
        return Check("OK", "Dead letters", "none")
    age = (redis_ms - newest[0].died_ms) / 1000 if newest else 0.0
    return Check("WARN", "Dead letters", f"{total} queue messages no worker could run, the newest {age:.0f}s ago"
                 f" ({error_summary(newest[0].reason, 80) if newest else 'reason unknown'})",
                 "kubectl sundial deadletters shows each with why; they never run again by themselves")


async def _missed_slots(armed: set[str], store: Store | None) -> Check:
    """The jobs armed in this deployment (every pool) whose slots were recorded missed lately."""
    if store is None:
        return Check("SKIP", "Missed slots", "needs PostgreSQL")
    try:
        return missed_slots_check(await store.recently_missed(sorted(armed), MISSED_WINDOW_SECONDS))
    except (psycopg.Error, TimeoutError):
        return Check("SKIP", "Missed slots", "needs PostgreSQL and the schema")


def missed_slots_check(jobs: Sequence[MissedSlots]) -> Check:
    """WARN when slots were recorded missed within the window: each is a run that never happened."""
    window = f"{MISSED_WINDOW_SECONDS // 60}m"
    if not jobs:
        return Check("OK", "Missed slots", f"none in the last {window}")
    named = ", ".join(f"{job.namespace}/{job.name} ({job.missed_count} in all)" for job in jobs[:MISSED_JOBS_LISTED])
    more = f" and {len(jobs) - MISSED_JOBS_LISTED} more" if len(jobs) > MISSED_JOBS_LISTED else ""
    jobs_text = "1 job" if len(jobs) == 1 else f"{len(jobs)} jobs"
    return Check("WARN", "Missed slots", f"{jobs_text} had slots recorded missed in the last {window},"
                 f" the latest {jobs[0].seconds_ago:.0f}s ago: {named}{more}",
                 "workers down or too few to keep up (see Workers and Queue), or a job's missedRunPolicy"
                 " dropped them; kubectl sundial describe JOB shows its counts")


def _live(workers: LiveWorkers, redis_ms: int) -> dict[str, WorkerHeartbeat]:
    return {
        wid: info for wid, info in workers.items() if redis_ms - info.seen_ms <= LIVE_WORKER_MAX_AGE_MS
    }


def workers_check(workers: LiveWorkers, redis_ms: int, prefix: str) -> Check:
    live = _live(workers, redis_ms)
    gone = len(workers) - len(live)
    tail = f" ({gone} more not seen for over {LIVE_WORKER_MAX_AGE_MS // 1000}s)" if gone else ""
    if not live:
        return Check("FAIL", "Workers", f"no live workers under prefix {prefix!r}{tail}",
                     "nothing will run: start sundial-worker with the same REDIS_URL and SUNDIAL_REDIS_PREFIX")
    names = ", ".join(
        f"{wid} ({info.in_flight}/{info.concurrency or '?'} busy)" for wid, info in sorted(live.items())
    )
    return Check("OK", "Workers", f"{len(live)} live: {names}{tail}")


async def targets_check(
    workers: LiveWorkers, redis_ms: int, armed: set[str], store: Store | None
) -> Check:
    live = _live(workers, redis_ms)
    offered = offered_targets(live.values())
    if not live:
        return Check("SKIP", "Targets", "no live workers")
    detail = ", ".join(f"{t}" if n == len(live) else f"{t} ({n}/{len(live)})" for t, n in sorted(offered.items()))
    missing = await _unserved_jobs(set(offered), armed, store)
    if missing:
        jobs = "; ".join(f"{target}: {', '.join(names[:3])}{' ...' if len(names) > 3 else ''}"
                         for target, names in sorted(missing.items()))
        return Check("FAIL", "Targets", f"jobs use targets no live worker offers ({jobs})",
                     "deploy workers that register these targets, or fix spec.target")
    return Check("OK", "Targets", f"offered: {detail or 'none'}")


async def _unserved_jobs(offered: set[str], armed: set[str], store: Store | None) -> dict[str, list[str]]:
    """Jobs armed in this deployment's Redis whose target no live worker offers (names and
    specs from PostgreSQL): each of their slots will wait in the queue for nobody."""
    if store is None:
        return {}
    try:
        rows = await store.jobs_changed_since(None)
    except (psycopg.Error, TimeoutError):
        return {}
    missing: dict[str, list[str]] = {}
    for row in rows:
        target = str((row.get("spec") or {}).get("target", ""))
        if row["id"] in armed and target and target not in offered:
            missing.setdefault(target, []).append(f"{row['namespace']}/{row['name']}")
    return missing


def clocks_check(workers: LiveWorkers, redis_ms: int, local_ms: int) -> Check:
    """Skew between this machine, Redis and each live worker.

    A heartbeat carries the worker's clock at the moment it beat, up to one beat ago: a stamp
    ahead of Redis's clock is skew for certain; one far behind is skew or a stalled worker.
    """
    problems: list[tuple[Verdict, str]] = []
    local_offset = local_ms - redis_ms
    if abs(local_offset) > LOCAL_SKEW_WARN_MS:
        side = "ahead of" if local_offset > 0 else "behind"
        problems.append(("WARN", f"this machine is {abs(local_offset) / 1000:.1f}s {side} Redis"))
    ages = []
    for wid, info in sorted(_live(workers, redis_ms).items()):
        offset = info.seen_ms - redis_ms
        ages.append(max(0, -offset))
        if offset > SKEW_WARN_MS:
            verdict: Verdict = "FAIL" if offset > SKEW_FAIL_MS else "WARN"
            problems.append((verdict, f"worker {wid} is at least {offset / 1000:.1f}s ahead of Redis"))
        elif -offset > HEARTBEAT_LATE_MS:
            problems.append(("WARN", f"worker {wid}'s heartbeat is {-offset / 1000:.1f}s old "
                                     "(its clock is behind or it is stalling)"))
    if problems:
        worst: Verdict = "FAIL" if any(v == "FAIL" for v, _ in problems) else "WARN"
        return Check(worst, "Clocks", "; ".join(text for _, text in problems),
                     "sync the clocks (NTP/chrony); workers fire slots by their own clock")
    span = f"; worker heartbeats {min(ages) / 1000:.1f}s to {max(ages) / 1000:.1f}s old" if ages else ""
    return Check("OK", "Clocks", f"this machine is {abs(local_offset)}ms from Redis's clock{span}")

