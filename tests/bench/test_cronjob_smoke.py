"""The CronJob side-by-side benchmark, run tiny so it cannot rot (its figures are for `make bench`)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from bench.cronjob_side_by_side import measure, report

pytestmark = [pytest.mark.services, pytest.mark.k8s, pytest.mark.bench, pytest.mark.timeout(300)]


def test_both_sides_create_each_slots_job_once(tmp_path: Path) -> None:
    figures = measure(jobs=2, minutes=1, keep=tmp_path / "kept")
    print(report(figures))
    # What --keep saves to tell why a slot is missing: both logs, the runs by slot and status,
    # the launcher's requests by verb.
    assert {p.name for p in (tmp_path / "kept").iterdir()} == {"operator.log", "launcher.log", "job_runs.txt",
                                                                "launcher_requests.txt"}
    assert "create jobs" in (tmp_path / "kept" / "launcher_requests.txt").read_text()
    sundial = figures.sides["Sundial (launcher)"]
    assert sundial["duplicates"] == 0
    assert figures.sides["CronJob controller"]["duplicates"] == 0
    assert sundial["created"] + sundial["missed"] == sundial["expected"] == 2


@pytest.mark.timeout(900)
def test_a_terminated_bench_stops_everything_it_started() -> None:
    """The bench once left its PostgreSQL and Redis running: they run in sessions of their own,
    so a SIGTERM that skipped the cleanup orphaned them. Now SIGTERM unwinds every context."""
    tmp_path = Path(tempfile.mkdtemp(prefix="sundial-bench-term-"))  # PostgreSQL's user must reach it
    tmp_path.chmod(0o755)
    bench = subprocess.Popen([sys.executable, "-m", "bench.cronjob_side_by_side", "--jobs", "1", "--out", ""],
                             env={**os.environ, "TMPDIR": str(tmp_path)}, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 600
        while not list(tmp_path.glob("sundial-cronjob-bench-*/redis")) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert list(tmp_path.glob("sundial-cronjob-bench-*/redis")), "the bench never started its services"
        time.sleep(3)
        assert ours(tmp_path), "the services run"
        bench.send_signal(signal.SIGTERM)
        assert bench.wait(timeout=120) != 0
    finally:
        if bench.poll() is None:
            bench.kill()
    assert not ours(tmp_path), "everything the bench started has stopped"
    assert not list(tmp_path.glob("sundial-cronjob-bench-*")), "and its work directory is gone"
    tmp_path.rmdir()


def ours(root: Path) -> list[str]:
    """Command lines of live processes that name a path under `root` or run in one (Redis)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            cwd = str((proc / "cwd").readlink())
        except OSError:
            continue
        if str(root) in cmdline or cwd.startswith(str(root)):
            found.append(cmdline)
    return found
