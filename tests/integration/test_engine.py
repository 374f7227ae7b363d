"""The engine on real Redis and PostgreSQL, driven by a manual clock and burst-mode workers."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import REGISTRY as METRICS

from sundial.core.broker import PRUNE_CLAIMS_KEPT_MS, Broker
from sundial.core.clock import ManualClock, to_ms
from sundial.core.config import Settings
from sundial.core.jobs import arm_job, run_now
from sundial.core.keys import run_id_for_slot
from sundial.core.runs import MISSED_RUN_ERROR_PREFIX, RunStatus, Trigger
from sundial.core.store import RunRecord, Store
from sundial.worker import app
from sundial.worker import ticker as ticker_module
from sundial.worker.targets.registry import REGISTRY, RunContext, running_threads
from sundial.worker.ticker import Ticker
from tests.integration.engine import armed, runs_of, spec, worker

pytestmark = pytest.mark.services



async def test_fires_each_slot_once_and_records_it(broker: Broker, store: Store, clock: ManualClock,
                                                   config: Settings) -> None:
    job, _ = await armed(broker, store, clock.now(), schedule="* * * * * *")
    w = worker(broker, store, clock, config)
    for _ in range(3):
        clock.advance(timedelta(seconds=1))
        assert await w.drain() == 1
    runs = await runs_of(store, job)
    slots = sorted(r["scheduled_for"] for r in runs)
    assert slots == [datetime(2026, 3, 1, 12, 0, s, tzinfo=UTC) for s in (1, 2, 3)]
    assert {r["status"] for r in runs} == {"success"}
    assert {r["trigger_type"] for r in runs} == {"scheduled"}
    row = await store.job(job.job_id)
    assert row is not None
    assert (row["run_count"], row["success_count"], row["fail_count"]) == (3, 3, 0)
    assert row["last_status"] == "success"
    assert row["last_schedule_time"] == datetime(2026, 3, 1, 12, 0, 3, tzinfo=UTC)
    assert row["next_run_at"] == datetime(2026, 3, 1, 12, 0, 4, tzinfo=UTC)


async def test_a_crowded_second_is_applied_in_short_scripts(broker: Broker, store: Store, clock: ManualClock,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Entries claimed in one batch are applied a few at a time (ticker.APPLY_CHUNK), so no one
    script holds Redis for the whole batch; each still fires once."""
    monkeypatch.setattr(ticker_module, "APPLY_CHUNK", 3)
    sizes: list[int] = []
    apply_plans = broker.apply_plans

    async def recorded(shard: Any, plans: Any, *args: Any) -> Any:
        sizes.append(len(plans))
        return await apply_plans(shard, plans, *args)

    monkeypatch.setattr(broker, "apply_plans", recorded)
    jobs = [await armed(broker, store, clock.now(), f"crowd-{i}", schedule="* * * * *") for i in range(8)]
    clock.advance(timedelta(minutes=1))
    assert (await Ticker(broker, store, clock, batch=500).tick()).fired == 8
    assert sorted(sizes, reverse=True) == [3, 3, 2]
    queued = [await broker.redis.xlen(shard.queue) for shard in broker.keys.all_shards()]
    assert sum(queued) == len(jobs), "each crowded entry's slot queued once"


async def test_every_finished_run_is_counted_once(broker: Broker, store: Store, clock: ManualClock,
                                                  config: Settings) -> None:
    """The runs counter is added to per lane batch, not per run: none may be lost or counted twice."""
    job, _ = await armed(broker, store, clock.now(), schedule="* * * * * *")
    labels = {"namespace": job.namespace, "scheduledjob": job.name, "status": "success"}
    w = worker(broker, store, clock, config)
    for _ in range(3):
        clock.advance(timedelta(seconds=1))
        assert await w.drain() == 1
    assert METRICS.get_sample_value("sundial_runs_total", labels) == 3


async def test_nothing_fires_before_its_time(broker: Broker, store: Store, clock: ManualClock,
                                             config: Settings) -> None:
    job, _ = await armed(broker, store, clock.now(), schedule="0 13 * * *")
    assert await worker(broker, store, clock, config).drain() == 0
    assert await runs_of(store, job) == []


async def test_retries_follow_exponential_backoff(broker: Broker, store: Store, clock: ManualClock,
                                                  config: Settings) -> None:
    job, job_spec = await armed(
        broker, store, clock.now(), schedule="0 0 1 1 *", target="fail", params={"message": "boom"},
        retry={"attempts": 3, "backoff": {"type": "Exponential", "delaySeconds": 2}},
    )
    w = worker(broker, store, clock, config)
    await run_now(broker, job, job_spec, "test", clock.now())
    assert await w.drain() == 1
    clock.advance(timedelta(seconds=1.9))
    assert await w.drain() == 0, "the retry must wait for its 2 s backoff"
    clock.advance(timedelta(seconds=0.2))
    assert await w.drain() == 1
    clock.advance(timedelta(seconds=3.9))
    assert await w.drain() == 0, "the second retry waits 4 s"
    clock.advance(timedelta(seconds=0.2))
    assert await w.drain() == 1
    clock.advance(timedelta(hours=1))
    assert await w.drain() == 0, "three attempts in all"

    runs = sorted(await runs_of(store, job), key=lambda r: r["attempt"])
    assert [(r["attempt"], r["status"], r["trigger_type"]) for r in runs] == [
        (1, "failed", "manual"), (2, "failed", "retry"), (3, "failed", "retry")]
    gaps = [r["next_retry_at"] - r["completed_at"] for r in runs[:2]]
    assert gaps == [timedelta(seconds=2), timedelta(seconds=4)]
    assert runs[2]["next_retry_at"] is None
    assert "boom" in runs[2]["error_message"]
    row = await store.job(job.job_id)
    assert row is not None
    assert (row["run_count"], row["fail_count"], row["last_status"]) == (3, 3, "failed")


async def test_timeout_is_enforced_and_recorded(broker: Broker, store: Store, clock: ManualClock,
                                                config: Settings) -> None:
    job, job_spec = await armed(
        broker, store, clock.now(), schedule="0 13 * * *", target="sleep", params={"seconds": 60},
        timeoutSeconds=1, retry={"attempts": 1},
    )
    await run_now(broker, job, job_spec, "test", clock.now())
    assert await worker(broker, store, clock, config).drain() == 1
    [run] = await runs_of(store, job)
    assert run["status"] == "timed_out"
    assert run["error_message"] == "timed out after 1s"


async def test_forbid_skips_a_slot_while_a_run_is_in_flight(broker: Broker, store: Store, clock: ManualClock,
                                                           config: Settings) -> None:
    job, _ = await armed(broker, store, clock.now(), schedule="* * * * * *", concurrencyPolicy="Forbid")
    w = worker(broker, store, clock, config)
    clock.advance(timedelta(seconds=1))
    await w.ticker.tick()  # slot :01 queued, not yet run: it is in flight
    clock.advance(timedelta(seconds=1))
    await w.ticker.tick()  # slot :02 comes due while :01 is still in flight
    assert await w.drain(tick=False) == 1
    runs = {r["scheduled_for"].second: r for r in await runs_of(store, job)}
    assert runs[1]["status"] == "success"
    assert runs[2]["status"] == "skipped"
    assert "concurrencyPolicy Forbid" in runs[2]["error_message"]
    clock.advance(timedelta(seconds=1))
    assert await w.drain() == 1, "once :01 finished, :03 runs normally"


async def test_a_heartbeat_landing_after_a_run_ended_does_not_hold_off_the_next_slot(
        broker: Broker, store: Store, clock: ManualClock, config: Settings) -> None:
    job, _ = await armed(broker, store, clock.now(), schedule="* * * * * *", concurrencyPolicy="Forbid")
    w = worker(broker, store, clock, config)
    clock.advance(timedelta(seconds=1))
    assert await w.drain() == 1
    # A heartbeat read the run as in flight just before its end was acknowledged, and its
    # extension reached Redis after the ack had released the claim.
    ended = run_id_for_slot(job.job_id, to_ms(clock.now()))
    await broker.extend_active([(job.job_id, ended)], to_ms(clock.now()) + 90_000)
    clock.advance(timedelta(seconds=1))
    assert await w.drain() == 1
    assert [r["status"] for r in await runs_of(store, job)] == ["success", "success"], \
        "the next slot ran: nothing holds the ended run's claim"


async def test_allow_runs_overlapping_slots(broker: Broker, store: Store, clock: ManualClock,
                                            config: Settings) -> None:
    job, _ = await armed(broker, store, clock.now(), schedule="* * * * * *")
    w = worker(broker, store, clock, config)
    for _ in range(2):
        clock.advance(timedelta(seconds=1))
        await w.ticker.tick()
    assert await w.drain(tick=False) == 2
    assert {r["status"] for r in await runs_of(store, job)} == {"success"}


async def test_bad_targets_and_params_fail_cleanly(broker: Broker, store: Store, clock: ManualClock,
                                                  config: Settings) -> None:
    unknown, unknown_spec = await armed(broker, store, clock.now(), "unknown", schedule="0 13 * * *",
                                        target="no-such-target")
    bad, bad_spec = await armed(broker, store, clock.now(), "bad", schedule="0 13 * * *", target="sleep",
                                params={"seconds": "forever"})
    for job, job_spec in ((unknown, unknown_spec), (bad, bad_spec)):
        await run_now(broker, job, job_spec, "test", clock.now())
    # A message nobody can parse must be dropped, not crash the worker.
    await broker.redis.xadd(broker.keys.all_shards()[0].queue, {"garbage": "1"})
    w = worker(broker, store, clock, config)
    assert await w.drain() == 2
    [unknown_run] = await runs_of(store, unknown)
    assert unknown_run["status"] == "failed"
    assert "unknown target 'no-such-target'" in unknown_run["error_message"]
    [bad_run] = await runs_of(store, bad)
    assert bad_run["status"] == "failed"
    assert "seconds" in bad_run["error_message"]
    assert bad_run["next_retry_at"] is None, "bad params cannot succeed on retry"


async def test_run_now_is_idempotent_per_request(broker: Broker, store: Store, clock: ManualClock,
                                                 config: Settings) -> None:
    job, job_spec = await armed(broker, store, clock.now(), schedule="0 13 * * *")
    first = await run_now(broker, job, job_spec, "2026-03-01T12:00:00Z", clock.now())
    again = await run_now(broker, job, job_spec, "2026-03-01T12:00:00Z", clock.now())
    assert first[1] is True
    assert again == (first[0], False)
    assert await worker(broker, store, clock, config).drain() == 1
    [run] = await runs_of(store, job)
    assert (run["trigger_type"], run["reason"]) == ("manual", "2026-03-01T12:00:00Z")


async def test_missed_slots_after_an_outage_follow_the_policy(broker: Broker, store: Store, clock: ManualClock,
                                                              config: Settings) -> None:
    job, _ = await armed(broker, store, clock.now(), schedule="* * * * *")  # RunOnce by default
    clock.advance(timedelta(hours=1, seconds=30))  # every worker was down for an hour
    assert await worker(broker, store, clock, config).drain() == 1
    [run] = await runs_of(store, job)
    assert run["trigger_type"] == "catchup"
    assert run["scheduled_for"] == datetime(2026, 3, 1, 13, 0, tzinfo=UTC)
    row = await store.job(job.job_id)
    assert row is not None
    assert row["missed_count"] == 59
    assert row["next_run_at"] == datetime(2026, 3, 1, 13, 1, tzinfo=UTC)


async def test_run_all_catches_up_to_the_cap(broker: Broker, store: Store, clock: ManualClock,
                                             config: Settings) -> None:
    job, _ = await armed(broker, store, clock.now(), schedule="* * * * *", missedRunPolicy="RunAll",
                         maxCatchUpRuns=5)
    clock.advance(timedelta(minutes=30))
    assert await worker(broker, store, clock, config).drain() == 5
    slots = sorted(r["scheduled_for"].minute for r in await runs_of(store, job))
    assert slots == [26, 27, 28, 29, 30]


async def test_starting_deadline_turns_late_slots_into_missed(broker: Broker, store: Store,
                                                             clock: ManualClock,
                                                             config: Settings) -> None:
    job, _ = await armed(broker, store, clock.now(), schedule="0 * * * *", startingDeadlineSeconds=60)
    clock.advance(timedelta(minutes=62))  # the 13:00 slot is 2 minutes late
    assert await worker(broker, store, clock, config).drain() == 0
    row = await store.job(job.job_id)
    assert row is not None
    assert row["missed_count"] == 1


async def test_a_run_a_worker_reaches_after_its_deadline_counts_as_a_missed_slot(
    broker: Broker, store: Store, clock: ManualClock, config: Settings
) -> None:
    """The ticker queued the slot on time; no worker took it until its deadline had passed. It
    never ran, so the job's missed count (status.missedCount) says so, as the metric does."""
    job, _ = await armed(broker, store, clock.now(), schedule="0 * * * *", startingDeadlineSeconds=60)
    clock.advance(timedelta(hours=1, seconds=0.2))
    assert (await Ticker(broker, store, clock).tick()).fired == 1
    clock.advance(timedelta(minutes=2))  # every worker was busy or down
    assert await worker(broker, store, clock, config).drain() == 1, "taken and recorded, not run"
    [run] = await runs_of(store, job)
    assert (run["status"], run["error_message"][:len(MISSED_RUN_ERROR_PREFIX)]) == ("skipped", MISSED_RUN_ERROR_PREFIX)
    row = await store.job(job.job_id)
    assert row is not None
    assert (row["missed_count"], row["run_count"]) == (1, 0)


async def test_spec_change_rearms_and_never_fires_the_old_spec(broker: Broker, store: Store,
                                                              clock: ManualClock,
                                                              config: Settings) -> None:
    job, _ = await armed(broker, store, clock.now(), schedule="0 13 * * *", target="noop")
    await arm_job(broker, store, job, spec(schedule="* * * * * *", target="sleep", params={"seconds": 0}), 2,
                  clock.now())
    clock.advance(timedelta(seconds=1))
    assert await worker(broker, store, clock, config).drain() == 1
    [run] = await runs_of(store, job)
    assert run["output"] == {"slept": 0}


async def test_edit_that_keeps_the_schedule_keeps_the_due_slot(broker: Broker, store: Store,
                                                              clock: ManualClock) -> None:
    job, _ = await armed(broker, store, clock.now(), schedule="0 13 * * *", description="before")
    clock.advance(timedelta(minutes=59, seconds=59))
    armed_again = await arm_job(broker, store, job, spec(schedule="0 13 * * *", description="after"), 2,
                                clock.now())
    assert armed_again.next_run_at == datetime(2026, 3, 1, 13, 0, tzinfo=UTC)


async def test_suspend_disarms_and_resume_does_not_replay(broker: Broker, store: Store, clock: ManualClock,
                                                         config: Settings) -> None:
    job, _ = await armed(broker, store, clock.now(), schedule="* * * * * *")
    await arm_job(broker, store, job, spec(schedule="* * * * * *", suspend=True), 2, clock.now())
    assert await broker.entry(job.job_id) is None
    clock.advance(timedelta(minutes=10))
    w = worker(broker, store, clock, config)
    assert await w.drain() == 0
    await arm_job(broker, store, job, spec(schedule="* * * * * *"), 3, clock.now())
    clock.advance(timedelta(seconds=1))
    assert await w.drain() == 1


async def test_history_is_pruned_to_the_limits(broker: Broker, store: Store, clock: ManualClock,
                                               config: Settings) -> None:
    job, _ = await armed(broker, store, clock.now(), schedule="* * * * * *", successfulRunsHistoryLimit=2)
    w = worker(broker, store, clock, config)
    for _ in range(5):
        clock.advance(timedelta(seconds=1))
        await w.drain()
    await w._prune_histories(None)
    runs = await runs_of(store, job)
    assert [r["scheduled_for"].second for r in runs] == [5, 4]
    row = await store.job(job.job_id)
    assert row is not None
    assert row["run_count"] == 5, "counters are totals, not what retention left"


async def test_histories_are_pruned_a_batch_of_jobs_at_a_time(broker: Broker, store: Store, clock: ManualClock,
                                                               config: Settings, monkeypatch: pytest.MonkeyPatch,
                                                               ) -> None:
    monkeypatch.setattr(app, "PRUNE_CHUNK_JOBS", 2)
    monkeypatch.setattr(app, "PRUNE_PERIOD_SECONDS", 0.3)
    jobs = [(await armed(broker, store, clock.now(), schedule="* * * * * *", successfulRunsHistoryLimit=1))[0]
            for _ in range(5)]
    w = worker(broker, store, clock, config)
    for _ in range(3):
        clock.advance(timedelta(seconds=1))
        await w.drain()
    await w._prune_histories(asyncio.Event())  # three batches, paced
    assert [[r["scheduled_for"].second for r in await runs_of(store, job)] for job in jobs] == [[3]] * 5


async def test_a_job_is_pruned_by_one_worker_a_pass(broker: Broker, store: Store, clock: ManualClock,
                                                     config: Settings) -> None:
    """Every worker records runs of a frequent job; each used to prune it every pass. Now the
    first to claim it does, and the others carry it to their next pass."""
    job, _ = await armed(broker, store, clock.now(), schedule="* * * * * *", successfulRunsHistoryLimit=2)
    first, second = worker(broker, store, clock, config), worker(broker, store, clock, config)
    for drained_by in (first, first, first, second, second):
        clock.advance(timedelta(seconds=1))
        await drained_by.drain()
    await first._prune_histories(None)
    assert [r["scheduled_for"].second for r in await runs_of(store, job)] == [5, 4]
    for _ in range(2):
        clock.advance(timedelta(seconds=1))
        await second.drain()
    await second._prune_histories(None)
    assert [r["scheduled_for"].second for r in await runs_of(store, job)] == [7, 6, 5, 4], "first's claim holds"
    clock.advance(timedelta(seconds=app.PRUNE_CLAIM_SECONDS))
    await second._prune_histories(None)  # no run of the job finished since: it was carried over
    assert [r["scheduled_for"].second for r in await runs_of(store, job)] == [7, 6]


async def test_without_a_pruning_claim_a_worker_prunes_anyway(broker: Broker, store: Store, clock: ManualClock,
                                                               config: Settings, monkeypatch: pytest.MonkeyPatch,
                                                               ) -> None:
    job, _ = await armed(broker, store, clock.now(), schedule="* * * * * *", successfulRunsHistoryLimit=1)
    w = worker(broker, store, clock, config)
    for _ in range(3):
        clock.advance(timedelta(seconds=1))
        await w.drain()

    async def unreachable(*_: object) -> list[str]:
        raise ConnectionError("Redis is down")

    monkeypatch.setattr(broker, "claim_prunes", unreachable)
    await w._prune_histories(None)
    assert [r["scheduled_for"].second for r in await runs_of(store, job)] == [3]


async def test_pruning_claims_expire_and_are_forgotten(broker: Broker) -> None:
    now, period = 1_000_000, 24_000
    assert await broker.claim_prunes(["a", "b"], now, period) == ["a", "b"]
    assert await broker.claim_prunes(["a", "b", "c"], now + 1, period) == ["c"]
    assert await broker.claim_prunes(["a", "b"], now + period, period) == ["a", "b"]
    later = now + period + PRUNE_CLAIMS_KEPT_MS + 1
    assert await broker.claim_prunes(["d"], later, period) == ["d"]
    assert await broker.redis.zrange(broker.keys.pruned, 0, -1) == ["d"]


async def test_self_heals_index_and_entries(broker: Broker, store: Store, clock: ManualClock) -> None:
    job, _ = await armed(broker, store, clock.now(), schedule="0 13 * * *")
    shard = broker.keys.for_job(job.job_id)
    await broker.redis.zrem(shard.due, job.job_id)
    await broker.redis.zadd(shard.due, {"ghost": to_ms(clock.now())})
    assert await broker.heal(shard) == (1, 1)
    assert await broker.armed_job_ids() == {job.job_id}


async def test_runs_left_running_by_a_lost_worker_are_closed(broker: Broker, store: Store, clock: ManualClock,
                                                            config: Settings) -> None:
    job, _ = await armed(broker, store, clock.now(), schedule="0 0 1 1 *", timeoutSeconds=60)
    lost = RunRecord(run_id=f"{job.job_id}:1", job_id=job.job_id, logical_time=clock.now(), scheduled_for=None,
                     trigger=Trigger.MANUAL, status=RunStatus.RUNNING, attempt=1, started_at=clock.now(),
                     worker="gone")
    await store.record_runs([lost])
    w = worker(broker, store, clock, config)
    await w._housekeeping()
    assert [r["status"] for r in await runs_of(store, job)] == ["running"], "still within timeout + margin"
    clock.advance(timedelta(seconds=60 + config.visibility_timeout_seconds * 4 + 61))
    await w._housekeeping()
    [run] = await runs_of(store, job)
    assert run["status"] == "failed"
    assert "abandoned" in run["error_message"]
    row = await store.job(job.job_id)
    assert row is not None
    assert (row["fail_count"], row["last_status"]) == (1, "failed")


def _blocking(ctx: RunContext, params: dict[str, Any]) -> None:
    time.sleep(params["seconds"])


async def test_a_runaway_sync_target_times_out_without_wedging_the_worker(
    broker: Broker, store: Store, clock: ManualClock, config: Settings
) -> None:
    if "tests:blocking" not in REGISTRY:
        REGISTRY.register("tests:blocking", _blocking)
    job, job_spec = await armed(broker, store, clock.now(), schedule="0 0 1 1 *", target="tests:blocking",
                                params={"seconds": 1.5}, timeoutSeconds=1, retry={"attempts": 1})
    w = worker(broker, store, clock, config)
    await run_now(broker, job, job_spec, "runaway", clock.now())
    assert await w.drain() == 1
    [run] = await runs_of(store, job)
    assert run["status"] == "timed_out"
    assert running_threads() == 1, "the thread runs on, abandoned"
    await w._heartbeat()
    assert w.healthy, "one abandoned thread is below the concurrency limit"
    await asyncio.sleep(1)
    assert running_threads() == 0


async def test_an_entry_redis_lost_is_rebuilt_from_the_last_fired_slot(
    broker: Broker, store: Store, clock: ManualClock, config: Settings
) -> None:
    """An operator restarting after a Redis wipe re-arms; the outage's slots follow the policy."""
    job, job_spec = await armed(broker, store, clock.now(), schedule="* * * * *")
    w = worker(broker, store, clock, config)
    clock.advance(timedelta(minutes=1))
    assert await w.drain() == 1  # 12:01 ran
    await broker.disarm(job.job_id)  # Redis lost everything
    clock.advance(timedelta(minutes=10, seconds=30))
    await arm_job(broker, store, job, job_spec, 1, clock.now())
    assert await w.drain() == 1
    runs = sorted(r["scheduled_for"].minute for r in await runs_of(store, job))
    assert runs == [1, 11], "the latest missed slot ran once (RunOnce)"
    row = await store.job(job.job_id)
    assert row is not None
    assert row["missed_count"] == 9


async def test_resuming_a_suspended_job_does_not_replay_the_pause(
    broker: Broker, store: Store, clock: ManualClock, config: Settings
) -> None:
    job, job_spec = await armed(broker, store, clock.now(), schedule="* * * * *")
    w = worker(broker, store, clock, config)
    clock.advance(timedelta(minutes=1))
    assert await w.drain() == 1
    await arm_job(broker, store, job, spec(schedule="* * * * *", suspend=True), 2, clock.now())
    clock.advance(timedelta(minutes=30, seconds=30))
    await arm_job(broker, store, job, job_spec, 3, clock.now())
    assert await w.drain() == 0
    row = await store.job(job.job_id)
    assert row is not None
    assert row["missed_count"] == 0


async def test_a_run_whose_output_postgres_cannot_store_is_recorded_cleaned(
    broker: Broker, store: Store, clock: ManualClock
) -> None:
    """NUL and lone surrogates are refused by PostgreSQL's text and jsonb: one such run must not
    block its batch (and every later write of its worker) forever."""
    job, _ = await armed(broker, store, clock.now(), schedule="0 0 1 1 *")
    now = clock.now()

    def ended(n: int, **fields: Any) -> RunRecord:
        return RunRecord(run_id=f"{job.job_id}:manual:{n}", job_id=job.job_id, logical_time=now + timedelta(seconds=n),
                         scheduled_for=None, trigger=Trigger.MANUAL, status=RunStatus.FAILED, attempt=1,
                         started_at=now, completed_at=now, duration_ms=1, **fields)

    await store.record_runs([
        ended(1, output={"text": "a\x00b", "lone": "\ud800", "k\x00": [1, "\x00"]}, error="bad\x00byte"),
        ended(2, output={"emoji": "\U0001f600"}, error="plain"),
    ])
    rows = {row["run_id"]: row for row in await runs_of(store, job)}
    first, second = rows[f"{job.job_id}:manual:1"], rows[f"{job.job_id}:manual:2"]
    assert first["output"] == {"text": "a\ufffdb", "lone": "?", "k\ufffd": [1, "\ufffd"]}
    assert first["error_message"] == "bad\ufffdbyte"
    assert (second["output"], second["error_message"]) == ({"emoji": "\U0001f600"}, "plain")


async def test_recorded_instants_keep_every_microsecond(broker: Broker, store: Store, clock: ManualClock) -> None:
    """Run records carry instants as epoch seconds: the key (logical_time) and the stamps must
    come back exactly, or an end would not find its start and a lookup would miss its row."""
    job, _ = await armed(broker, store, clock.now(), schedule="0 0 1 1 *")
    base = datetime(2026, 11, 30, 23, 59, 59, tzinfo=UTC)
    stamps = [base + timedelta(microseconds=us) for us in (0, 1, 499_999, 500_001, 999_999, 123_457)]
    records = [RunRecord(run_id=f"{job.job_id}:manual:{n}", job_id=job.job_id, logical_time=stamp,
                         scheduled_for=stamp, trigger=Trigger.MANUAL, status=RunStatus.SUCCESS, attempt=1,
                         started_at=stamp, completed_at=stamp + timedelta(microseconds=7), duration_ms=0,
                         next_retry_at=stamp)
               for n, stamp in enumerate(stamps)]
    await store.record_runs(records)
    rows = {row["run_id"]: row for row in await runs_of(store, job)}
    for record in records:
        row = rows[record.run_id]
        assert (row["logical_time"], row["scheduled_for"], row["started_at"], row["completed_at"],
                row["next_retry_at"]) == (record.logical_time, record.scheduled_for, record.started_at,
                                          record.completed_at, record.next_retry_at)
        assert await store.run_status(record.logical_time, record.run_id, 1) is RunStatus.SUCCESS
