"""Fire lateness and exactly-once at 1k and 10k schedules, spread and aligned.

Two ticker processes (two worker replicas with their consumers off) race for 30 s per
scenario. Lateness is measured outside the ticker: the Redis server time stamped into each
queue message's id, minus the slot it was fired for. Missed and duplicate slots are counted
against each entry's own record of where it started and where it is now.

    python -m bench.fire_lateness [--seconds 30] [--sizes 1000,10000]
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import tempfile
import time
from collections import Counter
from pathlib import Path

from bench.common import arm_many, new_keyspace, percentile, start_worker
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
    return ["*/10 * * * * *"] * size


async def scenario(services: Services, size: int, layout: str, seconds: float, logs: Path) -> str:
    keyspace = new_keyspace()
    broker = Broker.from_url(services.redis.url, keyspace)
    store = await Store.open(services.postgres.dsn, max_size=10)
    job_ids = await arm_many(broker, store, schedules(size, layout), SYSTEM_CLOCK.now())
    first = {job_id: (await broker.entry(job_id)).next_due_ms for job_id in job_ids}  # type: ignore[union-attr]
    tickers = [start_worker(services.postgres.dsn, services.redis.url, keyspace, f"ticker{i}", logs / "w.log",
                            SUNDIAL_CONSUMER_ENABLED="false", SUNDIAL_TICKER_BATCH="1000")
               for i in range(TICKERS)]
    # Slots before the tickers are up measure process start-up, not the scheduler.
    warm_from_ms = int((time.time() + 3) * 1000)
    await asyncio.sleep(seconds)
    for process in tickers:
        process.send_signal(signal.SIGTERM)
    for process in tickers:
        process.wait(60)

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
    await broker.close()
    await store.close()
    return (f"{size:>6} {layout:<8} fires={sum(fired.values()):>7} lateness_ms p50={percentile(lateness, .5):>6.1f} "
            f"p99={percentile(lateness, .99):>7.1f} max={max(lateness, default=0):>7.1f} "
            f"missed={missed} duplicates={duplicates}")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--sizes", default="1000,10000")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sundial-bench-") as tmp, Services(Path(tmp)) as services:
        migrate(services.postgres.dsn)
        print(f"fire lateness: {TICKERS} ticker processes, {args.seconds:g} s per scenario")
        for size in (int(s) for s in args.sizes.split(",")):
            for layout in ("spread", "aligned"):
                started = time.monotonic()
                line = await scenario(services, size, layout, args.seconds, Path(tmp))
                print(f"{line}  ({time.monotonic() - started:.0f}s)", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
