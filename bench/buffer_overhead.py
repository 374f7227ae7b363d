"""What BufferOne/BufferAll cost the firing hot path: Allow and BufferOne side by side.

A buffer adds one round trip per shard per ticker pass (`release_buffered`, a ZRANGE of the
shard's jobs with waiting runs, empty unless something waits) for every job, and to
`APPLY_PLAN` one branch (an LLEN when a run of the job is live). This bench arms `--jobs`
every-second no-op jobs with `concurrencyPolicy: Allow` in one key space and as many with
`BufferOne` in another, and runs one ticker-only worker process per key space for `--seconds`,
in turns (Allow, BufferOne, Allow, BufferOne ...: the shared machine's load drifts). A
stand-in for the consumers, in this process, takes each fired run off the queue and ends it
(acknowledges it and drops its concurrency claim) every 100 ms, so every slot of a BufferOne
job finds no run live and fires, as in a deployment whose runs end before the next slot.

Printed per policy: slots fired, the ticker process's CPU per slot fired (user + system, from
/proc), and lateness (the Redis server time in the message id minus the slot). Then the cost of
one `release_buffered` call on an empty shard from this process (wall and client CPU), the
round trip each pass pays whatever the policy. Settings and the load average beside them.

    python -m bench.buffer_overhead [--jobs 1000] [--seconds 20] [--rounds 2] [--shards 1]
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

from bench.common import arm_bulk, load_average, new_keyspace, percentile, process_cpu_seconds, start_worker
from sundial.core.broker import Broker
from sundial.core.keys import Keyspace
from sundial.core.migrate import migrate
from sundial.core.store import Store
from sundial.devstack.services import Services

POLICIES = ("Allow", "BufferOne")
# Slots before the ticker is up measure process start-up, not firing.
WARM_UP_SECONDS = 4.0


@dataclass
class Figures:
    fired: int = 0
    cpu_seconds: float = 0.0
    lateness_ms: list[float] = field(default_factory=list)

    def line(self, policy: str) -> str:
        per_slot = self.cpu_seconds / self.fired * 1e6 if self.fired else float("nan")
        return (f"{policy:<10} fired={self.fired:>7} ticker_cpu_per_slot_us={per_slot:>7.1f} "
                f"lateness_ms p50={percentile(self.lateness_ms, .5):>6.1f} "
                f"p99={percentile(self.lateness_ms, .99):>7.1f} max={max(self.lateness_ms, default=0):>7.1f}")


async def end_runs(broker: Broker, since: dict[int, str], warm_from_ms: int, figures: Figures | None) -> int:
    """Take the newly fired runs off each shard's queue and end them, as consumers would."""
    ended = 0
    for shard in broker.keys.all_shards():
        read = cast(list[tuple[str, dict[str, str]]],
                    await broker.redis.xrange(shard.queue, min=since.get(shard.shard, "-"), count=10_000))
        messages = [(mid, fields) for mid, fields in read if mid != since.get(shard.shard)]
        if not messages:
            continue
        since[shard.shard] = messages[-1][0]
        ended += len(messages)
        async with broker.redis.pipeline(transaction=False) as pipe:
            for message_id, fields in messages:
                job_id = fields["run"].split(":", 1)[0]
                pipe.hdel(shard.active(job_id), fields["run"])
                pipe.xdel(shard.queue, message_id)
            await pipe.execute()
        if figures is None:
            continue
        for message_id, fields in messages:
            slot = int(fields["slot"])
            if slot >= warm_from_ms:
                figures.fired += 1
                figures.lateness_ms.append(int(message_id.split("-")[0]) - slot)
    return ended


async def one_turn(services: Services, policy: str, jobs: int, shards: int, seconds: float, logs: Path) -> Figures:
    """One policy's turn: its jobs armed afresh in a key space of their own (so nothing is
    owed from the turns before), a ticker process started on them, its figures."""
    keyspace = Keyspace(new_keyspace().prefix, shards)
    broker = Broker.from_url(services.redis.url, keyspace)
    await broker.ensure_groups()
    store = await Store.open(services.postgres.dsn, max_size=4)
    await arm_bulk(broker, store, ["* * * * * *"] * jobs, datetime.now(UTC), concurrencyPolicy=policy,
                   missedRunPolicy="RunOnce")
    await store.close()
    env = {"SUNDIAL_REDIS_SHARDS": str(shards)}
    # Both key spaces share one PostgreSQL: a rebuild would arm the other policy's jobs here too.
    await broker.mark_intact(int(time.time() * 1000))
    since: dict[int, str] = {}
    ticker = start_worker(services.postgres.dsn, services.redis.url, keyspace, "ticker", logs / "ticker.log",
                          SUNDIAL_CONSUMER_ENABLED="false", **env)
    try:
        # Process start-up on a loaded machine takes seconds; measure from a while after the first fire.
        for _ in range(1200):
            if await end_runs(broker, since, 0, None):
                break
            await asyncio.sleep(0.1)
        warm_from_ms = int((time.time() + WARM_UP_SECONDS) * 1000)
        while time.time() * 1000 < warm_from_ms:
            await end_runs(broker, since, warm_from_ms, None)
            await asyncio.sleep(0.1)
        figures = Figures()
        cpu_before = process_cpu_seconds(ticker.pid)
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            await end_runs(broker, since, warm_from_ms, figures)
            await asyncio.sleep(0.1)
        figures.cpu_seconds = process_cpu_seconds(ticker.pid) - cpu_before
        if not figures.fired:
            print((logs / "ticker.log").read_text()[-3000:])
    finally:
        ticker.send_signal(signal.SIGTERM)
        try:
            ticker.wait(120)
        except subprocess.TimeoutExpired:
            ticker.kill()
            ticker.wait()
    await end_runs(broker, since, warm_from_ms, None)
    await broker.close()
    return figures


async def release_pass_cost(broker: Broker, calls: int = 2000) -> tuple[float, float]:
    """Wall and client CPU microseconds of one `release_buffered` call on a shard with nothing waiting."""
    shard = broker.keys.all_shards()[0]
    await broker.release_buffered(shard, 0, 500)
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(calls):
        await broker.release_buffered(shard, 0, 500)
    return ((time.perf_counter() - wall) / calls * 1e6, (time.process_time() - cpu) / calls * 1e6)


async def measure(services: Services, jobs: int, seconds: float, rounds: int, shards: int, logs: Path
                  ) -> dict[str, Figures]:
    totals = {policy: Figures() for policy in POLICIES}
    for turn in range(rounds):
        for policy in POLICIES:
            figures = await one_turn(services, policy, jobs, shards, seconds, logs)
            print(f"  round {turn + 1} {figures.line(policy)}  ({load_average()})", flush=True)
            total = totals[policy]
            total.fired += figures.fired
            total.cpu_seconds += figures.cpu_seconds
            total.lateness_ms += figures.lateness_ms
    return totals


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--shards", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sundial-bench-") as tmp, Services(Path(tmp)) as services:
        migrate(services.postgres.dsn)
        print(f"buffer overhead: {args.jobs} every-second no-op jobs per policy, 1 ticker-only worker process,"
              f" {args.shards} shard(s), {args.seconds:g} s x {args.rounds} rounds per policy, in turns;"
              f" ticker defaults (batch 500, look-ahead 1 s, max sleep 0.25 s); Redis without persistence,"
              f" hz 10; PostgreSQL fsync off;"
              f" runs ended by this process every 100 ms; {load_average()}", flush=True)
        totals = await measure(services, args.jobs, args.seconds, args.rounds, args.shards, Path(tmp))
        for policy, figures in totals.items():
            print(figures.line(policy))
        broker = Broker.from_url(services.redis.url, Keyspace(new_keyspace().prefix, 1))
        wall_us, cpu_us = await release_pass_cost(broker)
        await broker.close()
        print(f"release_buffered on an empty shard (the per-pass round trip): wall {wall_us:.0f} us,"
              f" client CPU {cpu_us:.0f} us per call  ({load_average()})")


if __name__ == "__main__":
    asyncio.run(main())
