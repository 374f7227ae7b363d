"""What firing costs per slot: one ticker in one process, N every-second schedules, CPU per fire.

CPU-seconds are much steadier than rates on a shared machine, so this measures the ticker's own
CPU (`time.process_time` of a process that runs only a ticker and its recorder, start-up and
arming excluded) and Redis' (`INFO cpu` of a private Redis) over a window, divided by the runs
fired in it (the stream's `entries-added`). The ticker fires ahead as a worker's does, with the
defaults of `SUNDIAL_FIRE_AHEAD_SECONDS` and `SUNDIAL_FIRE_TOGETHER_SECONDS` (an older tree's
ticker without the second fires one slot at a time). Nothing consumes the queue. Lateness (Redis'
XADD time minus the slot) is printed too, but on a loaded machine it says more about the load. The
jobs skip the slots that pass while they are armed, and the window starts once the ticker fires on
time.
`--baseline DIR` measures an older checkout's ticker first, in the same run.

    python -m bench.fire_cost [--sizes 1000,5000,10000] [--seconds 10] [--baseline DIR] [--profile DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

from bench.common import arm_bulk, baseline_env, load_average, new_keyspace, percentile, redis_cpu_seconds
from sundial.core.broker import Broker, QueueLimits
from sundial.core.clock import SYSTEM_CLOCK
from sundial.core.config import Settings
from sundial.core.migrate import migrate
from sundial.core.store import Store
from sundial.devstack.services import Services
from sundial.worker.recorder import Recorder
from sundial.worker.ticker import Ticker

UNBOUNDED = QueueLimits(max_queue_length=10**9)


async def measure(redis_url: str, database_url: str, size: int, seconds: float) -> str:
    """Arm `size` every-second jobs, run a ticker until it fires, then measure `seconds` of it."""
    broker = Broker.from_url(redis_url, new_keyspace())
    store = await Store.open(database_url, max_size=4)
    # Skip: the slots that pass while arming are dropped in the first pass, not fired late one by
    # one, so the window sees the steady state.
    await arm_bulk(broker, store, ["* * * * * *"] * size, datetime.now(UTC), missedRunPolicy="Skip")
    queue = broker.keys.all_shards()[0].queue
    recorder = Recorder(store, broker)
    ticker = Ticker(broker, store, SYSTEM_CLOCK, lookahead=timedelta(seconds=1), recorder=recorder, limits=UNBOUNDED,
                    **_firing_as_a_worker())
    stop = asyncio.Event()
    tasks = [asyncio.create_task(recorder.run()), asyncio.create_task(ticker.run(stop))]
    await _until_on_time(broker, queue)
    profile = os.environ.get("FIRE_COST_PROFILE")
    profiler = None if not profile else await asyncio.create_subprocess_exec(
        str(Path(sys.executable).with_name("py-spy")), "record", "-p", str(os.getpid()), "-d", str(round(seconds)),
        "-r", "50", "-f", "raw", "-o", profile, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cpu, redis_cpu, added = time.process_time(), await redis_cpu_seconds(broker.redis), await _added(broker, queue)
    first_ms = int(time.time() * 1000)
    await asyncio.sleep(seconds)
    cpu, redis_cpu = time.process_time() - cpu, await redis_cpu_seconds(broker.redis) - redis_cpu
    fires = max(1, await _added(broker, queue) - added)
    load = load_average()
    if profiler is not None:
        await profiler.wait()
    stop.set()
    await recorder.close()
    await asyncio.gather(*tasks)
    lateness = await _lateness(broker, queue, first_ms)
    await broker.redis.delete(*[key async for key in broker.redis.scan_iter(match=f"*{broker.keys.prefix}*")])
    await broker.close()
    await store.close()
    return (f"{size:>6} every-second schedules: {fires} fires in {seconds:g} s; CPU per fire: ticker "
            f"{cpu / fires * 1e6:.1f} us ({cpu / seconds:.2f} CPU-s/s), redis {redis_cpu / fires * 1e6:.1f} us "
            f"({redis_cpu / seconds:.2f} CPU-s/s); fire lateness p50 {percentile(lateness, .5):.0f} ms, "
            f"p99 {percentile(lateness, .99):.0f} ms; {load}")


def _firing_as_a_worker() -> dict[str, Any]:
    """The worker's defaults for firing ahead, as far as this tree's Ticker takes them."""
    fields = Settings.model_fields
    firing: dict[str, Any] = {"fire_ahead": timedelta(seconds=cast(float, fields["fire_ahead_seconds"].default))}
    if "fire_together" in inspect.signature(Ticker).parameters:  # a tree whose Ticker takes it has the setting
        firing["fire_together"] = timedelta(seconds=cast(float, fields["fire_together_seconds"].default))
    return firing


async def _until_on_time(broker: Broker, queue: str, limit_s: float = 120) -> None:
    """Wait until the newest fire was less than a second late (the first pass is done)."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        newest = cast(list[tuple[str, dict[str, str]]], await broker.redis.xrevrange(queue, count=1))
        if newest and int(newest[0][0].split("-")[0]) - int(newest[0][1]["slot"]) < 1000:
            return
        await asyncio.sleep(0.2)


async def _added(broker: Broker, queue: str) -> int:
    """Messages ever added to the queue stream (0 before the first)."""
    if not await broker.redis.exists(queue):
        return 0
    return int((await broker.redis.xinfo_stream(queue))["entries-added"])


async def _lateness(broker: Broker, queue: str, from_ms: int) -> list[float]:
    late: list[float] = []
    start = f"{from_ms}-0"
    while True:
        page = cast(list[tuple[str, dict[str, str]]], await broker.redis.xrange(queue, min=start, count=10_000))
        late += [int(message_id.split("-")[0]) - int(fields["slot"]) for message_id, fields in page
                 if int(fields["slot"]) >= from_ms]
        if len(page) < 10_000:
            return late
        start = f"({page[-1][0]}"


def child(args: argparse.Namespace) -> None:
    print(asyncio.run(measure(os.environ["REDIS_URL"], os.environ["DATABASE_URL"], args.size, args.seconds)),
          flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,5000,10000")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--baseline", type=Path, help="an older checkout whose ticker is measured first")
    parser.add_argument("--profile", type=Path, help="py-spy (pip install py-spy) the current ticker's window into "
                                                      "DIR/fire-cost-N.txt (raw, collapsed stacks)")
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)  # one measurement, in a child process
    args = parser.parse_args()
    if args.size:
        child(args)
        return
    with tempfile.TemporaryDirectory(prefix="sundial-bench-") as tmp, Services(Path(tmp)) as services:
        migrate(services.postgres.dsn)
        print(f"fire cost: one ticker (look-ahead 1 s, batch 500, firing ahead as a worker does) in one process, "
              f"nothing consuming; {args.seconds:g} s window; {load_average()}", flush=True)
        root = str(Path(__file__).resolve().parents[1])
        for size in (int(s) for s in args.sizes.split(",")):
            for baseline in ([args.baseline] if args.baseline else []) + [None]:
                paths = baseline_env(baseline).get("PYTHONPATH")
                env = {**os.environ, "REDIS_URL": services.redis.url, "DATABASE_URL": services.postgres.dsn,
                       "PYTHONPATH": ":".join(filter(None, (paths, root)))}
                if args.profile and not baseline:
                    env["FIRE_COST_PROFILE"] = str(args.profile / f"fire-cost-{size}.txt")
                line = subprocess.run([sys.executable, "-m", "bench.fire_cost", "--size", str(size),
                                       "--seconds", str(args.seconds)], env=env, capture_output=True, text=True,
                                      check=False)
                label = "before" if baseline else "now"
                print(f"{label:>6} {line.stdout.strip() or line.stderr.strip()[-500:]}", flush=True)


if __name__ == "__main__":
    main()
