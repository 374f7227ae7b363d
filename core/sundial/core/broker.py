"""Every Redis command and Lua script Sundial runs, in one place.

Cron entries follow RedBeat: a hash per entry holds the truth (spec template, version,
`next_due`), a sorted set per shard indexes entries by when a ticker should look at them.
Tickers in every worker replica race for due entries; exactly-once per (job, slot) comes from
`APPLY_PLANS`, which fires only if the entry's `next_due` and `version` are still the ones the
ticker planned from, and advances `next_due` in the same atomic step. A ticker that dies after
claiming loses nothing: its claim is only a lease on the index score, so the entry comes due
again and another ticker plans it.

Every script declares all its keys and they share one shard's hash tag, so the same code runs
on a single Redis, managed Redis and Redis Cluster.
"""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any, cast
from urllib.parse import parse_qs, unquote, urlsplit

from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import ConnectionPool
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import ExponentialWithJitterBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import ResponseError

from sundial.core.heartbeat import WorkerHeartbeat
from sundial.core.keys import CONSUMER_GROUP, Keyspace, ShardKeys, slot_of_run_id
from sundial.core.resp import PACKED, PackedSentinelConnection
from sundial.core.runs import JobRef, RunMessage, parse_template
from sundial.core.spec import ConcurrencyPolicy

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

# Arm an entry only if Redis has none: rebuilding after a data loss must never overwrite an
# entry the operator armed meanwhile from a newer spec. Same arguments as ARM; 1 if armed.
ARM_IF_ABSENT = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'template', ARGV[2], 'version', ARGV[3], 'schedule_key', ARGV[4],
           'next_due', ARGV[5], 'concurrency', ARGV[6], 'active_ttl', ARGV[7], 'plan', ARGV[8])
redis.call('ZADD', KEYS[2], ARGV[5], ARGV[1])
return 1
"""

# Push back the expiry of claims runs still hold (KEYS: each run's job's active hash; ARGV: until,
# then one run id per key). A claim already released stays released: a heartbeat's list of runs
# is read before its HSETs land, and one landing after its run's ACK made a claim nothing would
# release for 3 visibility timeouts, and a Forbid job skipped every slot meanwhile.
EXTEND_CLAIMS = """
for i = 1, #KEYS do
  if redis.call('HEXISTS', KEYS[i], ARGV[i + 1]) == 1 then redis.call('HSET', KEYS[i], ARGV[i + 1], ARGV[1]) end
end
return #KEYS
"""

# Claim the pruning of these jobs' run histories (ARGV[4..]) for one housekeeping pass: a job
# claimed by any worker within the last ARGV[2] ms is left to it. Claims older than ARGV[3] ms
# (jobs no worker finished a run of since, deleted ones among them) are forgotten. Returns the
# jobs claimed.
CLAIM_PRUNES = """
local now = tonumber(ARGV[1])
local since = now - tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[3]))
local claimed = {}
for i = 4, #ARGV do
    local last = redis.call('ZSCORE', KEYS[1], ARGV[i])
    if not last or tonumber(last) <= since then
        redis.call('ZADD', KEYS[1], now, ARGV[i])
        claimed[#claimed + 1] = ARGV[i]
    end
end
return claimed
"""

# Put a retry back in the delayed set unless it is there already (rebuilding after a loss).
PARK_RETRY = """
if redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[3]) == 0 then return 0 end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
return 1
"""

# Lease due entries to this ticker by pushing their index score to the lease's end. Returns
# {id, score, ...}: a score past the entry's `next_due` is the end of a lease that ran out (its
# ticker died or stalled), which is when the entry became claimable again.
CLAIM = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[3]))
for i = 1, #due, 2 do redis.call('ZADD', KEYS[1], 'XX', ARGV[2], due[i]) end
return due
"""

# Extend this ticker's leases on entries it still holds; an entry re-armed or claimed by
# another ticker since (its score moved) is left alone.
RENEW = """
local renewed = 0
for i = 3, #ARGV do
  if redis.call('ZSCORE', KEYS[1], ARGV[i]) == ARGV[1] then
    redis.call('ZADD', KEYS[1], 'XX', ARGV[2], ARGV[i])
    renewed = renewed + 1
  end
end
return renewed
"""

# The planning fields of claimed entries (KEYS: their entry keys), in one reply for the batch:
# {{version, next_due, plan number, concurrency, ...}, {plan, ...}}. Jobs share plans, so each
# distinct plan text is sent once (numbered from 1; 0 is an entry that is gone). The template
# stays in Redis: APPLY_PLANS copies it into each message.
LOAD_DUE = """
local rows, plans, seen = {}, {}, {}
for i = 1, #KEYS do
  local e = redis.call('HMGET', KEYS[i], 'version', 'next_due', 'plan', 'concurrency')
  local number = 0
  if e[1] and e[2] and e[3] then
    number = seen[e[3]]
    if not number then table.insert(plans, e[3]); number = #plans; seen[e[3]] = number end
  end
  rows[#rows + 1] = e[1] or ''
  rows[#rows + 1] = e[2] or ''
  rows[#rows + 1] = number
  rows[#rows + 1] = e[4] or ''
end
return {rows, plans}
"""

# Which of these entries (KEYS) are still armed: 1 or 0 each. A run fired ahead of its slot is
# started only if its job was not deleted or suspended (disarmed) meanwhile.
STILL_ARMED = """
local armed = {}
for i = 1, #KEYS do armed[i] = redis.call('EXISTS', KEYS[i]) end
return armed
"""

# Fire the planned slots of a batch of entries of one shard and advance each entry, or leave an
# entry alone if anyone got there first (another ticker, or the operator re-armed it).
# KEYS = due index, queue, cancel requests, buffered set, then per entry: entry, active, buffer.
# ARGV = now, queue limit, min wait (ms), consumer group, then per group of entries sharing a plan: expected
# next_due, new next_due, startingDeadlineSeconds in ms (or ''), number of fires, then per fire
# (slot, trigger, start), then the number of entries, then per entry (job id, version). Thousands
# of every-second jobs share one plan, so each sends two arguments, not nine (encoding them was
# a large share of a ticker's CPU). The slot names the run ('logical'); the start is when it was
# planned to begin ('slot': the slot plus its jitter), from which lateness counts.
# Returns one result per entry: 1 when it was applied and every slot fired (the common case, kept
# small), else {'ok', 'fired:<slot>' | 'buffered:<slot>' | 'skipped:<slot>:<blocking run>[|BufferOne]'
# | 'missed:<slot>', ...}, {'stale'} or {'gone'}.
# A slot is 'missed' when the queue already holds the limit's messages: an overloaded deployment
# drops new slots with a record instead of growing Redis without bound; the script counts its own
# XADDs, so the limit is exact. Each message expires (field 'exp') at start +
# startingDeadlineSeconds when the job sets one, else at its next slot or start + min wait,
# whichever is later (its next slot: the next one fired with it when that one is still to come, as
# when slots are fired together, else the entry's next due). A scheduled run may also be 'missed',
# not queued, when it would reach a worker close to its deadline. The oldest message no worker has
# taken yet has waited W (in Redis' own time, the clock of its id); a run queued now is expected
# to wait as long and then have L left before its deadline. Queued anyway, a run that expires
# costs a worker a record and an ack, as much as a no-op run: under sustained overload the workers
# spent all their time on runs already expired, and no slot started at all (bench.run_lateness,
# 7,500 every-second schedules on 2 cores). So a share of the slots is shed, growing from none
# when the wait is half of what is left to it (W = L) to all of them when nothing is left (L <=
# 0), in the manner of RED (random early detection) in network queues: shedding every slot once W
# passed L made the deployment drop whole seconds of slots together and then idle
# (bench.side_by_side, 10,000 every-second schedules: 38 % of a 30 s window's slots shed, where
# without the admission every one had started within its deadline). Which slots go is a fixed
# function of the job id and the slot's second (shed_draw), so the share rotates over the jobs.
APPLY_PLANS = """
local now, limit, min_wait = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local due, queue, cancel, buffered = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local queued = redis.call('XLEN', queue)

-- How long the oldest message not yet delivered to the group has waited (0: none waits): the
-- measure Broker.queue_stats exports as oldest_waiting_ms (sundial_queue_lag_seconds), read here
-- inside the script so the decision and the enqueue are one atomic step.
local function queue_wait()
  if queued == 0 then return 0 end
  for _, group in ipairs(redis.call('XINFO', 'GROUPS', queue)) do
    local fields = {}
    for i = 1, #group, 2 do fields[group[i]] = group[i + 1] end
    if fields['name'] == ARGV[4] then
      local oldest = redis.call('XRANGE', queue, '(' .. fields['last-delivered-id'], '+', 'COUNT', 1)
      if #oldest == 0 then return 0 end
      local clock = redis.call('TIME')
      local waited = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
                     - tonumber(string.match(oldest[1][1], '^(%d+)'))
      return math.max(waited, 0)
    end
  end
  return 0
end
local waited = queue_wait()

local function live_runs(active)
  local live = {}
  local runs = redis.call('HGETALL', active)
  for i = 1, #runs, 2 do
    if tonumber(runs[i + 1]) <= now then redis.call('HDEL', active, runs[i])
    else table.insert(live, runs[i]) end
  end
  return live
end

-- A number in [0, 1) that tells which slots a shed share takes: spread over the jobs by their
-- id's first hex digits (a Kubernetes UID is random) and rotated every second by the slot.
local function shed_draw(job_id, slot)
  local spread = tonumber(string.sub(job_id, 1, 6), 16) or 0
  return ((spread % 1000) + (math.floor(tonumber(slot) / 1000) % 1000) * 617) % 1000 / 1000
end

-- Whether the queue's wait makes this slot one of those shed (see above): p = 2W / (W + L) - 1.
local function shed(job_id, slot, start, expires)
  if waited <= 0 then return false end
  local left = expires - math.max(now + waited, tonumber(start))
  if left <= 0 then return true end
  return shed_draw(job_id, slot) < 2 * waited / (waited + left) - 1
end

local function expires_at(start, deadline, next_due)
  if deadline ~= '' then return tonumber(start) + tonumber(deadline) end
  return math.max(tonumber(start) + min_wait, tonumber(next_due))
end

-- g: where the entry's group starts in ARGV; j: where its (job id, version) pair is; k: its keys.
local function apply(g, j, k)
  local job_id, next_due, deadline, n = ARGV[j], ARGV[g + 1], ARGV[g + 2], tonumber(ARGV[g + 3])
  local entry, active, buffer = KEYS[k], KEYS[k + 1], KEYS[k + 2]
  local cur = redis.call('HMGET', entry, 'version', 'next_due', 'template', 'concurrency', 'active_ttl')
  if not cur[1] then redis.call('ZREM', due, job_id); return {'gone'} end
  if cur[1] ~= ARGV[j + 1] or cur[2] ~= ARGV[g] then return {'stale'} end
  local live = live_runs(active)
  local out, all_fired = {'ok'}, n > 0
  local last = g + 1 + 3 * n
  for i = g + 4, last, 3 do
    local slot, trigger, start = ARGV[i], ARGV[i + 1], ARGV[i + 2]
    local run_id = job_id .. ':' .. slot
    -- A run's next slot is the next one fired with it when that one is still to come (slots
    -- fired together, ahead), else the entry's next due.
    local following = next_due
    if i < last and tonumber(ARGV[i + 5]) > now then following = ARGV[i + 5] end
    local expires = expires_at(start, deadline, following)
    if queued >= limit then
      all_fired = false
      table.insert(out, 'missed:' .. slot)
    elseif cur[4] == 'Forbid' and #live > 0 then
      all_fired = false
      table.insert(out, 'skipped:' .. slot .. ':' .. live[1])
    elseif (cur[4] == 'BufferOne' or cur[4] == 'BufferAll') and #live > 0 then
      all_fired = false
      if cur[4] == 'BufferOne' and redis.call('LLEN', buffer) > 0 then
        table.insert(out, 'skipped:' .. slot .. ':' .. live[1] .. '|BufferOne')
      else
        -- Waits in the buffer (RELEASE_BUFFERED queues it) and never expires there.
        redis.call('RPUSH', buffer, cjson.encode({run = run_id, spec = cur[3], trigger = trigger, attempt = '1',
                   logical = slot, slot = start, enq = ARGV[1], reason = '', exp = ''}))
        redis.call('ZADD', buffered, 'NX', slot, job_id)
        table.insert(out, 'buffered:' .. slot)
      end
    elseif shed(job_id, slot, start, expires) then
      all_fired = false
      table.insert(out, 'missed:' .. slot)
    else
      if cur[4] == 'Replace' then
        for _, other in ipairs(live) do redis.call('HSET', cancel, other, run_id) end
        live = {}
      end
      redis.call('XADD', queue, '*', 'run', run_id, 'spec', cur[3], 'trigger', trigger, 'attempt', '1',
                 'logical', slot, 'slot', start, 'enq', ARGV[1], 'reason', '', 'exp', expires)
      queued = queued + 1
      redis.call('HSET', active, run_id, now + tonumber(cur[5]))
      table.insert(live, run_id)
      table.insert(out, 'fired:' .. slot)
    end
  end
  redis.call('HSET', entry, 'next_due', next_due)
  redis.call('ZADD', due, next_due, job_id)
  if all_fired then return 1 end
  return out
end

local results = {}
local g, k = 5, 5
while g <= #ARGV do
  local m_at = g + 4 + 3 * tonumber(ARGV[g + 3])
  local last = m_at + 2 * tonumber(ARGV[m_at])
  for j = m_at + 1, last, 2 do
    results[#results + 1] = apply(g, j, k)
    k = k + 3
  end
  g = last + 1
end
return results
"""

# Queue the oldest buffered run of a BufferOne/BufferAll job once none of its runs is live
# (a retry waiting for its backoff is live), claiming the job for it as a fire does. KEYS =
# buffer, active, queue, buffered set, entry; ARGV = job id, now. A deleted job's buffer goes.
RELEASE_BUFFERED = """
local now = tonumber(ARGV[2])
local ttl = redis.call('HGET', KEYS[5], 'active_ttl')
if not ttl then
  redis.call('DEL', KEYS[1]); redis.call('ZREM', KEYS[4], ARGV[1]); return 0
end
local active = redis.call('HGETALL', KEYS[2])
for i = 1, #active, 2 do
  if tonumber(active[i + 1]) > now then return 0 end
end
local payload = redis.call('LPOP', KEYS[1])
if redis.call('LLEN', KEYS[1]) == 0 then redis.call('ZREM', KEYS[4], ARGV[1]) end
if not payload then return 0 end
local fields = cjson.decode(payload)
local args = {}
for k, v in pairs(fields) do table.insert(args, k); table.insert(args, v) end
redis.call('XADD', KEYS[3], '*', unpack(args))
redis.call('HSET', KEYS[2], fields['run'], now + tonumber(ttl))
return 1
"""

# Put buffered runs back at the head of a job's buffer after Redis lost its data, oldest first,
# each unless its run is in the buffer already or live (a worker holds it, or it was released):
# a rebuild run twice restores nothing twice. KEYS = buffer, buffered set, active; ARGV = job
# id, score in the buffered set, then (run id, payload) pairs oldest first. Returns how many.
RESTORE_BUFFERED = """
local present = {}
for _, item in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do
  local ok, fields = pcall(cjson.decode, item)
  if ok and type(fields) == 'table' and fields['run'] then present[fields['run']] = true end
end
local restore = {}
for i = 3, #ARGV, 2 do
  if not present[ARGV[i]] and redis.call('HEXISTS', KEYS[3], ARGV[i]) == 0 then
    table.insert(restore, ARGV[i + 1])
    present[ARGV[i]] = true
  end
end
for i = #restore, 1, -1 do redis.call('LPUSH', KEYS[1], restore[i]) end
if #restore > 0 then redis.call('ZADD', KEYS[2], 'NX', ARGV[2], ARGV[1]) end
return #restore
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

# Acknowledge and delete a batch of messages of one shard and drop finished runs' claims:
# KEYS = queue, the shard's stop requests (cancel), then one active key per finished run;
# ARGV = group, n, n message ids, then one run id per active key, in the same order.
ACK = """
local n = tonumber(ARGV[2])
for i = 3, n + 2, 500 do
  local last = math.min(i + 499, n + 2)
  redis.call('XACK', KEYS[1], ARGV[1], unpack(ARGV, i, last))
  redis.call('XDEL', KEYS[1], unpack(ARGV, i, last))
end
-- A finished run gives up its concurrency claim, and a stop request (Replace) ends with it: the
-- claims are one key per job, the stop requests one for the shard (one call per 500 runs, not one
-- per run: each call from a script costs Redis about as much as a small command itself).
for k = 3, #KEYS do
  redis.call('HDEL', KEYS[k], ARGV[n + k])
end
for i = n + 3, #ARGV, 500 do
  redis.call('HDEL', KEYS[2], unpack(ARGV, i, math.min(i + 499, #ARGV)))
end
return n
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

# Move a message no worker can run out of the queue into the dead-letter stream, with why.
# ARGV: group, message id, reason, max dead letters kept, then the message's fields. The dead
# letter's own stream id is when it died.
DEAD_LETTER = """
local fields = {'dead_reason', ARGV[3], 'message_id', ARGV[2]}
for i = 5, #ARGV do table.insert(fields, ARGV[i]) end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '*', unpack(fields))
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

# A run delivered this many times without ever being acknowledged is a poison message (it kills
# or wedges every worker that takes it): it goes to the dead letters instead of looping. Worker
# crashes in the middle of an ordinary run account for one or two deliveries, not five.
MAX_DELIVERIES = 5
# A cluster client opens at most 100 connections per node (redis-py's default) and fails a
# command that finds none free, so concurrent script calls (one per entry of a ticker's batch
# of 500, or of an operator's bulk arm) go in groups well below it.
CLUSTER_CONCURRENCY = 20
# redis-py's cluster client (8.1) closes every connection of its nodes, those other tasks are
# using too, when re-learning the cluster's layout fails (a slow connect or CLUSTER SLOTS on a
# loaded host) or a shard reports CLUSTERDOWN. A command whose connection was closed under it
# then fails with a bare AttributeError or TypeError from the closed asyncio writer or reader
# ('NoneType' object ...), which no retry of redis-py's recognises (redis-py #3546, #4287; fixed
# upstream by normalising them to ConnectionError, #4217). Every script `_scripted` runs is
# idempotent or guarded (arm, arm-if-absent, park, ack, run-now dedup by run id, and the fire
# script's due/version check), so such a call is sent again, a few times. (A pruning claim sent
# twice finds itself claimed and prunes nothing: the jobs are pruned at the next pass.)
CLUSTER_SCRIPT_ATTEMPTS = 4
CLUSTER_RETRY_DELAY_SECONDS = 0.05
DEAD_LETTERS_KEPT = 10_000
# A job's pruning claim is forgotten this long after it was made: far longer than a pass, so a
# claim is never forgotten while it counts, and `pruned` holds only jobs that finished runs lately.
PRUNE_CLAIMS_KEPT_MS = 10 * 60 * 1000


@dataclass(frozen=True)
class Entry:
    job_id: str
    template: str
    version: str
    next_due_ms: int
    plan: str


@dataclass(slots=True)
class DueEntry:
    """The fields of a claimed entry the ticker plans from (its template stays in Redis).

    Not frozen (never changed once made), nor are Claim and PlanCommand: a ticker builds one of
    each per fire, and a frozen dataclass sets each field through object.__setattr__ (see RunRecord).
    """

    job_id: str
    version: str
    next_due_ms: int
    plan: str
    # The job's concurrencyPolicy: only Allow runs may be queued ahead of their slot.
    concurrency: str = ConcurrencyPolicy.ALLOW


@dataclass(slots=True)
class Claim:
    """An entry leased to a ticker, with its index score when claimed."""

    job_id: str
    score_ms: int

    def claimable_since_ms(self, next_due_ms: int) -> int | None:
        """When a dead ticker's lease on this entry ran out, or None if it was plainly due."""
        return self.score_ms if self.score_ms > next_due_ms else None


@dataclass(slots=True, eq=False)
class Delivery:
    """A queue message handed to this worker; `redelivered` when reclaimed from another.

    Not frozen (never changed once made), for the cost of building one per message; see RunRecord.
    """

    shard: ShardKeys
    message_id: str
    message: RunMessage | None
    raw: dict[str, str]
    redelivered: bool
    error: str = ""


@dataclass(frozen=True)
class DeadLetter:
    """A queue message no worker could run, as `DEAD_LETTER` kept it, for people looking at it."""

    shard: int
    dead_id: str  # its id in the shard's dead-letter stream, which says when it died
    reason: str
    message_id: str  # its id in the queue it was taken from
    fields: dict[str, str]  # the message as it was in the queue, readable or not

    # What the message said, where it still can be read: a malformed one may lack any of it.
    @property
    def run_id(self) -> str | None:
        return self.fields.get("run") or None

    @property
    def died_ms(self) -> int:
        return int(self.dead_id.split("-")[0])

    @property
    def job(self) -> JobRef | None:
        try:
            return parse_template(self.fields["spec"]).job
        except Exception:
            # Whatever the message holds; the reason already says why it could not be run.
            return None

    def excerpt(self, chars: int = 200) -> str:
        """The raw message as JSON, cut to `chars` characters (a spec can be 256 KiB of params)."""
        text = json.dumps(self.fields, ensure_ascii=False, sort_keys=True)
        return text if len(text) <= chars else text[: chars - 1] + "…"

    @classmethod
    def of(cls, shard: ShardKeys, dead_id: str, fields: dict[str, str]) -> DeadLetter:
        body = {key: value for key, value in fields.items() if key not in ("dead_reason", "message_id")}
        return cls(shard.shard, dead_id, fields.get("dead_reason", ""), fields.get("message_id", ""), body)


@dataclass(frozen=True)
class QueueStats:
    length: int
    pending: int
    delayed: int
    oldest_pending_ms: int | None
    # Queue lag: runs no worker has taken yet, and how long the oldest of them has waited.
    lag: int = 0
    oldest_waiting_ms: int | None = None


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
        self._arm_if_absent = redis.register_script(ARM_IF_ABSENT)
        self._park_retry = redis.register_script(PARK_RETRY)
        self._claim = redis.register_script(CLAIM)
        self._renew = redis.register_script(RENEW)
        self._load_due = redis.register_script(LOAD_DUE)
        self._still_armed = redis.register_script(STILL_ARMED)
        self._apply = redis.register_script(APPLY_PLANS)
        self._promote = redis.register_script(PROMOTE)
        self._retry = redis.register_script(SCHEDULE_RETRY)
        self._release = redis.register_script(RELEASE)
        self._manual = redis.register_script(ENQUEUE_MANUAL)
        self._release_buffered = redis.register_script(RELEASE_BUFFERED)
        self._restore_buffered = redis.register_script(RESTORE_BUFFERED)
        self._ack = redis.register_script(ACK)
        self._dead_letter = redis.register_script(DEAD_LETTER)
        self._claim_prunes = redis.register_script(CLAIM_PRUNES)
        self._extend_claims = redis.register_script(EXTEND_CLAIMS)
        self._siblings: dict[Keyspace, Broker] = {keyspace: self}

    def for_keyspace(self, keyspace: Keyspace) -> Broker:
        """A broker over another keyspace of the same Redis (a worker pool's), sharing the client."""
        sibling = self._siblings.get(keyspace)
        if sibling is None:
            sibling = self._siblings[keyspace] = Broker(self.redis, keyspace)
        return sibling

    @classmethod
    def from_url(cls, url: str, keyspace: Keyspace) -> Broker:
        return cls(redis_from_url(url), keyspace)

    async def close(self) -> None:
        await self.redis.aclose()

    async def ensure_groups(self) -> None:
        for shard in self.keys.all_shards():
            await self._ensure_group(shard)

    async def _ensure_group(self, shard: ShardKeys) -> None:
        # From id 0: runs fired into a stream that a data loss recreated before its group are kept.
        try:
            await self.redis.xgroup_create(shard.queue, CONSUMER_GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    # ---- data loss ------------------------------------------------------------------------

    async def is_intact(self) -> bool:
        """False when Redis lost the data this deployment put there (see keys.py `intact`), or
        was never rebuilt from PostgreSQL: either way a worker must rebuild before trusting it."""
        return bool(await self.redis.exists(self.keys.intact))

    async def mark_intact(self, since_ms: int) -> None:
        """Only the rebuild writes this (sundial.core.recovery): an arm never does, since an
        entry armed into an emptied Redis would hide the loss from the workers."""
        await self.redis.set(self.keys.intact, since_ms)


    async def lead_rebuild(self, owner: str, ttl_ms: int) -> bool:
        """Become the one process re-arming entries after a loss, for at most `ttl_ms`."""
        return bool(await self.redis.set(self.keys.rebuilding, owner, nx=True, px=ttl_ms))

    async def end_rebuild(self, owner: str) -> None:
        if await self.redis.get(self.keys.rebuilding) == owner:
            await self.redis.delete(self.keys.rebuilding)

    async def arm_missing(self, commands: Sequence[ArmCommand]) -> int:
        """Arm the entries Redis does not have (pipelined); returns how many were armed."""
        if not commands:
            return 0
        return sum(int(armed) for armed in await self._scripted(self._arm_if_absent,
                                                                [self._arm_call(c) for c in commands]))

    async def latest_in_flight_slots(self, job_ids: Sequence[str]) -> dict[str, int]:
        """Per job, the latest slot whose run a worker holds (its concurrency claim), if any."""
        return {job_id: max(slots) for job_id, slots in (await self.in_flight_slots(job_ids)).items()}

    async def in_flight_slots(self, job_ids: Sequence[str]) -> dict[str, set[int]]:
        """Per job, every slot (ms) whose run a worker holds (its concurrency claim); jobs
        holding none are left out."""
        if not job_ids:
            return {}
        async with self.redis.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.hkeys(self.keys.for_job(job_id).active(job_id))
            claims = await pipe.execute()
        held: dict[str, set[int]] = {}
        for job_id, run_ids in zip(job_ids, claims, strict=True):
            slots = {slot for run_id in run_ids if (slot := slot_of_run_id(run_id)) is not None}
            if slots:
                held[job_id] = slots
        return held

    async def park_retries(self, retries: Sequence[tuple[RunMessage, int]]) -> int:
        """Park (retry message, due ms) pairs in the delayed sets, skipping those already there."""
        calls = []
        for message, due_ms in retries:
            shard = self.keys.for_job(message.job_id)
            calls.append(([shard.delayed, shard.delayed_runs],
                          [message.retry_id, due_ms, json.dumps(message.to_fields())]))
        return sum(int(parked) for parked in await self._scripted(self._park_retry, calls)) if calls else 0

    async def restore_buffered(self, runs: Sequence[RunMessage]) -> int:
        """Put buffered runs (oldest first per job) back into their jobs' buffers, skipping those
        there already or live; returns how many were restored. One script call per job."""
        by_job: dict[str, list[RunMessage]] = {}
        for message in runs:
            by_job.setdefault(message.job_id, []).append(message)
        calls = []
        for job_id, messages in by_job.items():
            shard = self.keys.for_job(job_id)
            pairs = [part for m in messages for part in (m.run_id, json.dumps(m.to_fields()))]
            calls.append(([shard.buffer(job_id), shard.buffered, shard.active(job_id)],
                          [job_id, messages[0].logical_ms, *pairs]))
        return sum(int(n) for n in await self._scripted(self._restore_buffered, calls)) if calls else 0

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
        command = ArmCommand(job_id, template_json, version, schedule_key, next_due_ms, concurrency, active_ttl_ms,
                             plan_json)
        [next_due] = await self.arm_many([command])
        return next_due

    async def arm_many(self, commands: Sequence[ArmCommand]) -> list[int]:
        """`arm` for many entries in one pipelined round trip; the `next_due` of each, in order."""
        if not commands:
            return []
        results = await self._scripted(self._arm, [self._arm_call(c) for c in commands])
        return [int(result) for result in results]

    def _arm_call(self, c: ArmCommand) -> tuple[list[str], list[Any]]:
        shard = self.keys.for_job(c.job_id)
        return ([shard.entry(c.job_id), shard.due],
                [c.job_id, c.template_json, c.version, c.schedule_key, c.next_due_ms, c.concurrency,
                 c.active_ttl_ms, c.plan_json])

    async def _scripted(self, script: AsyncScript, calls: Sequence[tuple[list[str], list[Any]]]) -> list[Any]:
        """Run one script for many key sets: pipelined on one Redis; concurrently on a Redis
        Cluster, whose pipelines refuse scripts (each call still touches one slot). A single
        call goes on its own: a pipeline asks `SCRIPT EXISTS` first, a round trip more per ack."""
        if isinstance(self.redis, RedisCluster):
            results: list[Any] = []
            for start in range(0, len(calls), CLUSTER_CONCURRENCY):
                results += await asyncio.gather(
                    *(_on_cluster(script, keys, args) for keys, args in calls[start:start + CLUSTER_CONCURRENCY]))
            return results
        if len(calls) == 1:
            keys, args = calls[0]
            return [await script(keys=keys, args=args)]
        async with self.redis.pipeline(transaction=False) as pipe:
            for keys, args in calls:
                await script(keys=keys, args=args, client=pipe)
            return list(await pipe.execute())

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

    async def claim_due(self, shard: ShardKeys, now_ms: int, lease_until_ms: int, limit: int) -> list[Claim]:
        """Lease up to `limit` entries due by `now_ms` to this ticker until `lease_until_ms`."""
        flat = cast(list[str], await self._claim(keys=[shard.due], args=[now_ms, lease_until_ms, limit]))
        return [Claim(flat[i], int(float(flat[i + 1]))) for i in range(0, len(flat), 2)]

    async def renew_leases(self, shard: ShardKeys, job_ids: Sequence[str], lease_ms: int, until_ms: int) -> int:
        """Extend the leases taken until `lease_ms` to `until_ms`; returns how many were still ours."""
        if not job_ids:
            return 0
        return int(await self._renew(keys=[shard.due], args=[lease_ms, until_ms, *job_ids]))

    async def load_due(self, shard: ShardKeys, job_ids: Sequence[str]) -> list[DueEntry | None]:
        """What the ticker plans claimed entries from (None: the entry is gone), one round trip."""
        if not job_ids:
            return []
        rows, plans = cast(tuple[list[Any], list[str]],
                           await self._load_due(keys=[shard.entry(job_id) for job_id in job_ids]))
        return [DueEntry(job_id, rows[i], int(rows[i + 1]), plans[rows[i + 2] - 1],
                         rows[i + 3] or ConcurrencyPolicy.ALLOW)
                if rows[i + 2] else None
                for job_id, i in zip(job_ids, range(0, len(rows), 4), strict=True)]

    async def still_armed(self, shard: ShardKeys, job_ids: Sequence[str]) -> list[bool]:
        """Whether each job's entry still exists (not deleted or suspended), one round trip.

        All True while the `intact` marker is gone: an entry missing from a Redis that lost its
        data says nothing of its job (the rebuild re-arms it), and a run held for its slot then
        dropped as its job's was lost for good, PostgreSQL having recorded its slot fired. The
        marker is read after the entries: a rebuild marks it only after re-arming them.
        """
        if not job_ids:
            return []
        armed = await self._scripted(self._still_armed, [([shard.entry(job_id) for job_id in job_ids], [])])
        flags = [bool(flag) for flag in cast(list[int], armed[0])]
        if all(flags) or await self.is_intact():
            return flags
        return [True] * len(flags)

    async def apply_plans(self, shard: ShardKeys, plans: Sequence[PlanCommand], now_ms: int,
                          limits: QueueLimits | None = None) -> list[list[str] | None]:
        """Apply the plans of one shard in one script call. Each result is None when the plan was
        applied and every planned slot fired, else APPLY_PLANS' list of outcomes."""
        if not plans:
            return []
        limits = limits or QueueLimits()
        groups: dict[tuple[Any, ...], list[int]] = {}
        for index, plan in enumerate(plans):
            groups.setdefault(plan.shared_part(), []).append(index)
        entry, active, buffer = shard.entry(""), shard.active(""), shard.buffer("")
        keys = [shard.due, shard.queue, shard.cancel, shard.buffered]
        args: list[Any] = [now_ms, limits.max_queue_length, limits.min_wait_ms, CONSUMER_GROUP]
        order: list[int] = []
        for indexes in groups.values():
            args += plans[indexes[0]].group_args()
            args.append(len(indexes))
            for index in indexes:
                job_id = plans[index].job_id
                keys += (entry + job_id, active + job_id, buffer + job_id)
                args += (job_id, plans[index].version)
            order += indexes
        results = cast(list[Any], await self._apply(keys=keys, args=args))
        outcomes: list[list[str] | None] = [None] * len(plans)
        for index, result in zip(order, results, strict=True):
            if result != 1:
                outcomes[index] = cast(list[str], result)
        return outcomes

    async def release_buffered(self, shard: ShardKeys, now_ms: int, limit: int) -> int:
        """Queue the next buffered run of each job (up to `limit`) whose running one has ended."""
        job_ids = [str(job_id) for job_id in await self.redis.zrange(shard.buffered, 0, limit - 1)]
        calls = [([shard.buffer(job_id), shard.active(job_id), shard.queue, shard.buffered, shard.entry(job_id)],
                  [job_id, now_ms]) for job_id in job_ids]
        return sum(int(n) for n in await self._scripted(self._release_buffered, calls)) if calls else 0

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
        """New runs for this consumer. A consumer group lost with Redis's data is recreated here,
        by whichever worker notices first, instead of failing every read until a restart."""
        try:
            raw = await self.redis.xreadgroup(CONSUMER_GROUP, consumer, {shard.queue: ">"}, count=count,
                                              block=block_ms)
        except ResponseError as exc:
            if not _no_group(exc):
                raise
            await self._ensure_group(shard)
            return []
        response = cast(list[tuple[str, list[tuple[str, dict[str, str]]]]] | None, raw)
        deliveries: list[Delivery] = []
        for _stream, messages in response or []:
            deliveries.extend(_delivery(shard, message_id, fields, False) for message_id, fields in messages)
        return await self._runnable(deliveries)

    async def _runnable(self, deliveries: list[Delivery]) -> list[Delivery]:
        """The deliveries a worker can run; the malformed ones go to the dead letters."""
        for delivery in deliveries:
            if delivery.message is None:
                await self.dead_letter(delivery.shard, delivery.message_id, delivery.error, delivery.raw)
        return [delivery for delivery in deliveries if delivery.message is not None]

    async def dead_letter(self, shard: ShardKeys, message_id: str, reason: str, fields: dict[str, str]) -> None:
        """Take a message out of the queue for good, keeping it and why in `shard.dead`."""
        flat = [part for key, value in fields.items() for part in (key, value)]
        await self._dead_letter(
            keys=[shard.queue, shard.dead],
            args=[CONSUMER_GROUP, message_id, reason, DEAD_LETTERS_KEPT, *flat],
        )

    async def dead_letters(self, shard: ShardKeys, count: int = 100) -> list[tuple[str, dict[str, str]]]:
        """The newest dead letters, newest first."""
        return cast(list[tuple[str, dict[str, str]]], await self.redis.xrevrange(shard.dead, count=count))

    async def dead_letter_count(self, shard: ShardKeys) -> int:
        return int(await self.redis.xlen(shard.dead))

    async def dead_letter_shards(self) -> list[ShardKeys]:
        """Every shard holding dead letters, found by their keys: a reader such as the CLI need
        not know the deployment's shard count."""
        found = set(self.keys.all_shards())
        async for key in self.redis.scan_iter(match=self.keys.dead_pattern(_glob_escape), count=1000, _type="stream"):
            shard = self.keys.shard_of_dead_key(key)
            if shard is not None:
                found.add(shard)
        return sorted(found, key=lambda shard: shard.shard)

    async def all_dead_letters(self, limit: int) -> tuple[list[DeadLetter], int]:
        """The newest `limit` dead letters of every shard, newest first, and how many there are."""
        letters: list[DeadLetter] = []
        total = 0
        for shard in await self.dead_letter_shards():
            total += await self.dead_letter_count(shard)
            newest = await self.dead_letters(shard, limit)
            letters += [DeadLetter.of(shard, dead_id, fields) for dead_id, fields in newest]
        letters.sort(key=lambda letter: letter.died_ms, reverse=True)
        return letters[:limit], total

    async def _bury_poison(self, shard: ShardKeys, min_idle_ms: int, count: int) -> None:
        """Dead-letter the abandoned runs delivered MAX_DELIVERIES times already."""
        pending = cast(list[dict[str, Any]], await self.redis.xpending_range(
            shard.queue, CONSUMER_GROUP, min="-", max="+", count=count, idle=min_idle_ms))
        for entry in pending:
            if int(entry["times_delivered"]) < MAX_DELIVERIES:
                continue
            message_id = str(entry["message_id"])
            body = cast(list[tuple[str, dict[str, str]]], await self.redis.xrange(shard.queue, message_id, message_id))
            reason = (f"delivered {entry['times_delivered']} times and never finished: every worker that took it"
                      f" died or failed to record it (last: {entry['consumer']})")
            await self.dead_letter(shard, message_id, reason, body[0][1] if body else {})

    async def reclaim(self, shard: ShardKeys, consumer: str, min_idle_ms: int, count: int) -> list[Delivery]:
        """Take over runs whose worker stopped heart-beating (XAUTOCLAIM)."""
        try:
            await self._bury_poison(shard, min_idle_ms, count)
            response = await self.redis.xautoclaim(
                shard.queue, CONSUMER_GROUP, consumer, min_idle_time=min_idle_ms, start_id="0-0", count=count
            )
        except ResponseError as exc:
            if not _no_group(exc):
                raise
            await self._ensure_group(shard)
            return []
        messages = cast(list[tuple[str, dict[str, str] | None]], response[1])
        return await self._runnable(
            [_delivery(shard, message_id, fields, True) for message_id, fields in messages if fields])

    async def touch(self, shard: ShardKeys, consumer: str, message_ids: Sequence[str]) -> None:
        """Reset idle time on runs still in progress so nobody reclaims them.

        After a data loss the group is new and knows none of them: nobody can reclaim them either.
        """
        if not message_ids:
            return
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for start in range(0, len(message_ids), 1000):
                    pipe.xclaim(shard.queue, CONSUMER_GROUP, consumer, min_idle_time=0,
                                message_ids=list(message_ids[start:start + 1000]), justid=True)
                await pipe.execute()
        except ResponseError as exc:
            if not _no_group(exc):
                raise
            await self._ensure_group(shard)

    async def ack(self, deliveries: Iterable[Delivery], finished_runs: Iterable[tuple[str, str]]) -> None:
        """Acknowledge and delete messages, and drop the finished runs' concurrency claims and
        stop requests.

        Acknowledged messages are deleted right away (XACK + XDEL): the stream holds only runs
        not yet finished, so its length is the queue depth and it never grows without bound.
        One script call per shard, whatever the batch size: a command per message was a
        per-run cost on both sides of the socket.
        """
        # A defaultdict builds a shard's lists once; setdefault's default would be built per run.
        by_shard: defaultdict[ShardKeys, tuple[list[str], list[str], list[str]]] = defaultdict(lambda: ([], [], []))
        for delivery in deliveries:
            by_shard[delivery.shard][0].append(delivery.message_id)
        for job_id, run_id in finished_runs:
            shard = self.keys.for_job(job_id)
            _, active_keys, run_ids = by_shard[shard]
            active_keys.append(shard.active(job_id))
            run_ids.append(run_id)
        if not by_shard:
            return
        await self._scripted(self._ack, [
            ([shard.queue, shard.cancel, *active_keys], [CONSUMER_GROUP, len(message_ids), *message_ids, *run_ids])
            for shard, (message_ids, active_keys, run_ids) in by_shard.items()
        ])

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

    async def enqueue_once(self, messages: Sequence[RunMessage], active_until_ms: int) -> list[bool]:
        """Queue runs named ahead (a backfill's slots), each once per run id whoever asks how
        often, as `enqueue_manual` does; which were newly queued, in order."""
        calls = [
            ([shard.manual, shard.queue, shard.active(m.job_id)],
             [m.run_id, m.enqueued_ms, json.dumps(m.to_fields()), m.run_id, active_until_ms])
            for m in messages for shard in (self.keys.for_job(m.job_id),)
        ]
        return [bool(added) for added in await self._scripted(self._manual, calls)]

    async def claim_prunes(self, job_ids: Sequence[str], now_ms: int, period_ms: int) -> list[str]:
        """Of these jobs, the ones whose run history no worker claimed to prune in the last
        `period_ms`, now claimed by the caller: every worker records runs of every frequent job,
        and each pruned all of them every pass, N workers N times."""
        if not job_ids:
            return []
        args = [now_ms, period_ms, PRUNE_CLAIMS_KEPT_MS, *job_ids]
        [claimed] = await self._scripted(self._claim_prunes, [([self.keys.pruned], args)])
        return [str(job_id) for job_id in claimed]

    async def forget_manual_requests(self, older_than_ms: int) -> int:
        """Drop run-now dedupe records old enough that no retry of the request can still come."""
        forgotten = 0
        for shard in self.keys.all_shards():
            # 1,000 a round trip: at the default of 10, a day of run-now requests took thousands.
            stale = [request async for request, at in self.redis.hscan_iter(shard.manual, count=1000)
                     if int(at) < older_than_ms]
            if stale:
                forgotten += int(await self.redis.hdel(shard.manual, *stale))
        return forgotten

    async def extend_active(self, runs: Iterable[tuple[str, str]], until_ms: int) -> None:
        """Keep the concurrency claims of these (job id, run id) runs until `until_ms`; a claim
        already released (its run's end acknowledged) is not made again. One call per shard."""
        by_shard: dict[ShardKeys, tuple[list[str], list[Any]]] = {}
        for job_id, run_id in runs:
            shard = self.keys.for_job(job_id)
            active_keys, args = by_shard.setdefault(shard, ([], [until_ms]))
            active_keys.append(shard.active(job_id))
            args.append(run_id)
        if by_shard:
            await self._scripted(self._extend_claims, list(by_shard.values()))

    async def announce_active(self, runs: Iterable[tuple[str, str]], until_ms: int) -> None:
        """Claim these (job id, run id) runs' concurrency slots until `until_ms`, whether or not
        Redis still holds their claims: after a data loss, the rebuild reads them as the slots
        workers hold (sundial.core.recovery)."""
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
            pipe.xinfo_groups(shard.queue)
            length, pending, delayed, groups = await pipe.execute(raise_on_error=False)
        for reply in (pending, groups):
            if isinstance(reply, ResponseError) and not _no_group(reply) and "no such key" not in str(reply).lower():
                raise reply
        if isinstance(pending, ResponseError) or isinstance(groups, ResponseError):
            # No stream or group yet (no worker started, or Redis lost its data): the next read recreates it.
            pending, groups = {}, []
        oldest: int | None = None
        if pending and pending.get("min"):
            oldest = now_ms - int(str(pending["min"]).split("-")[0])
        group = next((g for g in groups if g.get("name") == CONSUMER_GROUP), None)
        lag, oldest_waiting = 0, None
        if group is not None:
            lag = int(group.get("lag") or 0)
            first = cast(list[tuple[str, Any]], await self.redis.xrange(
                shard.queue, min=f"({group['last-delivered-id']}", count=1))
            if first:
                oldest_waiting = max(now_ms - int(first[0][0].split("-")[0]), 0)
        return QueueStats(int(length), int(pending.get("pending", 0)), int(delayed), oldest, lag, oldest_waiting)

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


async def _on_cluster(script: AsyncScript, keys: list[str], args: list[Any]) -> Any:
    """One script call on a Redis Cluster, sent again if its connection was closed under it
    (CLUSTER_SCRIPT_ATTEMPTS)."""
    for attempt in range(1, CLUSTER_SCRIPT_ATTEMPTS + 1):
        try:
            return await script(keys=keys, args=args)
        except (AttributeError, TypeError) as exc:
            if not closed_under_us(exc) or attempt == CLUSTER_SCRIPT_ATTEMPTS:
                raise
            await asyncio.sleep(CLUSTER_RETRY_DELAY_SECONDS * attempt)
    raise AssertionError("unreachable")


def closed_under_us(exc: BaseException) -> bool:
    """Whether `exc` is what redis-py's asyncio connection raises when another task closed it
    mid-command ('NoneType' object has no attribute 'writelines' / is not callable), rather
    than a bug of ours."""
    return isinstance(exc, AttributeError | TypeError) and "'NoneType' object" in str(exc)


# Every Redis call gives up within seconds when Redis stops answering (a hung primary, a
# partition), set here rather than left to redis-py's defaults (no socket timeout before
# redis-py 6). A timed-out call is not sent again by a single-node or Sentinel client (a
# command may have run; the caller's loop tries again). The cluster client sends a call that
# failed on a connection or timed out again `cluster_error_retry_attempts` times (10 in 8.1),
# re-learning the cluster's layout in between: about a minute against a hung primary, so fewer.
# Longer than any BLOCK Sundial asks for (0.5 s).
REDIS_SOCKET_TIMEOUT_SECONDS = 5.0
REDIS_CONNECT_TIMEOUT_SECONDS = 5.0
CLUSTER_COMMAND_RETRIES = 3


SENTINEL_SCHEME = "redis+sentinel"
CLUSTER_SCHEME = "redis+cluster"
DEFAULT_SENTINEL_PORT = 26379


def redis_from_url(url: str, **options: Any) -> Redis:
    """A client for `redis://`, `rediss://`, `unix://` or `redis+sentinel://` URLs.

    `redis+sentinel://[:password@]host:port[,host:port...]/service[/db][?sentinel_password=...]`
    asks the sentinels for the service's primary, and asks again whenever a connection fails
    or the server it reaches turned replica (a failover), so every process follows the new
    primary by itself. The password is the data nodes'; the sentinels' is `sentinel_password`.
    """
    # Bytes that are not UTF-8 (only a foreign writer puts them there) read as U+FFFD rather
    # than failing the whole read, so one bad message cannot stop a consumer.
    options = {"decode_responses": True, "encoding_errors": "replace", "socket_timeout": REDIS_SOCKET_TIMEOUT_SECONDS,
               "socket_connect_timeout": REDIS_CONNECT_TIMEOUT_SECONDS, **options}
    parsed = urlsplit(url)
    if parsed.scheme == CLUSTER_SCHEME:
        return cast(Redis, cluster_from_url(url, **options))
    if parsed.scheme != SENTINEL_SCHEME:
        pool = ConnectionPool.from_url(url, **options)
        pool.connection_class = PACKED.get(pool.connection_class, pool.connection_class)
        return Redis.from_pool(pool)  # the client owns the pool: closing it closes the connections
    sentinels, service, db = parse_sentinel_url(url)
    query = parse_qs(parsed.query)
    sentinel_options = {key: value for key, value in options.items() if key.startswith("socket_")}
    if "sentinel_password" in query:
        sentinel_options["password"] = query["sentinel_password"][0]
    if parsed.password:
        options["password"] = unquote(parsed.password)
    if parsed.username:
        options["username"] = unquote(parsed.username)
    sentinel = Sentinel(sentinels, sentinel_kwargs=sentinel_options, **options)  # type: ignore[no-untyped-call]
    primary = sentinel.master_for(service, redis_class=Redis, db=db, connection_class=PackedSentinelConnection)
    return cast(Redis, primary)


def cluster_from_url(url: str, **options: Any) -> RedisCluster:
    """`redis+cluster://[:password@]host:port[,host:port...]`: any reachable nodes; the client
    learns the rest of the cluster, and its slots, from them."""
    parsed = urlsplit(url)
    nodes = [ClusterNode(host, port) for host, port in _addresses(parsed.netloc, 6379)]
    if parsed.password:
        options["password"] = unquote(parsed.password)
    if parsed.username:
        options["username"] = unquote(parsed.username)
    options.setdefault("retry", Retry(ExponentialWithJitterBackoff(base=0.05, cap=1.0), CLUSTER_COMMAND_RETRIES))
    return RedisCluster(startup_nodes=nodes, **options)


def _addresses(netloc: str, default_port: int) -> list[tuple[str, int]]:
    addresses = []
    for address in netloc.rsplit("@", 1)[-1].split(","):
        host, _, port = address.rpartition(":") if ":" in address else (address, "", "")
        addresses.append((host.strip("[]") or "localhost", int(port) if port else default_port))
    return addresses


def parse_sentinel_url(url: str) -> tuple[list[tuple[str, int]], str, int]:
    """(sentinel addresses, service name, database) of a `redis+sentinel://` URL."""
    parsed = urlsplit(url)
    sentinels = _addresses(parsed.netloc, DEFAULT_SENTINEL_PORT)
    parts = [part for part in parsed.path.split("/") if part]
    if not parts:
        raise ValueError(f"{SENTINEL_SCHEME} URL names no service: expected {SENTINEL_SCHEME}://host:port/service")
    db = int(parts[1]) if len(parts) > 1 else 0
    return sentinels, unquote(parts[0]), db


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
class QueueLimits:
    """How far the queue may fall behind before slots are dropped with a record (the overload policy).

    `max_queue_length`: the ticker records new slots missed while the queue stream holds this
    many messages (bounds Redis memory: a message is about 1 KB). `min_wait_ms`: a scheduled
    run may wait this long for a worker, or until its job's next slot if that is later, before
    it is recorded missed instead of started; a job's startingDeadlineSeconds replaces both.
    """

    max_queue_length: int = 200_000
    min_wait_ms: int = 5_000


@dataclass(slots=True)
class PlanCommand:
    """A ticker's decision for one entry, checked and applied atomically by APPLY_PLANS (not
    frozen: see DueEntry)."""

    job_id: str
    version: str
    expected_due_ms: int
    next_due_ms: int
    fires: tuple[tuple[int, str], ...]
    missed: int = 0
    starting_deadline_ms: int | None = None
    # When each fire starts (its slot plus jitter), in the order of `fires`; empty: at the slot.
    starts_ms: tuple[int, ...] = ()

    def start_ms(self, index: int) -> int:
        return self.starts_ms[index] if self.starts_ms else self.fires[index][0]

    def first(self, kept: int) -> PlanCommand:
        """This plan with only its first `kept` fires: the entry is next due at the first left out."""
        if kept >= len(self.fires):
            return self
        return replace(self, next_due_ms=self.start_ms(kept), fires=self.fires[:kept], starts_ms=self.starts_ms[:kept])

    def shared_part(self) -> tuple[Any, ...]:
        """What entries must agree on to be applied as one group of APPLY_PLANS."""
        return self.expected_due_ms, self.next_due_ms, self.starting_deadline_ms, self.fires, self.starts_ms

    def group_args(self) -> list[Any]:
        """APPLY_PLANS' arguments for a group of entries with this plan, before its entries."""
        args: list[Any] = [self.expected_due_ms, self.next_due_ms,
                           "" if self.starting_deadline_ms is None else self.starting_deadline_ms, len(self.fires)]
        for index, (slot, trigger) in enumerate(self.fires):
            args += (slot, trigger, self.start_ms(index))
        return args


def _entry(job_id: str, row: Sequence[str | None]) -> Entry | None:
    template, version, next_due, plan = row
    if template is None or version is None or next_due is None or plan is None:
        return None
    return Entry(job_id, template, version, int(next_due), plan)


def _delivery(shard: ShardKeys, message_id: str, fields: dict[str, str], redelivered: bool) -> Delivery:
    try:
        message: RunMessage | None = RunMessage.from_fields(fields)
        error = ""
    except Exception as exc:
        # Whatever a foreign writer put there (deeply nested JSON raises RecursionError): a
        # malformed message must not kill the consumer; it goes to the dead letters.
        message, error = None, f"malformed run message: {type(exc).__name__}: {str(exc)[:500]}"
    return Delivery(shard, message_id, message, fields, redelivered, error)  # redis-py's dict is ours alone


def _no_group(exc: ResponseError) -> bool:
    return str(exc).startswith("NOGROUP")


def _glob_escape(text: str) -> str:
    return "".join(f"\\{ch}" if ch in "*?[]\\" else ch for ch in text)

