"""Redis Cluster scale-out: schedules fired per second with 3 and with 6 primaries.

For each cluster size, in one run: a fresh `redis-server --cluster-enabled yes` cluster, a key
space of `--shards` shards (spread over the primaries' slots), `--jobs` every-second no-op jobs
armed through the operator's bulk path, and `--tickers` worker processes with only their ticker
on (no consumer: the figure is firing, not running). After a warm-up the queue streams' growth
over `--seconds` is the fire rate; beside it the CPU seconds per second the tickers and each
Redis primary used, and the load average, since on a shared machine those say more than the
rate does. A rate at the offered load (`--jobs` per second) means firing kept up.

What it can show on a small machine: a cluster spreads Redis's share of the work over more
primaries, so each primary's CPU falls as primaries are added. The rate itself only rises with
more primaries when Redis is the bottleneck; with tickers in Python on the same few cores, it
rarely is (see docs/performance.md), and the tickers' CPU is then the ceiling.

    python -m bench.cluster_scaleout [--jobs 5000] [--shards 16] [--tickers 2] [--seconds 15]
                                     [--primaries 3,6]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from redis.asyncio.cluster import RedisCluster

from bench.common import arm_bulk, load_average, new_keyspace, process_cpu_seconds, start_worker
from sundial.core.broker import Broker, redis_from_url
from sundial.core.keys import Keyspace
from sundial.core.migrate import migrate
from sundial.core.store import Store
from sundial.devstack.services import Postgres, RedisClusterSet

WARM_UP = 4.0


@dataclass(frozen=True)
class Figure:
    primaries: int
    shards_per_primary: str
    fired_per_second: float
    ticker_cpu: float  # CPU seconds per second, all tickers together
    redis_cpu: list[float]  # per primary
    load: str

    def line(self, offered: int) -> str:
        redis = ", ".join(f"{cpu:.2f}" for cpu in self.redis_cpu)
        return (f"| {self.primaries} | {self.shards_per_primary} | {self.fired_per_second:,.0f} of {offered:,} |"
                f" {self.ticker_cpu:.2f} | {redis} (max {max(self.redis_cpu):.2f}) | {self.load} |")


async def queued(broker: Broker) -> int:
    return sum([int(await broker.redis.xlen(shard.queue)) for shard in broker.keys.all_shards()])


async def measure(primaries: int, args: argparse.Namespace, database_url: str, root: Path) -> Figure:
    cluster = RedisClusterSet(root / f"cluster{primaries}", primaries=primaries).start()
    keyspace = Keyspace(new_keyspace().prefix, args.shards)
    client = redis_from_url(cluster.url)
    assert isinstance(client, RedisCluster)
    broker = Broker(client, keyspace)
    store = await Store.open(database_url, max_size=4)
    tickers: list[subprocess.Popen[bytes]] = []
    job_ids: list[str] = []
    try:
        await client.initialize()  # learns the slot map
        owners = [client.get_node_from_key(shard.due).name for shard in keyspace.all_shards()]
        spread = sorted(owners.count(node) for node in set(owners))
        await broker.ensure_groups()
        job_ids = await arm_bulk(broker, store, ["* * * * * *"] * args.jobs, datetime.now(UTC))
        tickers = [start_worker(database_url, cluster.url, keyspace, f"t{index}", root / f"t{primaries}-{index}.log",
                                SUNDIAL_CONSUMER_ENABLED="false", SUNDIAL_REDIS_SHARDS=str(args.shards),
                                SUNDIAL_QUEUE_MAX_LENGTH="10000000")
                   for index in range(args.tickers)]
        await asyncio.sleep(WARM_UP)
        redis_pids = [node.process.pid for node in cluster.nodes if node.process is not None]
        before_cpu = ([process_cpu_seconds(t.pid) for t in tickers], [process_cpu_seconds(p) for p in redis_pids])
        before, started = await queued(broker), time.monotonic()
        await asyncio.sleep(args.seconds)
        after, elapsed = await queued(broker), time.monotonic() - started
        ticker_cpu = sum(process_cpu_seconds(t.pid) for t in tickers) - sum(before_cpu[0])
        redis_cpu = [(process_cpu_seconds(pid) - was) / elapsed for pid, was in zip(redis_pids, before_cpu[1],
                                                                                    strict=True)]
        return Figure(primaries, "/".join(map(str, spread)), (after - before) / elapsed, ticker_cpu / elapsed,
                      redis_cpu, load_average())
    finally:
        for ticker in tickers:
            ticker.send_signal(signal.SIGTERM)
        for ticker in tickers:
            try:
                ticker.wait(20)
            except subprocess.TimeoutExpired:
                ticker.kill()
        # Retired: the next size's cluster is empty, and its tickers would rebuild it from every
        # live row, these included, and fire them beside its own.
        await store.delete_jobs(job_ids, retain_history=True)
        await broker.close()
        await store.close()
        cluster.stop()


async def main(args: argparse.Namespace) -> None:
    root = Path(tempfile.mkdtemp(prefix="sundial-cluster-bench-"))
    if args.keep:
        print(f"logs in {root}")
    try:
        postgres = Postgres(root / "pg").start()
        try:
            migrate(postgres.dsn)
            print(f"Redis Cluster scale-out: {args.jobs:,} every-second schedules, {args.shards} shards,"
                  f" {args.tickers} ticker processes (no consumers), {args.seconds:g} s windows;"
                  f" {load_average()} before")
            print("| primaries | shards per primary | fired per second | tickers CPU-s/s |"
                  " Redis CPU-s/s per primary | load |")
            print("|---|---|---|---|---|---|")
            for primaries in args.primaries:
                figure = await measure(primaries, args, postgres.dsn, root)
                print(figure.line(args.jobs), flush=True)
        finally:
            postgres.stop()
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--shards", type=int, default=16)
    parser.add_argument("--tickers", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--primaries", type=lambda text: [int(p) for p in text.split(",")], default=[3, 6])
    parser.add_argument("--keep", action="store_true", help="keep the logs (the directory is printed)")
    return parser.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
