"""Every Redis key Sundial uses, and nothing else.

Keys of one shard share a hash tag, `{<prefix>:<shard>}`, so each Lua script touches a single
Redis Cluster slot. A job lives in exactly one shard (crc32 of its id); with `shards > 1` the
due indexes and queues spread over slots, which is how a hot slot is split. The shard count
is fixed for a deployment: changing it means re-arming every entry (the operator's resync does).

Layout for shard `s` (prefix `sundial`):

    {sundial:s}:entry:<job_id>   hash  spec template, version, next_due
    {sundial:s}:due              zset  job_id -> ms when a ticker should look at the entry
    {sundial:s}:queue            stream of runs, consumer group `workers`
    {sundial:s}:delayed          zset  retry id -> ms when the retry is due
    {sundial:s}:delayed:runs     hash  retry id -> run message (JSON)
    {sundial:s}:active:<job_id>  hash  run_id -> ms the in-flight claim expires
    {sundial:s}:cancel           hash  run_id -> why it must stop (concurrencyPolicy Replace);
                                       written by the ticker, deleted when the run is acknowledged
    {sundial:s}:manual           hash  manual run id -> ms it was requested (dedupe)
    {sundial:s}:dead             stream of queue messages no worker can run (dead letters), with why
    sundial:workers              hash  worker id -> heartbeat JSON (targets, seen at)
    sundial:intact               string set by a worker's rebuild once Redis holds every entry
                                        PostgreSQL says it should (never by arming); gone means Redis
                                        lost its data (FLUSHALL, a restart without persistence,
                                        failover to an empty replica) or was never rebuilt
    sundial:rebuilding           string which process is re-arming entries after a loss (expires)
    sundial:pruned               zset   job_id -> ms a worker last claimed its run history's pruning
"""

from __future__ import annotations

import uuid
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

CONSUMER_GROUP = "workers"


@dataclass(frozen=True)
class ShardKeys:
    """One shard's keys. Its fixed keys are built once per object: the workers ask for them per
    run (a queue message's key, an ack's stream), and `Keyspace.for_job` hands out one object
    per shard."""

    prefix: str
    shard: int

    @cached_property
    def tag(self) -> str:
        return f"{{{self.prefix}:{self.shard}}}"

    def entry(self, job_id: str) -> str:
        return f"{self.tag}:entry:{job_id}"

    def entry_prefix(self) -> str:
        return f"{self.tag}:entry:"

    @cached_property
    def due(self) -> str:
        return f"{self.tag}:due"

    @cached_property
    def queue(self) -> str:
        return f"{self.tag}:queue"

    @cached_property
    def delayed(self) -> str:
        return f"{self.tag}:delayed"

    @cached_property
    def delayed_runs(self) -> str:
        return f"{self.tag}:delayed:runs"

    def active(self, job_id: str) -> str:
        return f"{self.tag}:active:{job_id}"

    @cached_property
    def cancel(self) -> str:
        return f"{self.tag}:cancel"

    def buffer(self, job_id: str) -> str:
        """Runs of a BufferOne/BufferAll job waiting for its running one to end, oldest first."""
        return f"{self.tag}:buffer:{job_id}"

    @cached_property
    def buffered(self) -> str:
        """Jobs with runs in their buffer, to release when the running one ends."""
        return f"{self.tag}:buffered"

    @cached_property
    def manual(self) -> str:
        return f"{self.tag}:manual"

    @cached_property
    def dead(self) -> str:
        return f"{self.tag}:dead"


@dataclass(frozen=True)
class Keyspace:
    prefix: str = "sundial"
    shards: int = 1

    def __post_init__(self) -> None:
        if self.shards < 1:
            raise ValueError("shards must be at least 1")
        if not self.prefix or any(ch in self.prefix for ch in "{}: "):
            raise ValueError(f"invalid Redis key prefix {self.prefix!r}")

    def shard_of(self, job_id: str) -> int:
        return zlib.crc32(job_id.encode()) % self.shards if self.shards > 1 else 0

    def for_job(self, job_id: str) -> ShardKeys:
        return self._shard_keys[self.shard_of(job_id)]

    def all_shards(self) -> list[ShardKeys]:
        return list(self._shard_keys)

    @cached_property
    def _shard_keys(self) -> tuple[ShardKeys, ...]:
        return tuple(ShardKeys(self.prefix, shard) for shard in range(self.shards))

    @property
    def workers(self) -> str:
        return f"{self.prefix}:workers"

    @property
    def intact(self) -> str:
        return f"{self.prefix}:intact"

    @property
    def rebuilding(self) -> str:
        return f"{self.prefix}:rebuilding"

    @property
    def pruned(self) -> str:
        return f"{self.prefix}:pruned"

    def dead_pattern(self, escape: Callable[[str], str]) -> str:
        """A SCAN pattern for every shard's dead-letter stream; `escape` quotes glob characters."""
        return f"{escape('{' + self.prefix + ':')}*{escape('}:dead')}"

    def shard_of_dead_key(self, key: str) -> ShardKeys | None:
        """The shard whose dead-letter stream `key` is, or None if it is not one of ours."""
        head, tail = "{" + self.prefix + ":", "}:dead"
        number = key[len(head):-len(tail)] if key.startswith(head) and key.endswith(tail) else ""
        return ShardKeys(self.prefix, int(number)) if number.isdigit() else None


def run_id_for_slot(job_id: str, slot_ms: int) -> str:
    """Deterministic: two fires of the same (job, slot) can only ever be the same run."""
    return f"{job_id}:{slot_ms}"


def slot_of_run_id(run_id: str) -> int | None:
    """The slot (ms) a scheduled run's id names; None for a manual run's id."""
    _, _, tail = run_id.rpartition(":")
    return int(tail) if tail.isdigit() and ":manual:" not in run_id else None


def run_id_for_manual(job_id: str, request: str) -> str:
    return f"{job_id}:manual:{request}"


def job_id_of_run_id(run_id: str) -> str | None:
    """The job a run id (of either kind above) belongs to; None when it names no job's UUID."""
    head, sep, _ = run_id.partition(":")
    try:
        return str(uuid.UUID(head)) if sep else None
    except ValueError:
        return None
