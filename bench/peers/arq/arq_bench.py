"""arq side of Sundial's side-by-side benchmark, run by bench/peers/arq_side.py in arq's own venv.

    python arq_bench.py fill  --redis URL --queue Q --jobs K
    python arq_bench.py drain --redis URL --queue Q --concurrency C --out FILE
    python arq_bench.py work  --redis URL --queue Q --schedules N --concurrency C --out FILE

`drain` writes {"completions": [ms, ...]} (after_job_end: the result is stored in Redis);
`work` writes {"starts": [[cron name, slot_ms, start_ms], ...]}: arq names each cron run
`<name>:<slot in unix ms>` (its uniqueness key), and the start is when the function is entered.
`drain` and `work` touch FILE.ready once the worker is connected and run until SIGTERM.
Imports only arq: Sundial is not installed in this venv.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from arq import Worker, create_pool, cron
from arq.connections import RedisSettings

Context = dict[str, Any]


def write(path: str, text: str) -> None:
    Path(path).write_text(text)


async def noop(ctx: Context) -> None:
    return None


async def fill(args: argparse.Namespace) -> None:
    pool = await create_pool(RedisSettings.from_dsn(args.redis), default_queue_name=args.queue)
    for start in range(0, args.jobs, 500):
        await asyncio.gather(*(pool.enqueue_job("noop") for _ in range(start, min(args.jobs, start + 500))))
    await pool.aclose()


async def run_worker(args: argparse.Namespace, **settings: Any) -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)

    async def ready(ctx: Context) -> None:
        write(f"{args.out}.ready", "")

    worker = Worker(redis_settings=RedisSettings.from_dsn(args.redis), queue_name=args.queue, on_startup=ready,
                    max_jobs=args.concurrency, handle_signals=False, log_results=False, **settings)
    running = asyncio.ensure_future(worker.async_run())
    await stop.wait()
    # close() cancels the jobs in flight and then awaits them, which raises their cancellation.
    with contextlib.suppress(asyncio.CancelledError):
        await worker.close()
    running.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await running


async def drain(args: argparse.Namespace) -> None:
    completions: list[float] = []

    async def recorded(ctx: Context) -> None:
        completions.append(time.time() * 1000)

    await run_worker(args, functions=[noop], after_job_end=recorded)
    write(args.out, json.dumps({"completions": completions}))


def ticker(starts: list[list[Any]]) -> Callable[[Context], Coroutine[Any, Any, None]]:
    async def tick(ctx: Context) -> None:
        started = time.time() * 1000
        name, slot = str(ctx["job_id"]).rsplit(":", 1)
        starts.append([name, int(slot), started])

    return tick


async def cron_jobs(args: argparse.Namespace) -> None:
    starts: list[list[Any]] = []
    tick = ticker(starts)
    # Every second, on the second: arq's defaults are second=0 and microsecond=123456.
    every_second = set(range(60))
    jobs = [cron(tick, name=f"s{i}", second=every_second, microsecond=0) for i in range(args.schedules)]
    await run_worker(args, cron_jobs=jobs)
    write(args.out, json.dumps({"starts": starts}))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["fill", "drain", "work"])
    parser.add_argument("--redis", required=True)
    parser.add_argument("--queue", required=True)
    parser.add_argument("--jobs", type=int, default=0)
    parser.add_argument("--schedules", type=int, default=0)
    parser.add_argument("--concurrency", type=int, default=5)
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    modes = {"fill": fill, "drain": drain, "work": cron_jobs}
    asyncio.run(modes[args.mode](args))


if __name__ == "__main__":
    main()
