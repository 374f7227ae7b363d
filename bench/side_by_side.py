"""Sundial beside BullMQ and arq, in one run, on one machine, against one fresh Redis.

No-op throughput at concurrency 5 with 1, 2 and 4 worker processes (each system draining a
queue filled beforehand; Sundial also firing its own every-second jobs), then every-second schedules
at each size: lateness (job code start minus slot) p50/p99/max, missed and duplicate slots.
Writes docs/benchmarks.md and its SVG plots.

    python -m bench.side_by_side [--sizes 100,1000,5000,10000] [--seconds 30] [--out docs/benchmarks.md]
    python -m bench.side_by_side --sizes 50 --seconds 5 --out ''   # a short run, figures printed only
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import psycopg
import redis

from bench.peers import report
from bench.peers.arq_side import ArqSystem
from bench.peers.bullmq_side import BullMQSystem
from bench.peers.figures import LatenessFigure, ThroughputFigure
from bench.peers.run import Run, System, Unavailable
from bench.peers.sundial_side import SundialSystem
from sundial.core.migrate import migrate
from sundial.devstack.services import Services

CELERY_NOTE = ("Celery beat with RedBeat is not in this run: Celery's crontab stops at minutes, and an "
               "every-second entry is an interval counted from its last send, so its runs carry no fixed slot to "
               "measure lateness against the way the others are measured.")


@dataclass(frozen=True)
class Options:
    sizes: Sequence[int] = (100, 1000, 5000, 10000)
    seconds: float = 30
    processes: int = 2
    throughput_processes: Sequence[int] = (1, 2, 4)
    throughput_seconds: float = 12
    warm_up_s: float = 3
    drain_s: float = 5
    systems: Sequence[str] = ("sundial", "bullmq", "arq")
    sundial_offered: int = 10_000
    sundial_fill: int = 200_000
    bullmq_fill: int = 200_000
    arq_fill: int = 10_000


def make_systems(options: Options) -> list[System]:
    known: dict[str, System] = {
        "sundial": SundialSystem(options.sundial_offered, options.sundial_fill),
        "bullmq": BullMQSystem(options.bullmq_fill),
        "arq": ArqSystem(options.arq_fill),
    }
    unknown = set(options.systems) - set(known)
    if unknown:
        raise SystemExit(f"unknown system(s): {', '.join(sorted(unknown))}; known: {', '.join(known)}")
    return [known[name] for name in options.systems]


def load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def cpu_model() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return "unknown"
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), "unknown")


def service_facts(services: Services) -> tuple[dict[str, str], dict[str, str]]:
    client = redis.Redis.from_url(services.redis.url, decode_responses=True)
    try:
        redis_version = str(client.info("server")["redis_version"])
        hz = str(client.config_get("hz")["hz"])
    finally:
        client.close()
    with psycopg.connect(services.postgres.dsn) as conn:
        shown = {name: str(conn.execute(f"SHOW {name}").fetchone()[0])  # type: ignore[index]
                 for name in ("server_version", "fsync", "synchronous_commit")}
    versions = {"Redis": redis_version, "PostgreSQL": shown["server_version"]}
    settings = {"PostgreSQL fsync / synchronous_commit": f"{shown['fsync']} / {shown['synchronous_commit']}",
                "Redis hz": hz, "Redis persistence": "none (save \"\", appendonly no)"}
    return versions, settings


def flush(services: Services) -> None:
    """Each scenario starts on an empty Redis, whatever the one before left there."""
    client = redis.Redis.from_url(services.redis.url)
    try:
        client.flushall()
    finally:
        client.close()


async def side_by_side(options: Options, services: Services, workdir: Path,
                       systems: Sequence[System] | None = None) -> report.Results:
    chosen = list(systems) if systems is not None else make_systems(options)
    busiest = before = os.getloadavg()[0]
    results = report.Results(started=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                             machine={"CPU": f"{os.cpu_count()} cores, {cpu_model()}",
                                      "load average at start (1, 5, 15 min)": load()},
                             versions={}, settings={})
    ready = []
    for system in chosen:
        try:
            system.prepare()
        except Unavailable as exc:
            results.notes.append(f"{system.name} is not in this run: {exc}")
            print(f"skipping {system.name}: {exc}", flush=True)
            continue
        results.versions.update(system.versions())
        ready.append(system)
    versions, settings = service_facts(services)
    results.versions.update(versions)
    results.settings.update(settings)
    results.settings.update({
        "worker processes (schedules)": str(options.processes),
        "concurrency per process": "5 (Sundial SUNDIAL_CONCURRENCY, BullMQ concurrency, arq max_jobs)",
        "window": f"{options.seconds:g} s of slots per size, after a {options.warm_up_s:g} s warm-up; "
                  f"{options.drain_s:g} s more to start its last slots",
        "peer defaults kept": "BullMQ keeps completed jobs; arq poll_delay 0.5 s, keeps results 1 h",
    })
    if "celery" not in options.systems:
        results.notes.append(CELERY_NOTE)
    run = Run(services.redis.url, services.postgres.dsn, workdir, concurrency=5, warm_up_s=options.warm_up_s,
              drain_s=options.drain_s, throughput_s=options.throughput_seconds,
              postgres_pid=services.postgres.process.pid if services.postgres.process else None)
    print(f"side by side: {', '.join(s.name for s in ready)}; load average {load()}", flush=True)
    for processes in options.throughput_processes:
        for system in ready:
            flush(services)
            for figure in await system.throughput(run, processes):
                results.throughput.append(figure)
                busiest = max(busiest, os.getloadavg()[0])
                print(f"{describe_throughput(figure)}  load {load()}", flush=True)
    for size in options.sizes:
        for system in ready:
            flush(services)
            lateness = await system.lateness(run, size, options.seconds, options.processes)
            results.lateness.append(lateness)
            if lateness.note:
                results.notes.append(f"{system.name} at {size:,} schedules: {lateness.note}.")
            busiest = max(busiest, os.getloadavg()[0])
            print(f"{describe_lateness(lateness)}  load {load()}", flush=True)
    results.machine["load average at end (1, 5, 15 min)"] = load()
    results.machine["highest 1-minute load average seen"] = f"{busiest:.2f}"
    # The systems measured load the cores themselves (two workers, Redis, PostgreSQL); other work
    # on the machine shows in the load average before the first scenario, or in a peak well past it.
    cores = os.cpu_count() or 1
    results.overloaded = before > cores / 2 or busiest > 2 * cores
    return results


def describe_throughput(figure: ThroughputFigure) -> str:
    cpu = "" if figure.cpu is None else (
        f"; CPU/s workers {report.cpu_cell(figure)}, {figure.worker_us_per_run:.0f} us worker CPU per run;"
        f" ceiling: {figure.cpu.ceiling(os.cpu_count() or 1)}")
    return (f"throughput {figure.system:<8} processes={figure.processes} {figure.runs_per_s:8.0f} runs/s "
            f"({figure.runs} runs in {figure.seconds:.1f} s; {figure.note}{cpu})")


def describe_lateness(figure: LatenessFigure) -> str:
    return (f"schedules {figure.system:<8} n={figure.schedules:>6} runs={figure.runs:>7} "
            f"lateness_ms p50={figure.p50_ms:7.1f} p99={figure.p99_ms:7.1f} max={figure.max_ms:7.1f} "
            f"missed={figure.missed} duplicates={figure.duplicates}{f' ({figure.note})' if figure.note else ''}")


def parse(argv: Sequence[str] | None = None) -> tuple[Options, str, list[str], bool]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100,1000,5000,10000", help="numbers of every-second schedules")
    parser.add_argument("--seconds", type=float, default=30, help="window of slots measured per size")
    parser.add_argument("--processes", type=int, default=2, help="worker processes for the schedules")
    parser.add_argument("--throughput-processes", default="1,2,4")
    parser.add_argument("--throughput-seconds", type=float, default=12)
    parser.add_argument("--systems", default="sundial,bullmq,arq")
    parser.add_argument("--sundial-offered", type=int, default=10_000, help="every-second jobs offered to Sundial")
    parser.add_argument("--sundial-fill", type=int, default=200_000, help="no-op runs queued before Sundial drains")
    parser.add_argument("--bullmq-fill", type=int, default=200_000)
    parser.add_argument("--arq-fill", type=int, default=10_000)
    parser.add_argument("--warm-up", type=float, default=3, help="seconds of slots not measured after start")
    parser.add_argument("--drain", type=float, default=5, help="seconds the last slots of a window may take")
    parser.add_argument("--out", default="docs/benchmarks.md", help="the page to write; '' prints figures only")
    parser.add_argument("--note", action="append", default=[], help="a line to put at the top of the page")
    parser.add_argument("--fast-postgres", action="store_true",
                        help="fsync and synchronous_commit off, as the tests run it (default: durable)")
    args = parser.parse_args(argv)
    options = Options(
        sizes=[int(s) for s in args.sizes.split(",") if s], seconds=args.seconds, processes=args.processes,
        throughput_processes=[int(n) for n in args.throughput_processes.split(",")],
        throughput_seconds=args.throughput_seconds, warm_up_s=args.warm_up, drain_s=args.drain,
        systems=args.systems.split(","),
        sundial_offered=args.sundial_offered, sundial_fill=args.sundial_fill, bullmq_fill=args.bullmq_fill,
        arq_fill=args.arq_fill)
    return options, args.out, args.note, not args.fast_postgres


# A run counts when its row is committed: the server keeps each transaction's commit time, which
# Sundial's side reads back for its rows (its workers stamp a run's end before its batch commits).
POSTGRES_SETTINGS = ("track_commit_timestamp=on",)


async def main(argv: Sequence[str] | None = None) -> None:
    options, out, notes, durable = parse(argv)
    with (tempfile.TemporaryDirectory(prefix="sundial-bench-") as tmp,
          Services(Path(tmp) / "services", durable_postgres=durable, postgres_settings=POSTGRES_SETTINGS) as services):
        migrate(services.postgres.dsn)
        results = await side_by_side(options, services, Path(tmp))
    results.notes[:0] = notes
    if out:
        report.write(results, Path(out))
        print(f"wrote {out}")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
