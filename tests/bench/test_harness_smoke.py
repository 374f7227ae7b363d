"""The side-by-side benchmark harness, run small so it cannot rot: every system must produce figures.

The harness prints its figures (`pytest -s` shows them); they are never judged: speed is for `make bench` on a quiet
machine. The test installs what the peers need (`npm ci` for BullMQ, arq's own venv) and fails
in CI when that cannot be done.
"""

from __future__ import annotations

import math
import shutil
import tempfile
from pathlib import Path

import pytest
from bench.peers import report
from bench.peers.run import Unavailable
from bench.side_by_side import POSTGRES_SETTINGS, Options, make_systems, side_by_side

from sundial.core.migrate import migrate
from sundial.devstack.services import ServiceError, Services
from tests.conftest import unavailable

pytestmark = [pytest.mark.services, pytest.mark.bench, pytest.mark.timeout(360)]

# Any load must give every throughput scenario a window: one that was busy for less than twice
# its 2 s warm-up (an idle machine drains a queue fast; a loaded one records few fired runs)
# gets a shorter warm-up (`throughput_figure`), so the fills only need to last about a second
# on an idle machine (BullMQ drains ~6,000 no-op jobs a second here, Sundial 5,000-7,000), and
# the 5 s throughput cap bounds a slow drain.
TINY = Options(sizes=(20,), seconds=2, processes=1, throughput_processes=(1,), throughput_seconds=5,
               warm_up_s=1, drain_s=1, sundial_offered=300, sundial_fill=20_000, bullmq_fill=20_000, arq_fill=1000)


async def test_every_system_produces_figures_and_the_page() -> None:
    systems = make_systems(TINY)
    for system in systems:
        try:
            system.prepare()
        except Unavailable as exc:
            unavailable(str(exc), "benchmark peer")
    # Its own Redis: the harness empties Redis between scenarios.
    root = Path(tempfile.mkdtemp(prefix="sundial-bench-smoke-"))
    try:
        try:
            services = Services(root / "services", postgres_settings=POSTGRES_SETTINGS).start()
        except (ServiceError, OSError) as exc:
            unavailable(str(exc))
        try:
            migrate(services.postgres.dsn)
            results = await side_by_side(TINY, services, root, systems)
        finally:
            services.stop()

        names = {system.name for system in systems}
        assert {f.system for f in results.throughput} == names | {"Sundial, firing"}
        assert {f.system for f in results.lateness} == names
        assert all(f.runs > 0 and math.isfinite(f.runs_per_s) for f in results.throughput), results.throughput
        assert all(f.runs > 0 and math.isfinite(f.p99_ms) for f in results.lateness), results.lateness
        assert results.versions.keys() >= {"Python", "Node.js", "BullMQ", "arq", "Redis", "PostgreSQL"}

        report.write(results, root / "benchmarks.md")
        page = (root / "benchmarks.md").read_text()
        assert "| BullMQ | 20 |" in page
        assert (root / "benchmarks" / "lateness.svg").read_text().startswith("<svg")
        assert (root / "benchmarks" / "throughput.svg").read_text().startswith("<svg")
    finally:
        shutil.rmtree(root, ignore_errors=True)
