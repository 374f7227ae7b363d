"""Attacks on a shared deployment, against real PostgreSQL and Redis and a real worker.

A message written straight into Redis for a target its namespace may not use is refused and
recorded failed with the reason, never run; a job in pool A is never consumed by pool B's worker;
a secretKeyRef value appears in no row, no Redis key, no log line, no metric and no run output;
a reference to another namespace's Secret is refused. The policies come from PostgreSQL, where
only the operator writes them.
"""

from __future__ import annotations

import json
import logging
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import generate_latest

from sundial.core.broker import Broker
from sundial.core.clock import ManualClock, to_ms
from sundial.core.jobs import arm_job, run_now
from sundial.core.keys import Keyspace
from sundial.core.policy import BUILTIN_TARGETS, EffectivePolicy
from sundial.core.pools import pool_keyspace
from sundial.core.runs import JobRef, RunMessage, RunTemplate, Trigger
from sundial.core.store import Store
from sundial.worker.secrets import install_redaction
from sundial.worker.targets.registry import REGISTRY, JsonObject, RunContext
from tests.integration.engine import runs_of, settings, spec, worker

pytestmark = pytest.mark.services

T0 = datetime(2026, 3, 1, 12, 0, 0, 500_000, tzinfo=UTC)
SECRET = "Bearer s3cr3t-" + uuid.uuid4().hex
log = logging.getLogger("tests.tenancy")
calls: list[str] = []


async def spy(ctx: RunContext, params: JsonObject) -> JsonObject:
    """Records that it ran; echoes its params and logs them, as a careless target would."""
    calls.append(ctx.run_id)
    log.warning("spy got params %s", params)
    return {"echo": params}


if "tests:spy" not in REGISTRY:
    REGISTRY.register("tests:spy", spy)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


def namespace() -> str:
    return f"team-{uuid.uuid4().hex[:8]}"


def forged(job: JobRef, target: str, now: datetime, params: dict[str, Any] | None = None) -> RunMessage:
    template = RunTemplate.from_spec(job, spec(target=target, params=params or {}))
    return RunMessage(run_id=f"{job.job_id}:manual:forged", template=template, trigger=Trigger.MANUAL, attempt=1,
                      logical_ms=to_ms(now), scheduled_ms=None, enqueued_ms=to_ms(now))


async def inject(broker: Broker, message: RunMessage) -> None:
    """Straight into the queue stream, as someone with Redis access (not the operator) would."""
    await broker.redis.xadd(broker.keys.for_job(message.job_id).queue, message.to_fields())  # type: ignore[arg-type]


async def test_a_forbidden_target_written_straight_into_redis_is_refused_and_recorded_never_run(
    broker: Broker, store: Store, clock: ManualClock, database_url: str, redis_url: str, keyspace: Keyspace
) -> None:
    ns = namespace()
    await store.replace_namespace_policies({ns: EffectivePolicy(("team",), ("noop",), ("default",))})
    config = settings(database_url, redis_url, keyspace, policy_default_targets=list(BUILTIN_TARGETS))
    job = JobRef(str(uuid.uuid4()), ns, "forged")
    no_policy = JobRef(str(uuid.uuid4()), namespace(), "forged-elsewhere")
    await inject(broker, forged(job, "tests:spy", clock.now()))
    await inject(broker, forged(no_policy, "tests:spy", clock.now()))
    calls.clear()

    assert await worker(broker, store, clock, config).drain() == 2

    assert calls == [], "a refused target ran"
    [run] = await runs_of(store, job)
    assert (run["status"], run["output"], run["attempt"], run["next_retry_at"]) == ("failed", None, 1, None)
    assert run["error_message"] == (
        f"refused by the worker before running: target 'tests:spy' is not allowed in namespace {ns} "
        "by TargetPolicy team (field spec.targets grants: noop)")
    [elsewhere] = await runs_of(store, no_policy)
    assert "(default: no TargetPolicy selects this namespace)" in elsewhere["error_message"]
    assert elsewhere["output"] is None


async def test_what_the_namespace_policy_allows_runs(
    broker: Broker, store: Store, clock: ManualClock, database_url: str, redis_url: str, keyspace: Keyspace
) -> None:
    ns = namespace()
    await store.replace_namespace_policies({ns: EffectivePolicy(("team",), ("tests:*",), ("default",))})
    config = settings(database_url, redis_url, keyspace, policy_default_targets=list(BUILTIN_TARGETS))
    job = JobRef(str(uuid.uuid4()), ns, "allowed")
    await inject(broker, forged(job, "tests:spy", clock.now()))
    calls.clear()
    assert await worker(broker, store, clock, config).drain() == 1
    assert len(calls) == 1
    [run] = await runs_of(store, job)
    assert run["status"] == "success"


async def test_a_job_in_pool_a_is_never_consumed_by_pool_b(
    broker: Broker, store: Store, clock: ManualClock, database_url: str, redis_url: str, keyspace: Keyspace
) -> None:
    pools = ["default", "pool-a", "pool-b"]
    job = JobRef(str(uuid.uuid4()), namespace(), "pooled")
    job_spec = spec(target="noop", schedule="* * * * * *", workerPool="pool-a")
    await arm_job(broker, store, job, job_spec, 1, clock.now())
    await run_now(broker, job, job_spec, "by hand", clock.now())
    broker_a = broker.for_keyspace(pool_keyspace(keyspace, "pool-a"))
    broker_b = broker.for_keyspace(pool_keyspace(keyspace, "pool-b"))
    for pool_broker in (broker_a, broker_b):
        await pool_broker.ensure_groups()
    worker_a = worker(broker_a, store, clock, settings(database_url, redis_url, keyspace, worker_pool="pool-a",
                                                       policy_default_pools=pools))
    worker_b = worker(broker_b, store, clock, settings(database_url, redis_url, keyspace, worker_pool="pool-b",
                                                       policy_default_pools=pools))
    default = worker(broker, store, clock, settings(database_url, redis_url, keyspace, policy_default_pools=pools))

    clock.advance(timedelta(seconds=1))
    assert await worker_b.drain() == 0
    assert await default.drain() == 0
    assert await runs_of(store, job) == []
    assert await broker.entry(job.job_id) is None, "armed in the default pool too"

    assert await worker_a.drain() == 2  # the slot and the manual run
    assert sorted(r["trigger_type"] for r in await runs_of(store, job)) == ["manual", "scheduled"]

    # Moving the job to pool B takes it out of pool A.
    moved = spec(target="noop", schedule="* * * * * *", workerPool="pool-b")
    await arm_job(broker, store, job, moved, 2, clock.now())
    assert await broker_a.entry(job.job_id) is None
    assert await broker_b.entry(job.job_id) is not None


async def test_a_message_forged_into_a_pool_its_namespace_may_not_use_is_refused(
    broker: Broker, store: Store, clock: ManualClock, database_url: str, redis_url: str, keyspace: Keyspace
) -> None:
    ns = namespace()
    await store.replace_namespace_policies({ns: EffectivePolicy(("team",), ("noop",), ("default",))})
    broker_b = broker.for_keyspace(pool_keyspace(keyspace, "pool-b"))
    await broker_b.ensure_groups()
    job = JobRef(str(uuid.uuid4()), ns, "wrong-pool")
    await inject(broker_b, forged(job, "noop", clock.now()))
    config = settings(database_url, redis_url, keyspace, worker_pool="pool-b")
    assert await worker(broker_b, store, clock, config).drain() == 1
    [run] = await runs_of(store, job)
    assert run["status"] == "failed"
    assert f"worker pool 'pool-b' is not allowed in namespace {ns} by TargetPolicy team" in run["error_message"]


async def test_a_secret_value_appears_nowhere_but_in_the_target(
    broker: Broker, store: Store, clock: ManualClock, database_url: str, redis_url: str, keyspace: Keyspace,
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    ns = namespace()
    (tmp_path / "api-token").mkdir()
    (tmp_path / "api-token" / "header").write_text(SECRET)
    config = settings(database_url, redis_url, keyspace, secrets_dir=str(tmp_path), secrets_namespace=ns)
    job = JobRef(str(uuid.uuid4()), ns, "with-secret")
    params = {"headers": {"Authorization": {"secretKeyRef": {"name": "api-token", "key": "header"}}}}
    job_spec = spec(target="tests:spy", schedule="* * * * * *", params=params)
    await arm_job(broker, store, job, job_spec, 1, clock.now())
    calls.clear()
    caplog.set_level(logging.INFO)
    install_redaction()

    clock.advance(timedelta(seconds=1))
    assert await worker(broker, store, clock, config).drain() == 1

    assert len(calls) == 1, "the target ran"
    [run] = await runs_of(store, job)
    assert run["status"] == "success"
    assert run["output"] == {"echo": {"headers": {"Authorization": "[redacted]"}}}
    assert "spy got params" in caplog.text
    assert SECRET not in caplog.text, "a log line"
    assert SECRET not in generate_latest().decode(), "a metric"
    assert SECRET not in await everything_in_postgres(store, job), "a PostgreSQL row"
    assert SECRET not in await everything_in_redis(broker, keyspace), "a Redis key"


async def test_a_reference_to_another_namespaces_secret_is_refused_and_nothing_stored(
    broker: Broker, store: Store, clock: ManualClock, database_url: str, redis_url: str, keyspace: Keyspace,
    tmp_path: Path,
) -> None:
    ns = namespace()
    (tmp_path / "api-token").mkdir()
    (tmp_path / "api-token" / "header").write_text(SECRET)
    config = settings(database_url, redis_url, keyspace, secrets_dir=str(tmp_path), secrets_namespace=ns)
    thief = JobRef(str(uuid.uuid4()), namespace(), "thief")
    for name, ref in (("foreign", {"name": "api-token", "key": "header", "namespace": ns}),
                      ("unmounted", {"name": "api-token", "key": "header"})):
        params = {"token": {"secretKeyRef": ref}}
        await inject(broker, forged(JobRef(str(uuid.uuid4()), thief.namespace, name), "tests:spy", clock.now(),
                                    params))
    calls.clear()
    assert await worker(broker, store, clock, config).drain() == 2
    assert calls == []
    errors = sorted(r["error"] for r in await failed_runs(store, thief.namespace))
    assert len(errors) == 2
    assert any(f"refers to a Secret in namespace {ns}; a job may only use Secrets of its own namespace" in e
               for e in errors)
    assert any(f"this worker pool mounts no Secrets of namespace {thief.namespace}" in e for e in errors)
    assert SECRET not in json.dumps(errors)


async def failed_runs(store: Store, namespace: str) -> list[dict[str, Any]]:
    async with store.pool.connection() as conn, conn.cursor() as cursor:
        await cursor.execute("SELECT error_message, output FROM job_runs WHERE status = 'failed'"
                             " AND error_message LIKE %s", (f"%{namespace}%",))
        return [{"error": e, "output": o} for e, o in await cursor.fetchall()]


async def everything_in_postgres(store: Store, job: JobRef) -> str:
    async with store.pool.connection() as conn, conn.cursor() as cursor:
        await cursor.execute("SELECT row_to_json(j)::text FROM scheduled_jobs j WHERE id = %s", (job.job_id,))
        texts = [row[0] for row in await cursor.fetchall()]
        await cursor.execute("SELECT row_to_json(r)::text FROM job_runs r WHERE job_id = %s", (job.job_id,))
        texts += [row[0] for row in await cursor.fetchall()]
    assert texts
    return "\n".join(texts)


async def everything_in_redis(broker: Broker, keyspace: Keyspace) -> str:
    texts: list[str] = []
    async for key in broker.redis.scan_iter(match=f"*{keyspace.prefix}*"):
        kind = await broker.redis.type(key)
        kind = kind.decode() if isinstance(kind, bytes) else kind
        if kind == "hash":
            texts.append(repr(await broker.redis.hgetall(key)))
        elif kind == "stream":
            texts.append(repr(await broker.redis.xrange(key)))
        elif kind == "zset":
            texts.append(repr(await broker.redis.zrange(key, 0, -1)))
        elif kind == "string":
            texts.append(repr(await broker.redis.get(key)))
    assert texts
    return "\n".join(texts)
