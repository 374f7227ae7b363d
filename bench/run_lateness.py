"""Run lateness at scale: N every-second no-op schedules on 2 worker processes (ticker + consumer).

Lateness is what the user feels: when the job's code starts (`job_runs.started_at`, stamped
just before the target is called) minus its slot. Over a window of whole seconds after a
warm-up, every (job, slot) is expected once: `missed` counts slots with no run started (not
fired, still queued, or recorded missed by the overload policy), `duplicates` counts runs
started more than once (`job_runs.deliveries`; the schema allows one row per slot). The
window's rows are read as it goes, since a job keeps only its latest runs and a window longer
than that would lose its first slots' rows to pruning; besides the whole window's figures, its
segments are listed, so a steady state reads differently from one that drifts (pruning starts
once the histories are full, about 100 s in, or `--history` s).

Where the lateness goes (`--stages`): the workers run under `bench.stage_probe`, which notes when
each run was fired (the Redis time in its message id) and read by a consumer, so each run's
lateness splits into slot -> fired (the ticker), fired -> read (waiting in the queue) and read ->
code start (the consumer). Without it the workers are plain `sundial-worker`s: the probe's notes
cost them a few per cent of their CPU (88 against 90-92 us per run at 10,000), and its writer
thread holds their interpreter for tens of milliseconds each second, which lands on the lateness
it measures. Beside them: CPU per slot
of the workers, Redis and PostgreSQL over the window (CPU-seconds are steadier than rates on a
shared machine), Redis' busiest commands, the load average and the settings.

PostgreSQL runs durable (fsync and synchronous_commit on) unless `--fast-postgres`;
`--postgres-setting NAME=VALUE` (repeatable) passes it a setting more (`max_wal_size=16GB`: a
server that checkpoints less often), named in the output's settings line. With
`--baseline DIR`, DIR's workers write a second database of the same server, migrated with DIR's
migrations, so a change of schema is compared too.
`--spread` arms N schedules that fire once a minute, N/60 of them each second, instead of N
every-second ones. `--history 40` keeps 40 successful runs per job instead of 100, so a 120 s
window measures retention's steady state (deleting a run's row for each one recorded).

    python -m bench.run_lateness [--sizes 1000,5000,10000] [--seconds 20] [--processes 2] [--baseline DIR]
                                 [--fire-ahead SECONDS] [--dedicated-tickers 1] [--history RUNS] [--stages]
                                 [--postgres-setting NAME=VALUE ...]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import itertools
import json
import math
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from bench.common import (
    Armed,
    arm_bulk,
    baseline_env,
    busiest_statements,
    job_row_updates,
    load_average,
    machine_busy_seconds,
    new_keyspace,
    percentile,
    process_cpu_seconds,
    process_tree_cpu_seconds,
    redis_cpu_seconds,
    reset_statement_stats,
    start_worker,
    until_first_run,
    wal_written,
)
from sundial.core.broker import Broker, QueueStats
from sundial.core.config import Settings
from sundial.core.keys import ShardKeys
from sundial.core.migrate import migrate
from sundial.core.store import Store
from sundial.devstack.services import Services

WARM_UP = 5.0
# The first slot comes this long after arming starts, plus the arming itself (jobs a second):
# worker processes start within it unless the machine is very loaded (`until_first_run` waits).
START_AHEAD_S = 4.0
ARM_RATE = 1000
SETTLE = 3.0
# The timeline's segments: this long, or a sixth of a window longer than six of them.
TIMELINE_SECONDS = 10

# The stretch's slots, bounded by logical time (a scheduled run's slot, its scheduled_for) so the
# primary key's range finds them: bounded by scheduled_for, the read was a parallel scan of the
# table that took the two cores from what was measured for half a second every read.
WINDOW_SQL = """
SELECT run_id, extract(epoch FROM logical_time) * 1000, extract(epoch FROM started_at) * 1000, status, deliveries
FROM job_runs WHERE job_id = ANY(%(jobs)s::uuid[]) AND attempt = 1
  AND logical_time >= to_timestamp(%(start)s) AND logical_time < to_timestamp(%(end)s)
"""

# Runs whose code started in the window, whatever their slot: what the CPU of the window paid for
# (when the workers fall behind, these are older slots').
# (A run starts before its message expires, at most a minute after its slot for these schedules:
# that bounds the slots to look at.)
STARTED_SQL = """
SELECT count(*) FROM job_runs WHERE job_id = ANY(%(jobs)s::uuid[])
  AND logical_time >= to_timestamp(%(start)s) - interval '61 seconds' AND logical_time < to_timestamp(%(end)s)
  AND started_at >= to_timestamp(%(start)s) AND started_at < to_timestamp(%(end)s)
"""

# The window's rows are read as it goes, every COLLECT_SECONDS, up to COLLECT_LAG_SECONDS ago (a
# slot's row exists once its start is recorded, within a few seconds even when the overload policy
# records it skipped): a job keeps only its latest runs (100 successes by default), so a window
# longer than that had its first slots' rows pruned by its end. The reads' own time is printed
# beside the CPU figures (PostgreSQL's includes them). Their backend runs at the lowest CPU
# priority, so on a saturated machine what the bench takes for itself comes last: at 10,000
# schedules each read of 100,000 rows is about half a second of the server's CPU every 10 s.
COLLECT_SECONDS = 10.0
COLLECT_LAG_SECONDS = 15.0
LOWEST_PRIORITY = 19
# --history: an every-second job's slot is pruned once it has this many newer runs, this many
# seconds later; the window reads it up to COLLECT_SECONDS + COLLECT_LAG_SECONDS after it.
MIN_HISTORY = 40


class WindowRows:
    """The run rows of a window's slots (WINDOW_SQL) and how many runs started in it
    (STARTED_SQL), read a stretch at a time, before history pruning deletes them."""

    def __init__(self, job_ids: Sequence[str], start: int, end: int) -> None:
        self.job_ids = job_ids
        self.end = end
        self.rows: list[tuple[Any, ...]] = []
        self.started = 0
        self.read_seconds = 0.0  # the bench's own load on what it measures
        self._until: float = start

    async def read(self, store: Store, until: float) -> None:
        """Read the stretch from where the last read ended up to `until` (epoch seconds)."""
        until = min(until, self.end)
        if until <= self._until:
            return
        stretch = {"jobs": self.job_ids, "start": self._until, "end": until}
        began = time.perf_counter()
        async with store.pool.connection() as conn:
            await _lowest_priority(conn)
            self.rows += await (await conn.execute(WINDOW_SQL, stretch)).fetchall()
            self.started += (await (await conn.execute(STARTED_SQL, stretch)).fetchall())[0][0]
        self.read_seconds += time.perf_counter() - began
        self._until = until


async def _lowest_priority(conn: psycopg.AsyncConnection[Any]) -> None:
    """Renice the connection's backend (a local server, so its process is on this machine). Only
    root may renice another user's process: anyone else runs the reads at the usual priority."""
    pid = (await (await conn.execute("SELECT pg_backend_pid()")).fetchall())[0][0]
    with contextlib.suppress(PermissionError):
        os.setpriority(os.PRIO_PROCESS, pid, LOWEST_PRIORITY)


# Seconds of the window listed by how late their slots started.
WORST_SECONDS = 3

# Redis commands whose time is listed per slot (the rest is summed in the CPU figure).
BUSY_COMMANDS = 6
# PostgreSQL statements listed with `--statements`.
BUSY_STATEMENTS = 5
# Redis calls listed by how long they held the server (its slowlog keeps those over 10 ms),
# each named by its command and first arguments (a script by its keys).
SLOWEST_COMMANDS = 5
SLOW_COMMAND_MS = 10
SLOW_COMMAND_WORDS = 4
SLOWLOG_LENGTH = 4096


DEATH_LOG_LINES = 15


async def arm(services: Services, dsn: str, size: int, spread: bool, history: int | None = None) -> Armed:
    """Arm the schedules with their first slot after arming and the workers' start-up: armed
    from now, the slots that passed meanwhile (RunAll) started each scenario tens of thousands
    of runs behind at 5,000 schedules, which a loaded machine never caught up with."""
    keyspace = new_keyspace()
    broker = Broker.from_url(services.redis.url, keyspace)
    store = await Store.open(dsn, max_size=4)
    schedules = [f"{spread_second(i)} * * * * *" if spread else "* * * * * *" for i in range(size)]
    first_after = datetime.now(UTC) + timedelta(seconds=START_AHEAD_S + size / ARM_RATE)
    job_ids = await (arm_bulk(broker, store, schedules, first_after) if history is None else
                     arm_bulk(broker, store, schedules, first_after, successfulRunsHistoryLimit=history))
    return Armed(keyspace, broker, store, job_ids)


def worker_roles(processes: int, dedicated_tickers: int) -> list[dict[str, str]]:
    """Each worker process's role settings: all run ticker and consumer, or the first
    `dedicated_tickers` run only the ticker and the others only the consumer."""
    if not dedicated_tickers:
        return [{} for _ in range(processes)]
    if not 0 < dedicated_tickers < processes:
        raise ValueError(f"{dedicated_tickers} dedicated tickers need at least one more process for the consumer")
    return [{"SUNDIAL_CONSUMER_ENABLED": "false"} if i < dedicated_tickers else {"SUNDIAL_TICKER_ENABLED": "false"}
            for i in range(processes)]


async def scenario(services: Services, dsn: str, size: int, seconds: int, processes: int, logs: Path,
                   baseline: Path | None = None, spread: bool = False, dedicated_tickers: int = 0,
                   statements: bool = False, per_second: Path | None = None, history: int | None = None,
                   stages_noted: bool = True, **env: str) -> str:
    label = "before" if baseline else "now"
    armed = await arm(services, dsn, size, spread, history)
    broker, store, keyspace, job_ids = armed.broker, armed.store, armed.keyspace, armed.job_ids
    probes = [logs / f"{label}-{size}-w{i}.stages" for i in range(processes)]
    workers = [start_worker(dsn, services.redis.url, keyspace, f"w{i}", logs / f"w{i}.log",
                            **({"SUNDIAL_STAGE_PROBE": str(probe)} if stages_noted else {}),
                            **baseline_env(baseline), **env, **role)
               for i, (probe, role) in enumerate(zip(probes, worker_roles(processes, dedicated_tickers),
                                                     strict=True))]
    assert services.postgres.process is not None
    await until_first_run(store, job_ids)
    await asyncio.sleep(WARM_UP)
    window_start = math.ceil(time.time())
    await asyncio.sleep(window_start - time.time())
    cpu = [process_cpu_seconds(p.pid) for p in workers]
    bench_cpu = process_cpu_seconds(os.getpid())
    redis_before = await _redis_stats(broker)
    postgres_cpu = process_tree_cpu_seconds(services.postgres.process.pid)
    job_updates = await job_row_updates(store)
    wal = await wal_written(store)
    if statements:
        await reset_statement_stats(store)
    await broker.redis.config_set("slowlog-max-len", SLOWLOG_LENGTH)
    await broker.redis.slowlog_reset()
    collected = WindowRows(job_ids, window_start, window_start + seconds)
    machine = CpuSegments(workers, services.postgres.process.pid, broker, keyspace.all_shards()[0])
    await machine.sample()
    while (left := window_start + seconds - time.time()) > 0:
        await asyncio.sleep(min(COLLECT_SECONDS, left))
        await machine.sample()
        await collected.read(store, time.time() - COLLECT_LAG_SECONDS)
    cpu = [process_cpu_seconds(p.pid) - before for p, before in zip(workers, cpu, strict=True)]
    bench_cpu = process_cpu_seconds(os.getpid()) - bench_cpu
    redis_cpu, commands = _redis_delta(redis_before, await _redis_stats(broker))
    postgres_cpu = process_tree_cpu_seconds(services.postgres.process.pid) - postgres_cpu
    wal_after = await wal_written(store)
    busiest = await busiest_statements(store, BUSY_STATEMENTS) if statements else []
    slowest = await _slowest_commands(broker)
    wal_bytes, fpi, timed, requested = (after - before for after, before in zip(wal_after, wal, strict=True))
    updated, hot = (after - before for after, before in zip(await job_row_updates(store), job_updates, strict=True))
    load = load_average()
    lag = (await broker.queue_stats(keyspace.all_shards()[0], int(time.time() * 1000))).lag
    await asyncio.sleep(SETTLE)  # slots at the window's end start and are recorded
    # A worker that died shows only as missed slots: say so, with the end of its log.
    died = [_death(i, process, logs / f"w{i}.log") for i, process in enumerate(workers) if process.poll() is not None]
    for process in workers:
        process.send_signal(signal.SIGTERM)
    for process in workers:
        try:
            process.wait(120)
        except subprocess.TimeoutExpired:  # still running a backlog after its shutdown grace
            process.kill()
            process.wait()
    await collected.read(store, window_start + seconds)
    rows, ran = collected.rows, collected.started
    await armed.forget()
    started = {run_id: (float(slot), float(start)) for run_id, slot, start, status, _ in rows
               if status != "skipped" and start is not None}
    duplicates = sum(deliveries - 1 for *_, deliveries in rows if deliveries > 1)
    due = functools.partial(slots_due, size, spread)
    slots = due(window_start, seconds)
    lateness = [start - slot for slot, start in started.values()]
    split = stage_split(started, probes) if stages_noted else "not measured (--stages)"
    if per_second is not None:
        (per_second / f"{label}-{size}.txt").write_text("\n".join(stages_by_second(split)) + "\n")
    figures = (f"{label:>6} {size:>6} {'spread over a minute' if spread else 'every-second'} schedules: "
               f"lateness_ms p50={percentile(lateness, .5):7.1f} p99={percentile(lateness, .99):7.1f} "
               f"max={max(lateness, default=float('nan')):7.1f} runs={len(started)} missed={slots - len(started)} "
               f"duplicates={duplicates} queue lag at end={lag}")
    # With no run started (all still queued, or recorded missed by the overload policy) there is
    # nothing to divide by: CPU-seconds per second only.
    per_run = 1e6 / ran if ran else 0.0
    return "\n".join([
        figures,
        f"{'':>13} stages (p50 / p99 ms): {stages(split)}",
        f"{'':>13} latest seconds of the window (slot: p50 / p99 / max ms): {worst_seconds(started.values())}",
        f"{'':>13} through the window from {time.strftime('%H:%M:%S', time.gmtime(window_start))} UTC"
        " (p50 / p99 ms, slots missed): "
        f"{timeline(started.values(), window_start * 1000, seconds, due)}",
        f"{'':>13} CPU-s/s through the window, by {COLLECT_SECONDS:.0f} s (workers / redis / postgres / "
        f"all busy): {machine}",
        f"{'':>13} queue through the window, by {COLLECT_SECONDS:.0f} s (runs not yet read / the oldest's wait ms): "
        f"{machine.backlog()}",
        f"{'':>13} CPU per run ({ran} started in the window): workers {sum(cpu) * per_run:.0f} us "
        f"[{' '.join(f'{c / seconds:.2f}' for c in cpu)} CPU-s/s], redis {redis_cpu * per_run:.0f} us "
        f"({redis_cpu / seconds:.2f} CPU-s/s), postgres {postgres_cpu * per_run:.0f} us "
        f"({postgres_cpu / seconds:.2f} CPU-s/s; the bench's reads of the window took {collected.read_seconds:.1f} s); "
        f"the bench itself {bench_cpu / seconds:.2f} CPU-s/s; {load}",
        f"{'':>13} WAL per run: {wal_bytes * per_run / 1e6:.0f} bytes, {fpi * per_run / 1e6:.2f} full-page images; "
        f"checkpoints in the window: {timed} timed, {requested} requested (max_wal_size filled)",
        f"{'':>13} scheduled_jobs updates in the window: {updated}, of which HOT {hot} "
        "(as far as the workers' backends have flushed their statistics)",
        f"{'':>13} redis busiest, us per run (a script's time includes its commands'): "
        + ", ".join(f"{name} {usec * per_run / 1e6:.1f} ({calls * per_run / 1e6:.2f} calls)"
                    for name, calls, usec in commands[:BUSY_COMMANDS]),
        f"{'':>13} redis slowest calls in the window (slowlog, over {SLOW_COMMAND_MS} ms): {slowest}",
        *([f"{'':>13} postgres busiest, ms executing per 1,000 runs (calls, rows per run): "
           + "; ".join(f"[{label}] {ms * per_run / 1e3:.1f} ({calls * per_run / 1e6:.2f}, {rows * per_run / 1e6:.2f})"
                       for label, calls, rows, ms in busiest)] if busiest else []),
        *died,
    ])


class CpuSegments:
    """CPU-seconds a second of the workers, Redis, PostgreSQL and the whole machine, stretch by
    stretch: a stretch where the workers fell behind reads differently when the machine was
    saturated in it than when it was not. Beside each sample, the queue's backlog."""

    def __init__(self, workers: Sequence[subprocess.Popen[bytes]], postgres_pid: int, broker: Broker,
                 shard: ShardKeys) -> None:
        self.workers = workers
        self.postgres_pid = postgres_pid
        self.broker = broker
        self.shard = shard
        self.samples: list[tuple[float, float, float, float, float]] = []
        self.queue: list[QueueStats] = []

    async def sample(self) -> None:
        self.samples.append((time.monotonic(), sum(process_cpu_seconds(p.pid) for p in self.workers),
                             await redis_cpu_seconds(self.broker.redis),
                             process_tree_cpu_seconds(self.postgres_pid), machine_busy_seconds()))
        self.queue.append(await self.broker.queue_stats(self.shard, int(time.time() * 1000)))

    def backlog(self) -> str:
        """The queue at each sample: runs no worker has read yet, and how long the oldest of them
        has waited. Runs fired ahead of their slot wait there by design; a backlog shows as both
        growing from one sample to the next."""
        return ", ".join(f"+{i * COLLECT_SECONDS:.0f}s: {stats.lag} / {stats.oldest_waiting_ms or 0}"
                         for i, stats in enumerate(self.queue))

    def __str__(self) -> str:
        parts = []
        for (began, *before), (ended, *after) in itertools.pairwise(self.samples):
            rates = [(a - b) / (ended - began) for a, b in zip(after, before, strict=True)]
            parts.append(" / ".join(f"{rate:.2f}" for rate in rates))
        return ", ".join(f"+{i * COLLECT_SECONDS:.0f}s: {part}" for i, part in enumerate(parts))


def _death(index: int, process: subprocess.Popen[bytes], log: Path) -> str:
    tail = log.read_text(errors="replace").splitlines()[-DEATH_LOG_LINES:]
    return "\n".join([f"{'':>13} worker w{index} DIED during the window (exit code {process.returncode}):",
                      *(f"{'':>15}{line}" for line in tail)])


StageSplit = list[tuple[float, float, float, float]]  # per run: slot ms, slot -> fired, fired -> read, read -> start


def stage_split(started: dict[str, tuple[float, float]], probes: Sequence[Path]) -> StageSplit | str:
    """Each noted run's slot and its lateness split at fired and read, from the workers' probe
    notes (first read of each run); or why there is none."""
    read: dict[str, tuple[int, int]] = {}
    for probe in probes:
        lines = probe.read_text().splitlines() if probe.exists() else []
        if not lines or not json.loads(lines[0]).get("probed"):
            return "not measured (a worker wrote no probe notes)"
        for line in lines[1:]:
            run_id, fired_ms, read_ms = line.split("\t")
            read.setdefault(run_id, (int(fired_ms), int(read_ms)))
    split: StageSplit = [(slot, fired - slot, float(got - fired), start - got)
             for run_id, (slot, start) in started.items() if (noted := read.get(run_id))
             for fired, got in [noted]]
    return split or "no run of the window was noted"


STAGES = ("slot->fired", "fired->read", "read->start")


def stages(split: StageSplit | str) -> str:
    """slot -> fired -> read -> code start over the window (p50 / p99 ms)."""
    if isinstance(split, str):
        return split
    columns = zip(STAGES, list(zip(*split, strict=True))[1:], strict=True)
    return ", ".join(f"{name} {percentile(stage, .5):.1f} / {percentile(stage, .99):.1f}"
                     for name, stage in columns) + f" ({len(split)} runs)"


def stages_by_second(split: StageSplit | str) -> list[str]:
    """One line per second of slots: its runs' stages and lateness (p50 / p99 ms). A stretch
    where the workers ran late shows how it began: a stall in reading the queue, say, before
    the ticker fell behind."""
    if isinstance(split, str):
        return [split]
    by_second: dict[int, list[tuple[float, float, float, float]]] = {}
    for slot, fired, got, start in split:
        by_second.setdefault(int(slot // 1000), []).append((fired, got, start, fired + got + start))
    first = min(by_second)
    return [f"+{second - first:>4}s {len(runs):>6} runs  " + "  ".join(
        f"{name} {percentile(column, .5):6.0f} / {percentile(column, .99):6.0f}"
        for name, column in zip((*STAGES, "lateness"), zip(*runs, strict=True), strict=True))
        for second, runs in sorted(by_second.items())]


def spread_second(index: int) -> int:
    """The second of the minute at which the `index`-th of `--spread`'s schedules fires."""
    return index % 60


@functools.cache
def _spread_per_second(size: int) -> tuple[int, ...]:
    """How many of `size` spread schedules fire at each second of the minute."""
    counts = [0] * 60
    for index in range(size):
        counts[spread_second(index)] += 1
    return tuple(counts)


def slots_due(size: int, spread: bool, first_second: int, seconds: int) -> int:
    """How many slots the armed schedules have in `seconds` whole seconds from the epoch second
    `first_second`: every-second schedules one each a second; spread ones those whose second of
    the minute it is (`spread_second`), so a window that is not whole minutes expects no more and
    no fewer than its seconds hold."""
    if not spread:
        return size * seconds
    per_second = _spread_per_second(size)
    return sum(per_second[second % 60] for second in range(first_second, first_second + seconds))


def timeline(started: Iterable[tuple[float, float]], window_start_ms: float, seconds: int,
             due: Callable[[int, int], int]) -> str:
    """The window in segments, each with its slots' lateness (p50 / p99 ms) and how many of its
    slots never started (`due(first_second, seconds)`: how many a stretch holds): a window that
    drifts (a backlog building, pruning once the histories are full) reads differently from a
    steady one, which one figure for the window hides."""
    segment = TIMELINE_SECONDS if seconds <= TIMELINE_SECONDS * 6 else math.ceil(seconds / 6)
    by_segment: dict[int, list[float]] = {}
    for slot_ms, start_ms in started:
        by_segment.setdefault(int((slot_ms - window_start_ms) // (segment * 1000)), []).append(start_ms - slot_ms)
    parts = []
    for index in range(math.ceil(seconds / segment)):
        late = by_segment.get(index, [])
        expected = due(round(window_start_ms / 1000) + index * segment, min(segment, seconds - index * segment))
        parts.append(f"+{index * segment}s: {percentile(late, .5):.0f} / {percentile(late, .99):.0f}"
                     f" missed {expected - len(late)}")
    return f"by {segment} s: " + ", ".join(parts)


def worst_seconds(started: Iterable[tuple[float, float]], count: int = WORST_SECONDS) -> str:
    """The window's seconds whose slots started latest (by p99), with when each was, relative to
    the window's first second: a tail made by a few seconds (a periodic pass, a stall) reads
    differently from one spread over all of them."""
    by_second: dict[int, list[float]] = {}
    for slot_ms, start_ms in started:
        by_second.setdefault(int(slot_ms // 1000), []).append(start_ms - slot_ms)
    if not by_second:
        return "none"
    first = min(by_second)
    ranked = sorted(by_second.items(), key=lambda item: percentile(item[1], .99), reverse=True)[:count]
    return ", ".join(f"+{second - first}s: {percentile(late, .5):.0f} / {percentile(late, .99):.0f} / {max(late):.0f}"
                     for second, late in ranked)


async def _redis_stats(broker: Broker) -> tuple[float, dict[str, tuple[int, int]]]:
    commands = await broker.redis.info("commandstats")
    return (await redis_cpu_seconds(broker.redis),
            {name.removeprefix("cmdstat_"): (int(stat["calls"]), int(stat["usec"])) for name, stat in commands.items()})


async def _slowest_commands(broker: Broker) -> str:
    """The slowlog's longest calls since the window opened, longest first."""
    entries = await broker.redis.slowlog_get(SLOWLOG_LENGTH)
    if not entries:
        return "none"
    longest = sorted(entries, key=lambda entry: -int(entry["duration"]))[:SLOWEST_COMMANDS]
    return f"{len(entries)} in all; " + ", ".join(
        f"{int(entry['duration']) / 1000:.0f} ms: "
        + " ".join(_text(word)[:40] for word in _words(entry["command"])[:SLOW_COMMAND_WORDS])
        for entry in longest)


def _words(command: Any) -> list[Any]:
    return command.split() if isinstance(command, (str, bytes)) else list(command)


def _text(word: Any) -> str:
    return word.decode(errors="replace") if isinstance(word, bytes) else str(word)


def _redis_delta(before: tuple[float, dict[str, tuple[int, int]]], after: tuple[float, dict[str, tuple[int, int]]],
                 ) -> tuple[float, list[tuple[str, int, int]]]:
    """Redis CPU over the window, and its commands by time spent, busiest first."""
    commands = [(name, calls - before[1].get(name, (0, 0))[0], usec - before[1].get(name, (0, 0))[1])
                for name, (calls, usec) in after[1].items()]
    return after[0] - before[0], sorted(commands, key=lambda c: -c[2])


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,5000,10000")
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--dedicated-tickers", type=int, default=0,
                        help="this many of the processes run only the ticker, the others only the consumer")
    parser.add_argument("--fast-postgres", action="store_true", help="fsync off, as the tests run it")
    parser.add_argument("--postgres-setting", action="append", default=[], metavar="NAME=VALUE",
                        help="a PostgreSQL server setting (repeatable), e.g. max_wal_size=16GB; named in the output")
    parser.add_argument("--baseline", type=Path, help="an older checkout whose workers run beside these")
    parser.add_argument("--spread", action="store_true", help="schedules fire once a minute, spread over it")
    parser.add_argument("--statements", action="store_true",
                        help="load pg_stat_statements and list PostgreSQL's busiest statements per run")
    parser.add_argument("--stages", action="store_true",
                        help="run the workers under bench.stage_probe and split the lateness into stages")
    parser.add_argument("--per-second", type=Path, metavar="DIR",
                        help="write each scenario's stages second by second into DIR (<before|now>-<size>.txt);"
                             " implies --stages")
    parser.add_argument("--fire-ahead", type=float, help="SUNDIAL_FIRE_AHEAD_SECONDS of this checkout's workers")
    parser.add_argument("--history", type=int, metavar="RUNS",
                        help="successful runs each job keeps (default 100): fewer, and retention's steady state "
                             f"starts within the window (at least {MIN_HISTORY}, so rows are read before pruned)")
    args = parser.parse_args()
    if any("=" not in setting or " " in setting for setting in args.postgres_setting):
        parser.error("--postgres-setting: NAME=VALUE, without spaces")
    if args.history is not None and args.history < MIN_HISTORY:
        parser.error(f"--history: at least {MIN_HISTORY} (a slot's row is read up to "
                     f"{COLLECT_SECONDS + COLLECT_LAG_SECONDS:g} s after it, and must not be pruned by then)")
    try:
        worker_roles(args.processes, args.dedicated_tickers)
    except ValueError as exc:
        parser.error(f"--dedicated-tickers: {exc}")
    roles = (f"{args.dedicated_tickers} ticker-only, {args.processes - args.dedicated_tickers} consumer-only"
             if args.dedicated_tickers else "ticker + consumer")
    env = {} if args.fire_ahead is None else {"SUNDIAL_FIRE_AHEAD_SECONDS": str(args.fire_ahead)}
    ahead = Settings.model_fields["fire_ahead_seconds"].default if args.fire_ahead is None else args.fire_ahead
    with (tempfile.TemporaryDirectory(prefix="sundial-bench-") as tmp,
          Services(Path(tmp), durable_postgres=not args.fast_postgres, statement_stats=args.statements,
                   postgres_settings=tuple(args.postgres_setting)) as services):
        migrate(services.postgres.dsn)
        dsns: dict[Path | None, str] = {None: services.postgres.dsn}
        if args.baseline:
            # The baseline's workers write a database of its own schema (its migrations): the
            # schema is part of what a change to the hot path may change.
            with psycopg.connect(services.postgres.dsn, autocommit=True) as conn:
                conn.execute("CREATE DATABASE before")
            dsns[args.baseline] = services.postgres.dsn.rsplit("/", 1)[0] + "/before"
            migrate(dsns[args.baseline], args.baseline / "migrations")
        hz = (await Broker.from_url(services.redis.url, new_keyspace()).redis.config_get("hz"))["hz"]
        print(f"run lateness (code start - slot): no-op schedules, {args.processes} worker processes"
              f" ({roles}, concurrency 5), {args.seconds} s window; now's fire-ahead "
              f"{ahead} s; PostgreSQL "
              f"{services.postgres.settings}; Redis hz {hz}, no persistence; {load_average()}", flush=True)
        for size in (int(s) for s in args.sizes.split(",")):
            for baseline in ([args.baseline] if args.baseline else []) + [None]:
                print(await scenario(services, dsns[baseline], size, args.seconds, args.processes, Path(tmp),
                                     baseline, args.spread, args.dedicated_tickers, args.statements,
                                     args.per_second, args.history, args.stages or args.per_second is not None,
                                     **({} if baseline else env)),
                      flush=True)


if __name__ == "__main__":
    asyncio.run(main())
