"""docs/benchmarks.md and its two SVG plots, from one side-by-side run's figures."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from bench.peers.figures import LatenessFigure, ThroughputFigure
from bench.peers.svg import Series, line_chart

OVERLOADED = ("Other work loaded the machine during this run (a load average above half the cores before it, "
              "or above twice the cores during it): "
              "these figures show contention for the cores more than what each system can do on its own.")
COLORS = {"Sundial": "#d9730d", "Sundial, firing": "#e8a868", "BullMQ": "#2f6fbd", "arq": "#3a9a4a",
          "Celery+RedBeat": "#8a4fbf"}


@dataclass
class Results:
    started: str
    machine: dict[str, str]
    versions: dict[str, str]
    settings: dict[str, str]
    throughput: list[ThroughputFigure] = field(default_factory=list)
    lateness: list[LatenessFigure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # The 1-minute load average went above the core count: other work was competing for the cores.
    overloaded: bool = False

    def systems(self) -> list[str]:
        names = [f.system for f in self.throughput] + [f.system for f in self.lateness]
        return list(dict.fromkeys(names))


def _ms(value: float) -> str:
    return f"{value:,.0f}" if math.isfinite(value) else "n/a"


def throughput_line(figure: ThroughputFigure) -> str:
    rate = f"{figure.runs_per_s:,.0f}" if math.isfinite(figure.runs_per_s) else "n/a"
    return (f"| {figure.system} | {figure.processes} | {figure.concurrency} | {rate} | {figure.runs:,} "
            f"| {figure.seconds:.1f} | {cpu_cell(figure)} | {_ms(figure.worker_us_per_run)} | {figure.note} |")


def cpu_cell(figure: ThroughputFigure) -> str:
    cpu = figure.cpu
    if cpu is None:
        return "n/a"
    postgres = "-" if cpu.postgres is None else f"{cpu.postgres:.2f}"
    return f"{' + '.join(f'{w:.2f}' for w in cpu.workers)} / {cpu.redis:.2f} / {postgres}"


def lateness_line(figure: LatenessFigure) -> str:
    return (f"| {figure.system} | {figure.schedules:,} | {figure.processes} | {figure.runs:,} | {_ms(figure.p50_ms)} "
            f"| {_ms(figure.p99_ms)} | {_ms(figure.max_ms)} | {figure.missed:,} | {figure.duplicates:,} |")


def lateness_svg(results: Results) -> str:
    sizes = sorted({f.schedules for f in results.lateness})
    series = []
    for system in results.systems():
        figures = {f.schedules: f for f in results.lateness if f.system == system}
        for label, dashed in (("p50", True), ("p99", False)):
            points = [(i, getattr(figures[size], f"{label}_ms")) for i, size in enumerate(sizes) if size in figures]
            series.append(Series(f"{system} {label}", points, COLORS.get(system, "#555"), dashed))
    return line_chart("Lateness of every-second schedules (job code start - slot)", [f"{s:,}" for s in sizes],
                      "every-second schedules", "lateness, ms (logarithmic)", series, logarithmic=True)


def throughput_svg(results: Results) -> str:
    processes = sorted({f.processes for f in results.throughput})
    series = []
    for system in results.systems():
        figures = {f.processes: f for f in results.throughput if f.system == system}
        points = [(i, figures[n].runs_per_s) for i, n in enumerate(processes) if n in figures]
        series.append(Series(system, points, COLORS.get(system, "#555")))
    return line_chart("No-op throughput, runs recorded per second (concurrency 5)", [str(n) for n in processes],
                      "worker processes", "runs/s", series)


def markdown(results: Results, images: str) -> str:
    rows = [*results.machine.items(), *results.versions.items(), *results.settings.items()]
    lines = [
        "# Benchmarks: Sundial beside BullMQ and arq",
        "",
        f"Written by `make bench` (`python -m bench.side_by_side`) on {results.started}: every system in one run, "
        "on the same machine, against the same fresh `redis-server`. The machine is shared, so figures are noisy; "
        "compare systems within this page, not with another day's.",
        "",
        *[f"> {note}\n" for note in [*results.notes, *([OVERLOADED] if results.overloaded else [])]],
        "",
        "## Machine, versions, settings",
        "",
        "| | |",
        "|---|---|",
        *[f"| {key} | {value} |" for key, value in rows],
        "",
        "## No-op throughput",
        "",
        "Runs recorded per second while every worker process was busy (the window opens 2 s after the last process "
        "recorded its first run and closes when the first one recorded its last). A run counts when its record is "
        "written: Sundial's `job_runs` row committed in PostgreSQL, BullMQ's job moved to completed, arq's result "
        "stored in Redis. \"Sundial\", BullMQ and arq do the same work: they drain a queue filled beforehand by "
        "another process (Sundial's through the run-now/backfill enqueue path, one message per run). "
        "\"Sundial, firing\" is offered more every-second jobs than it can run, so each worker's ticker fires "
        "runs on the same core its consumer runs them: firing and running together.",
        "",
        "CPU is CPU-seconds per second over the window (1.00 = one core busy): each worker process, then "
        "Redis, then PostgreSQL (its server and backends). Worker CPU per run = the workers' CPU over the "
        "window divided by the runs recorded in it: on a shared machine the steadier figure, since the rate "
        "also says how much of the cores the workers were given.",
        "",
        f"![throughput]({images}/throughput.svg)",
        "",
        "| system | processes | concurrency | runs/s | runs in window | window, s | CPU/s workers / Redis / PostgreSQL "
        "| worker CPU us/run | how |",
        "|---|---:|---:|---:|---:|---:|---|---:|---|",
        *[throughput_line(f) for f in results.throughput],
        "",
        "## Every-second schedules",
        "",
        "N schedules firing every second, on the second, for the window. Lateness = when the job's code starts minus "
        "its slot (Sundial: `job_runs.started_at - scheduled_for`; BullMQ: processor entered - the scheduler's "
        "`nextMillis` in the job id; arq: function entered - the slot in the cron job id), first start of each slot. "
        "A slot of the window that had not started when the workers stopped counts as missed; a slot started more "
        "than once counts as duplicate.",
        "",
        f"![lateness]({images}/lateness.svg)",
        "",
        "The plot shows the runs that started; the missed column shows the slots that never did.",
        "",
        "| system | schedules | processes | runs | p50 ms | p99 ms | max ms | missed | duplicate |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        *[lateness_line(f) for f in results.lateness],
        "",
        "Every system's worker processes are up before the window: Sundial's report alive before its jobs are "
        "armed (a Sundial worker takes seconds to start on a loaded machine), the peers' connect before the "
        "warm-up starts. What each does when it falls behind decides whether lateness or misses grow:",
        "",
        "- Sundial (jobs armed with `missedRunPolicy: RunAll`) fires every slot into one queue and runs them in "
        "order; under its overload policy (docs/performance.md) a scheduled run that has not started 5 s after "
        "its slot (or by its job's next slot, if later) is recorded missed instead of running ever later, which "
        "is why its lateness stops at 5,000 ms and the rest of an overloaded window shows as missed.",
        "- BullMQ keeps one pending job per job scheduler and computes the next slot when that job starts, from "
        "the current time: slots that passed meanwhile are skipped.",
        "- arq's workers each enqueue, every poll (0.5 s), the cron runs due within the next second; when a pass "
        "takes longer than that, their cron clocks fall behind and runs are enqueued ever later.",
        "",
    ]
    return "\n".join(lines)


def write(results: Results, doc: Path) -> None:
    images = doc.with_suffix("")
    images.mkdir(parents=True, exist_ok=True)
    (images / "lateness.svg").write_text(lateness_svg(results))
    (images / "throughput.svg").write_text(throughput_svg(results))
    doc.write_text(markdown(results, images.name))
