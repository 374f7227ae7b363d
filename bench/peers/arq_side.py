"""arq in the side-by-side run: arq worker processes running bench/peers/arq/arq_bench.py.

arq lives in its own venv (bench/peers/arq/.venv, made from requirements.txt the first time):
it pins redis-py below 6, which would downgrade the redis-py Sundial runs on if it shared ours.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bench.peers.run import Unavailable
from bench.peers.scripted import ScriptedPeer

FOLDER = Path(__file__).with_name("arq")
REQUIREMENTS = FOLDER / "requirements.txt"
VENV = FOLDER / ".venv"
PYTHON = VENV / "bin" / "python"
STAMP = VENV / ".installed"


class ArqSystem(ScriptedPeer):
    name = "arq"
    # Every arq worker holds every cron job and enqueues its runs; the job id keeps a slot unique.
    schedules_before_workers = False

    def __init__(self, fill: int = 20_000) -> None:
        super().__init__([str(PYTHON), str(FOLDER / "arq_bench.py")], fill)

    def prepare(self) -> None:
        if STAMP.exists() and STAMP.stat().st_mtime >= REQUIREMENTS.stat().st_mtime:
            return
        for step in ([sys.executable, "-m", "venv", str(VENV)],
                     [str(PYTHON), "-m", "pip", "install", "-q", "-r", str(REQUIREMENTS)]):
            result = subprocess.run(step, capture_output=True, text=True)
            if result.returncode != 0:
                raise Unavailable(f"{' '.join(step)} failed: {result.stderr.strip()[-2000:]}")
        STAMP.touch()

    def versions(self) -> dict[str, str]:
        found = subprocess.run([str(PYTHON), "-c", "import arq.version; print(arq.version.VERSION)"],
                               capture_output=True, text=True, check=True)
        return {"arq": found.stdout.strip()}
