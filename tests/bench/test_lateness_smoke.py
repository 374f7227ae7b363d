"""The run lateness benchmark, run small so it cannot rot: its figures and stage split are printed.

Nothing is judged on speed (`make bench` measures on a quiet machine); the test checks that the
probe's notes reach the split, so the lateness stages keep being measured.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from bench.run_lateness import scenario

from sundial.devstack.services import Services

pytestmark = [pytest.mark.services, pytest.mark.bench, pytest.mark.timeout(300)]


async def test_run_lateness_prints_the_stage_split_and_cpu_per_run(services: Services) -> None:
    with tempfile.TemporaryDirectory(prefix="sundial-lateness-smoke-") as logs:
        figures = await scenario(services, services.postgres.dsn, size=10, seconds=2, processes=1, logs=Path(logs),
                                 per_second=Path(logs))
        by_second = (Path(logs) / "now-10.txt").read_text().splitlines()
    print(figures, *by_second, sep="\n")
    assert by_second[0].startswith("+   0s     10 runs  slot->fired"), "each second of the window, its 10 slots"
    assert "lateness_ms p50=" in figures
    assert "stages (p50 / p99 ms): " in figures
    assert "wrote no probe notes" not in figures
    assert "CPU per run" in figures
    assert "redis busiest" in figures
    assert "CPU-s/s through the window" in figures
    assert "queue through the window, by 10 s (runs not yet read / the oldest's wait ms): +0s: " in figures
    assert "redis slowest calls in the window" in figures
