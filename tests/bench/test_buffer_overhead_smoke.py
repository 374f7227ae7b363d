"""The buffer-overhead benchmark, run tiny so it cannot rot (its figures are for `make bench`)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from bench.buffer_overhead import POLICIES, measure

from sundial.core.migrate import migrate
from sundial.devstack.services import ServiceError, Services
from tests.conftest import unavailable

pytestmark = [pytest.mark.services, pytest.mark.bench, pytest.mark.timeout(300)]


async def test_both_policies_fire_and_report_figures() -> None:
    with tempfile.TemporaryDirectory(prefix="sundial-bench-") as tmp:
        try:
            services = Services(Path(tmp)).__enter__()
        except (ServiceError, OSError) as exc:
            unavailable(str(exc))
        try:
            migrate(services.postgres.dsn)
            totals = await measure(services, jobs=10, seconds=2, rounds=1, shards=1, logs=Path(tmp))
        finally:
            services.__exit__(None, None, None)
    assert set(totals) == set(POLICIES)
    for figures in totals.values():
        assert figures.fired > 0
        assert figures.cpu_seconds >= 0
