"""Fire lateness and exactly-once at 1k and 10k schedules, spread and aligned, or every second.

Two ticker processes (two worker replicas with their consumers off) race for 30 s per
scenario. Lateness is measured outside the ticker: the Redis server time stamped into each
queue message's id, minus the slot it was fired for. Missed and duplicate slots are counted
against each entry's own record of where it started and where it is now. The firing's cost is
printed per fire: the tickers' CPU and Redis' (with the consumers off, all of Redis' work is
firing), over `--seconds` from the first fire on (start-up excluded). `--baseline DIR` runs an older
checkout's tickers in the same run first.

    python -m bench.fire_lateness [--seconds 30] [--sizes 1000,10000] [--layouts spread,aligned,every-second]
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path

from bench.common import (
    arm_bulk,
    baseline_env,
    load_average,
    new_keyspace,
    percentile,
    process_cpu_seconds,
    redis_cpu_seconds,
    start_worker,
)
from sundial.core.broker import Broker
from sundial.core.clock import SYSTEM_CLOCK
from sundial.core.migrate import migrate
from sundial.core.store import Store
from sundial.devstack.services import Services

TICKERS = 2


def schedules(size: int, layout: str) -> list[str]:
    # Every 10 s: spread puts job i at second i % 10 of each 10 s window; aligned puts all on :00.
    if layout == "spread":
        return [f"{i % 10}/10 * * * * *" for i in range(size)]
    if layout == "every-second":
        return ["* * * * * *"] * size
    return ["*/10 * * * * *"] * size


async def scenario(services: Services, size: int, layout: str, seconds: float, logs: Path,
                   baseline: Path | None = None) -> str:
    keyspace = new_keyspace()
    broker = Broker.from_url(services.redis.url, keyspace)
    store = await Store.open(services.postgres.dsn, max_size=10)
    job_ids = await arm_bulk(broker, store, schedules(size, layout), SYSTEM_CLOCK.now())
    first = {job_id: entry.next_due_ms for job_id, entry in (await broker.entries(job_ids)).items() if entry}
    # The queue keeps every fire for the count (nothing consumes it): no overload policy here.
    tickers = [start_worker(services.postgres.dsn, services.redis.url, keyspace, f"ticker{i}", logs / "w.log",
                            SUNDIAL_CONSUMER_ENABLED="false", SUNDIAL_TICKER_BATCH="1000",
                            SUNDIAL_QUEUE_MAX_LENGTH="100000000", **baseline_env(baseline))
               for i in range(TICKERS)]
    queue = broker.keys.all_shards()[0].queue
    # Slots before the tickers are up measure process start-up, not the scheduler.
    for _ in range(600):
        if await broker.redis.xlen(queue):
            break
        await asyncio.sleep(0.2)
    warm_from_ms = int((time.time() + 2) * 1000)
    cpu = sum(process_cpu_seconds(process.pid) for process in tickers)
    redis_cpu, queued = await redis_cpu_seconds(broker.redis), await broker.redis.xlen(queue)
    await asyncio.sleep(seconds)
    cpu = sum(process_cpu_seconds(process.pid) for process in tickers) - cpu
    redis_cpu = await redis_cpu_seconds(broker.redis) - redis_cpu
    window_fires = max(1, await broker.redis.xlen(queue) - queued)
    load = load_average()
    for process in tickers:
        process.send_signal(signal.SIGTERM)
    slow_to_stop = 0
    for process in tickers:
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:  # an overloaded ticker still firing a long backlog
            process.kill()
            process.wait()
            slow_to_stop += 1

    lateness: list[float] = []
    fired: Counter[str] = Counter()
    for message_id, fields in await broker.queued(broker.keys.all_shards()[0]):
        fired[fields["run"]] += 1
        if int(fields["slot"]) >= warm_from_ms:
            lateness.append(int(message_id.split("-")[0]) - int(fields["slot"]))
    missed = 0
    for job_id, start in first.items():
        entry = await broker.entry(job_id)
        assert entry is not None
        expected = {f"{job_id}:{slot}" for slot in range(start, entry.next_due_ms, 10_000)}
        missed += len(expected - set(fired))
    duplicates = sum(n - 1 for n in fired.values() if n > 1)
    await broker.redis.delete(broker.keys.all_shards()[0].queue)
    # Retired, or the next scenario's tickers rebuild their fresh key space from these rows too.
    await store.delete_jobs(job_ids, retain_history=True)
    await broker.close()
    await store.close()
    return (f"{'before' if baseline else 'now':>6} {size:>6} {layout:<12} fires={sum(fired.values()):>7} "
            f"lateness_ms p50={percentile(lateness, .5):>6.1f} "
            f"p99={percentile(lateness, .99):>7.1f} max={max(lateness, default=0):>7.1f} "
            f"missed={missed} duplicates={duplicates}; CPU per fire: tickers {cpu / window_fires * 1e6:.0f} us, "
            f"redis {redis_cpu / window_fires * 1e6:.0f} us ({window_fires} fires, {cpu / seconds:.2f} and "
            f"{redis_cpu / seconds:.2f} CPU-s/s); {load}"
            + (f"; {slow_to_stop} ticker(s) killed, not stopped within 60 s" if slow_to_stop else ""))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--layouts", default="spread,aligned")
    parser.add_argument("--baseline", type=Path, help="an older checkout whose tickers run first, in the same run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sundial-bench-") as tmp, Services(Path(tmp)) as services:
        migrate(services.postgres.dsn)
        print(f"fire lateness: {TICKERS} ticker processes, {args.seconds:g} s per scenario")
        for size in (int(s) for s in args.sizes.split(",")):
            for layout in args.layouts.split(","):
                for baseline in ([args.baseline] if args.baseline else []) + [None]:
                    started = time.monotonic()
                    line = await scenario(services, size, layout, args.seconds, Path(tmp), baseline)
                    print(f"{line}  ({time.monotonic() - started:.0f}s)", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
