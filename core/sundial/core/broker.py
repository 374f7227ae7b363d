"""Every Redis command and Lua script Sundial runs, in one place.

Cron entries follow RedBeat: a hash per entry holds the truth (spec template, version,
`next_due`), a sorted set per shard indexes entries by when a ticker should look at them.
Tickers in every worker replica race for due entries; exactly-once per (job, slot) comes from
`APPLY_PLAN`, which fires only if the entry's `next_due` and `version` are still the ones the
ticker planned from, and advances `next_due` in the same atomic step. A ticker that dies after
claiming loses nothing: its claim is only a lease on the index score, so the entry comes due
again and another ticker plans it.

Every script declares all its keys and they share one shard's hash tag, so the same code runs
on a single Redis, managed Redis and Redis Cluster.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from sundial.core.heartbeat import WorkerHeartbeat
from sundial.core.keys import CONSUMER_GROUP, Keyspace, ShardKeys
from sundial.core.runs import RunMessage

# Arm or re-arm an entry. The due time survives a re-arm whose schedule did not change, so an
# edit to, say, the description at 11:59:59.9 cannot make the 12:00 slot disappear.
ARM = """
local existing = redis.call('HMGET', KEYS[1], 'schedule_key', 'next_due')
local next_due = ARGV[5]
if existing[1] == ARGV[4] and existing[2] then next_due = existing[2] end
redis.call('HSET', KEYS[1], 'template', ARGV[2], 'version', ARGV[3], 'schedule_key', ARGV[4],
           'next_due', next_due, 'concurrency', ARGV[6], 'active_ttl', ARGV[7], 'plan', ARGV[8])
redis.call('ZADD', KEYS[2], next_due, ARGV[1])
return next_due
"""

# Lease due entries to this ticker by pushing their index score past `now`.
CLAIM = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
for _, id in ipairs(ids) do redis.call('ZADD', KEYS[1], 'XX', ARGV[2], id) end
return ids
"""

# Fire a planned set of slots and advance the entry, or do nothing if anyone got there first.
# Returns {'ok', 'fired:<slot>' | 'skipped:<slot>:<blocking run>', ...}, {'stale'} or {'gone'}.
APPLY_PLAN = """
local job_id, now = ARGV[1], tonumber(ARGV[5])
local cur = redis.call('HMGET', KEYS[1], 'version', 'next_due', 'template', 'concurrency', 'active_ttl')
if not cur[1] then redis.call('ZREM', KEYS[2], job_id); return {'gone'} end
if cur[1] ~= ARGV[2] or cur[2] ~= ARGV[3] then return {'stale'} end
local live = {}
local active = redis.call('HGETALL', KEYS[4])
for i = 1, #active, 2 do
  if tonumber(active[i + 1]) <= now then redis.call('HDEL', KEYS[4], active[i])
  else table.insert(live, active[i]) end
end
local out = {'ok'}
local last_fired = nil
for i = 7, #ARGV, 2 do
  local slot, trigger = ARGV[i], ARGV[i + 1]
  local run_id = job_id .. ':' .. slot
  if cur[4] == 'Forbid' and #live > 0 then
    table.insert(out, 'skipped:' .. slot .. ':' .. live[1])
  else
    if cur[4] == 'Replace' then
      for _, other in ipairs(live) do redis.call('HSET', KEYS[5], other, run_id) end
      live = {}
    end
    redis.call('XADD', KEYS[3], '*', 'run', run_id, 'spec', cur[3], 'trigger', trigger, 'attempt', '1',
               'logical', slot, 'slot', slot, 'enq', ARGV[5], 'reason', '')
    redis.call('HSET', KEYS[4], run_id, now + tonumber(cur[5]))
    table.insert(live, run_id)
    table.insert(out, 'fired:' .. slot)
  end
  last_fired = slot
end
redis.call('HSET', KEYS[1], 'next_due', ARGV[4])
if last_fired then redis.call('HSET', KEYS[1], 'last_fired', last_fired) end
redis.call('ZADD', KEYS[2], ARGV[4], job_id)
return out
"""

# Move due retries from the delayed set into the queue; each moves exactly once.
PROMOTE = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, id in ipairs(ids) do
  local payload = redis.call('HGET', KEYS[2], id)
  if payload then
    local fields = cjson.decode(payload)
    local args = {}
    for k, v in pairs(fields) do table.insert(args, k); table.insert(args, v) end
    redis.call('XADD', KEYS[3], '*', unpack(args))
  end
  redis.call('ZREM', KEYS[1], id)
  redis.call('HDEL', KEYS[2], id)
end
return #ids
"""

# Acknowledge a failed attempt and park the next one in the delayed set, atomically.
SCHEDULE_RETRY = """
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[3])
redis.call('HSET', KEYS[3], ARGV[3], ARGV[5])
redis.call('HSET', KEYS[4], ARGV[6], ARGV[7])
return 1
"""

# Hand an unfinished run back to the queue (graceful shutdown) without waiting for reclaim.
RELEASE = """
local fields = cjson.decode(ARGV[3])
local args = {}
for k, v in pairs(fields) do table.insert(args, k); table.insert(args, v) end
redis.call('XADD', KEYS[1], '*', unpack(args))
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
return 1
"""

# Enqueue a manual run once per request id, whoever asks how often.
ENQUEUE_MANUAL = """
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
local fields = cjson.decode(ARGV[3])
local args = {}
for k, v in pairs(fields) do table.insert(args, k); table.insert(args, v) end
redis.call('XADD', KEYS[2], '*', unpack(args))
redis.call('HSET', KEYS[3], ARGV[4], ARGV[5])
return 1
"""


_ENTRY_FIELDS = ("template", "version", "next_due", "plan")

# A worker heartbeats every visibility_timeout/3 (10 s by default); after three missed beats it
# no longer counts as live, and its targets no longer count as offered. One threshold for every
# reader, since `live_workers` also forgets the workers older than it.
LIVE_WORKER_MAX_AGE_MS = 30_000


@dataclass(frozen=True)
class Entry:
    job_id: str
    template: str
    version: str
    next_due_ms: int
    plan: str


@dataclass(frozen=True)
class Delivery:
    """A queue message handed to this worker; `redelivered` when reclaimed from another."""

    shard: ShardKeys
    message_id: str
    message: RunMessage | None
    raw: dict[str, str]
    redelivered: bool
    error: str = ""


@dataclass(frozen=True)
class QueueStats:
    length: int
    pending: int
    delayed: int
    oldest_pending_ms: int | None


@dataclass(frozen=True)
class InFlightRun:
    """A queued run a worker has taken and not yet acknowledged."""

    message_id: str
    worker: str
    idle_ms: int
    deliveries: int
    message: RunMessage


@dataclass(frozen=True)
class DelayedRun:
    """A retry waiting for its backoff to pass."""

    due_ms: int
    message: RunMessage


@dataclass(frozen=True)
class QueueSnapshot:
    """What the queue holds right now, for people looking at it (the dashboard's queue view)."""

    waiting: int
    in_flight: list[InFlightRun]
    delayed: list[DelayedRun]
    delayed_total: int


class Broker:
    def __init__(self, redis: Redis, keyspace: Keyspace) -> None:
        self.redis = redis
        self.keys = keyspace
        self._arm = redis.register_script(ARM)
        self._claim = redis.register_script(CLAIM)
        self._apply = redis.register_script(APPLY_PLAN)
        self._promote = redis.register_script(PROMOTE)
        self._retry = redis.register_script(SCHEDULE_RETRY)
        self._release = redis.register_script(RELEASE)
        self._manual = redis.register_script(ENQUEUE_MANUAL)

    @classmethod
    def from_url(cls, url: str, keyspace: Keyspace) -> Broker:
        return cls(Redis.from_url(url, decode_responses=True), keyspace)

    async def close(self) -> None:
        await self.redis.aclose()

    async def ensure_groups(self) -> None:
        for shard in self.keys.all_shards():
            try:
                await self.redis.xgroup_create(shard.queue, CONSUMER_GROUP, id="0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    # ---- cron entries -------------------------------------------------------------------

    async def arm(
        self,
        job_id: str,
        template_json: str,
        version: str,
        schedule_key: str,
        next_due_ms: int,
        concurrency: str,
        active_ttl_ms: int,
        plan_json: str,
    ) -> int:
        """Create or update an entry; returns the `next_due` it ends up with."""
        shard = self.keys.for_job(job_id)
        result = await self._arm(
            keys=[shard.entry(job_id), shard.due],
            args=[job_id, template_json, version, schedule_key, next_due_ms, concurrency, active_ttl_ms, plan_json],
        )
        return int(result)

    async def arm_many(self, commands: Sequence[ArmCommand]) -> list[int]:
        """`arm` for many entries in one pipelined round trip; the `next_due` of each, in order."""
        if not commands:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for c in commands:
                shard = self.keys.for_job(c.job_id)
                await self._arm(
                    keys=[shard.entry(c.job_id), shard.due],
                    args=[c.job_id, c.template_json, c.version, c.schedule_key, c.next_due_ms, c.concurrency,
                          c.active_ttl_ms, c.plan_json],
                    client=pipe,
                )
            results = await pipe.execute()
        return [int(result) for result in results]

    async def disarm_many(self, job_ids: Sequence[str]) -> None:
        if not job_ids:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                shard = self.keys.for_job(job_id)
                pipe.delete(shard.entry(job_id))
                pipe.zrem(shard.due, job_id)
            await pipe.execute()

    async def entries(self, job_ids: Sequence[str]) -> dict[str, Entry | None]:
        """`entry` for many jobs in one pipelined round trip."""
        if not job_ids:
            return {}
        async with self.redis.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.hmget(self.keys.for_job(job_id).entry(job_id), *_ENTRY_FIELDS)
            rows = await pipe.execute()
        return {job_id: _entry(job_id, row) for job_id, row in zip(job_ids, rows, strict=True)}

    async def disarm(self, job_id: str) -> bool:
        shard = self.keys.for_job(job_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(shard.entry(job_id))
            pipe.zrem(shard.due, job_id)
            deleted, _ = await pipe.execute()
        return bool(deleted)

    async def entry(self, job_id: str) -> Entry | None:
        shard = self.keys.for_job(job_id)
        row = cast(list[str | None], await self.redis.hmget(shard.entry(job_id), *_ENTRY_FIELDS))
        return _entry(job_id, row)

    async def claim_due(self, shard: ShardKeys, now_ms: int, lease_ms: int, limit: int) -> list[str]:
        ids = await self._claim(keys=[shard.due], args=[now_ms, now_ms + lease_ms, limit])
        return cast(list[str], ids)

    async def load_entries(self, shard: ShardKeys, job_ids: Sequence[str]) -> list[Entry | None]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.hmget(shard.entry(job_id), *_ENTRY_FIELDS)
            rows = await pipe.execute()
        return [_entry(job_id, row) for job_id, row in zip(job_ids, rows, strict=True)]

    async def apply_plans(self, shard: ShardKeys, plans: Sequence[PlanCommand], now_ms: int) -> list[list[str]]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for plan in plans:
                await self._apply(
                    keys=[shard.entry(plan.job_id), shard.due, shard.queue, shard.active(plan.job_id), shard.cancel],
                    args=[plan.job_id, plan.version, plan.expected_due_ms, plan.next_due_ms, now_ms, "",
                          *plan.fire_args()],
                    client=pipe,
                )
            return cast(list[list[str]], await pipe.execute())

    async def next_due_ms(self, shard: ShardKeys) -> int | None:
        first = await self.redis.zrange(shard.due, 0, 0, withscores=True)
        return int(first[0][1]) if first else None

    async def heal(self, shard: ShardKeys) -> tuple[int, int]:
        """Make the index agree with the entries (RedBeat's self-healing).

        Returns (index members dropped because their entry is gone, entries re-indexed).
        """
        indexed = set(cast(list[str], await self.redis.zrange(shard.due, 0, -1)))
        entry_ids: set[str] = set()
        prefix = shard.entry_prefix()
        async for key in self.redis.scan_iter(match=f"{_glob_escape(prefix)}*", count=1000):
            entry_ids.add(key.removeprefix(prefix))
        orphans = indexed - entry_ids
        unindexed = entry_ids - indexed
        if orphans:
            await self.redis.zrem(shard.due, *orphans)
        for job_id in unindexed:
            next_due = await self.redis.hget(shard.entry(job_id), "next_due")
            if next_due is not None:
                await self.redis.zadd(shard.due, {job_id: int(next_due)}, nx=True)
        return len(orphans), len(unindexed)

    async def armed_job_ids(self) -> set[str]:
        ids: set[str] = set()
        for shard in self.keys.all_shards():
            ids.update(cast(list[str], await self.redis.zrange(shard.due, 0, -1)))
        return ids

    # ---- queue ----------------------------------------------------------------------------

    async def read(self, shard: ShardKeys, consumer: str, count: int, block_ms: int | None) -> list[Delivery]:
        response = cast(
            list[tuple[str, list[tuple[str, dict[str, str]]]]] | None,
            await self.redis.xreadgroup(CONSUMER_GROUP, consumer, {shard.queue: ">"}, count=count, block=block_ms),
        )
        deliveries: list[Delivery] = []
        for _stream, messages in response or []:
            deliveries.extend(_delivery(shard, message_id, fields, False) for message_id, fields in messages)
        return deliveries

    async def reclaim(self, shard: ShardKeys, consumer: str, min_idle_ms: int, count: int) -> list[Delivery]:
        """Take over runs whose worker stopped heart-beating (XAUTOCLAIM)."""
        response = await self.redis.xautoclaim(
            shard.queue, CONSUMER_GROUP, consumer, min_idle_time=min_idle_ms, start_id="0-0", count=count
        )
        messages = cast(list[tuple[str, dict[str, str] | None]], response[1])
        return [_delivery(shard, message_id, fields, True) for message_id, fields in messages if fields]

    async def touch(self, shard: ShardKeys, consumer: str, message_ids: Sequence[str]) -> None:
        """Reset idle time on runs still in progress so nobody reclaims them."""
        if message_ids:
            await self.redis.xclaim(
                shard.queue, CONSUMER_GROUP, consumer, min_idle_time=0, message_ids=list(message_ids),
                justid=True,
            )

    async def ack(self, deliveries: Iterable[Delivery], finished_runs: Iterable[tuple[str, str]]) -> None:
        """Acknowledge and delete messages, and drop the finished runs' concurrency claims.

        Acknowledged messages are deleted right away (XACK + XDEL): the stream holds only runs
        not yet finished, so its length is the queue depth and it never grows without bound.
        """
        async with self.redis.pipeline(transaction=False) as pipe:
            for delivery in deliveries:
                pipe.xack(delivery.shard.queue, CONSUMER_GROUP, delivery.message_id)
                pipe.xdel(delivery.shard.queue, delivery.message_id)
            for job_id, run_id in finished_runs:
                pipe.hdel(self.keys.for_job(job_id).active(job_id), run_id)
            await pipe.execute()

    async def schedule_retry(self, delivery: Delivery, retry: RunMessage, due_ms: int, active_until_ms: int) -> None:
        shard = delivery.shard
        await self._retry(
            keys=[shard.queue, shard.delayed, shard.delayed_runs, shard.active(retry.job_id)],
            args=[CONSUMER_GROUP, delivery.message_id, retry.retry_id, due_ms, json.dumps(retry.to_fields()),
                  retry.run_id, active_until_ms],
        )

    async def promote_due_retries(self, shard: ShardKeys, now_ms: int, limit: int) -> int:
        return int(await self._promote(keys=[shard.delayed, shard.delayed_runs, shard.queue], args=[now_ms, limit]))

    async def release(self, delivery: Delivery) -> None:
        await self._release(
            keys=[delivery.shard.queue], args=[CONSUMER_GROUP, delivery.message_id, json.dumps(delivery.raw)]
        )

    async def enqueue_manual(self, message: RunMessage, active_until_ms: int) -> bool:
        """Queue a manual run; False when that request id was already queued."""
        shard = self.keys.for_job(message.job_id)
        added = await self._manual(
            keys=[shard.manual, shard.queue, shard.active(message.job_id)],
            args=[message.run_id, message.enqueued_ms, json.dumps(message.to_fields()), message.run_id,
                  active_until_ms],
        )
        return bool(added)

    async def forget_manual_requests(self, older_than_ms: int) -> int:
        """Drop run-now dedupe records old enough that no retry of the request can still come."""
        forgotten = 0
        for shard in self.keys.all_shards():
            stale = [request async for request, at in self.redis.hscan_iter(shard.manual) if int(at) < older_than_ms]
            if stale:
                forgotten += int(await self.redis.hdel(shard.manual, *stale))
        return forgotten

    async def extend_active(self, runs: Iterable[tuple[str, str]], until_ms: int) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            for job_id, run_id in runs:
                pipe.hset(self.keys.for_job(job_id).active(job_id), run_id, until_ms)
            await pipe.execute()

    async def cancel_requests(self, run_ids: Sequence[tuple[str, str]]) -> dict[str, str]:
        """Which of these (job_id, run_id) runs were asked to stop, and why."""
        if not run_ids:
            return {}
        async with self.redis.pipeline(transaction=False) as pipe:
            for job_id, run_id in run_ids:
                pipe.hget(self.keys.for_job(job_id).cancel, run_id)
            reasons = await pipe.execute()
        return {run_id: reason for (_, run_id), reason in zip(run_ids, reasons, strict=True) if reason}

    async def clear_cancel(self, job_id: str, run_id: str) -> None:
        await self.redis.hdel(self.keys.for_job(job_id).cancel, run_id)

    async def queued(self, shard: ShardKeys, page: int = 10_000) -> list[tuple[str, dict[str, str]]]:
        """Every message still in the queue (waiting or in flight), oldest first."""
        messages: list[tuple[str, dict[str, str]]] = []
        start = "-"
        while True:
            batch = cast(list[tuple[str, dict[str, str]]],
                         await self.redis.xrange(shard.queue, min=start, count=page))
            messages.extend(batch)
            if len(batch) < page:
                return messages
            start = "(" + batch[-1][0]

    async def queue_stats(self, shard: ShardKeys, now_ms: int) -> QueueStats:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.xlen(shard.queue)
            pipe.xpending(shard.queue, CONSUMER_GROUP)
            pipe.zcard(shard.delayed)
            length, pending, delayed = await pipe.execute()
        oldest: int | None = None
        if pending and pending.get("min"):
            oldest = now_ms - int(str(pending["min"]).split("-")[0])
        return QueueStats(int(length), int(pending.get("pending", 0)), int(delayed), oldest)

    async def snapshot(self, limit: int = 500) -> QueueSnapshot:
        """Waiting count, in-flight runs per worker and due-soonest retries, across shards.

        Reads only; `limit` bounds the runs listed per shard, the counts are exact.
        """
        waiting = delayed_total = 0
        in_flight: list[InFlightRun] = []
        delayed: list[DelayedRun] = []
        for shard in self.keys.all_shards():
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.xlen(shard.queue)
                pipe.xpending_range(shard.queue, CONSUMER_GROUP, min="-", max="+", count=limit)
                pipe.zrange(shard.delayed, 0, limit - 1, withscores=True)
                pipe.zcard(shard.delayed)
                length, pending, due, due_total = await pipe.execute(raise_on_error=False)
            if isinstance(pending, ResponseError):
                if "NOGROUP" not in str(pending):
                    raise pending
                pending = []  # no worker has created the consumer group yet: nothing in flight
            waiting += max(int(length) - len(pending), 0)
            delayed_total += int(due_total)
            in_flight += await self._in_flight(shard, pending)
            delayed += await self._delayed(shard, due)
        return QueueSnapshot(waiting, in_flight, delayed, delayed_total)

    async def _in_flight(self, shard: ShardKeys, pending: list[dict[str, Any]]) -> list[InFlightRun]:
        if not pending:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for entry in pending:
                pipe.xrange(shard.queue, min=entry["message_id"], max=entry["message_id"])
            bodies = await pipe.execute()
        runs = []
        for entry, body in zip(pending, bodies, strict=True):
            if body:  # acknowledged and deleted between the two reads
                runs.append(InFlightRun(str(entry["message_id"]), str(entry["consumer"]),
                                        int(entry["time_since_delivered"]), int(entry["times_delivered"]),
                                        RunMessage.from_fields(body[0][1])))
        return runs

    async def _delayed(self, shard: ShardKeys, due: list[tuple[str, float]]) -> list[DelayedRun]:
        if not due:
            return []
        bodies = cast(list[str | None], await self.redis.hmget(shard.delayed_runs, [retry_id for retry_id, _ in due]))
        return [
            DelayedRun(int(score), RunMessage.from_fields(json.loads(body)))
            for (_, score), body in zip(due, bodies, strict=True)
            if body
        ]

    # ---- live workers --------------------------------------------------------------------

    async def heartbeat_worker(self, worker_id: str, heartbeat: WorkerHeartbeat) -> None:
        await self.redis.hset(self.keys.workers, worker_id, heartbeat.to_json())

    async def remove_worker(self, worker_id: str) -> None:
        await self.redis.hdel(self.keys.workers, worker_id)

    async def live_workers(
        self, now_ms: int, max_age_ms: int = LIVE_WORKER_MAX_AGE_MS
    ) -> dict[str, WorkerHeartbeat]:
        """Workers seen recently; long-silent (or unreadable) ones are forgotten so they stop
        offering targets."""
        raw = cast(dict[str, str], await self.redis.hgetall(self.keys.workers))
        live: dict[str, WorkerHeartbeat] = {}
        stale: list[str] = []
        for worker_id, payload in raw.items():
            heartbeat = WorkerHeartbeat.from_json(payload)
            if heartbeat is not None and now_ms - heartbeat.seen_ms <= max_age_ms:
                live[worker_id] = heartbeat
            else:
                stale.append(worker_id)
        if stale:
            await self.redis.hdel(self.keys.workers, *stale)
        return live


@dataclass(frozen=True)
class ArmCommand:
    """One `arm` call's arguments, for `arm_many`."""

    job_id: str
    template_json: str
    version: str
    schedule_key: str
    next_due_ms: int
    concurrency: str
    active_ttl_ms: int
    plan_json: str


@dataclass(frozen=True)
class PlanCommand:
    """A ticker's decision for one entry, checked and applied atomically by APPLY_PLAN."""

    job_id: str
    version: str
    expected_due_ms: int
    next_due_ms: int
    fires: tuple[tuple[int, str], ...]
    missed: int = 0

    def fire_args(self) -> list[str]:
        return [part for slot, trigger in self.fires for part in (str(slot), trigger)]


def _entry(job_id: str, row: Sequence[str | None]) -> Entry | None:
    template, version, next_due, plan = row
    if template is None or version is None or next_due is None or plan is None:
        return None
    return Entry(job_id, template, version, int(next_due), plan)


def _delivery(shard: ShardKeys, message_id: str, fields: dict[str, str], redelivered: bool) -> Delivery:
    try:
        message: RunMessage | None = RunMessage.from_fields(fields)
        error = ""
    except (KeyError, ValueError, TypeError) as exc:
        # A malformed message must not kill the consumer: it is recorded and dropped.
        message, error = None, f"malformed run message: {exc!r}"
    return Delivery(shard, message_id, message, dict(fields), redelivered, error)


def _glob_escape(text: str) -> str:
    return "".join(f"\\{ch}" if ch in "*?[]\\" else ch for ch in text)
