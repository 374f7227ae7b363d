"""BullMQ in the side-by-side run: Node worker processes running bench/peers/bullmq/bench.mjs.

BullMQ is pinned in bench/peers/bullmq/package.json and package-lock.json and installed with
`npm ci` into that folder the first time (and again whenever the lock file changes).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from bench.peers.run import Unavailable
from bench.peers.scripted import ScriptedPeer

FOLDER = Path(__file__).with_name("bullmq")
LOCK = FOLDER / "package-lock.json"
INSTALLED_LOCK = FOLDER / "node_modules" / ".package-lock.json"


class BullMQSystem(ScriptedPeer):
    name = "BullMQ"
    schedules_before_workers = True

    def __init__(self, fill: int = 200_000) -> None:
        super().__init__(["node", str(FOLDER / "bench.mjs")], fill)

    def prepare(self) -> None:
        for tool in ("node", "npm"):
            if shutil.which(tool) is None:
                raise Unavailable(f"`{tool}` not found: install Node.js 18 or newer (apt-get install nodejs npm)")
        if INSTALLED_LOCK.exists() and INSTALLED_LOCK.stat().st_mtime >= LOCK.stat().st_mtime:
            return
        result = subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=FOLDER,
                                capture_output=True, text=True)
        if result.returncode != 0:
            raise Unavailable(f"npm ci failed in {FOLDER}: {result.stderr.strip()[-2000:]}")

    def versions(self) -> dict[str, str]:
        node = subprocess.run(["node", "--version"], capture_output=True, text=True, check=True).stdout.strip()
        bullmq = json.loads((FOLDER / "node_modules" / "bullmq" / "package.json").read_text())["version"]
        return {"Node.js": node.removeprefix("v"), "BullMQ": bullmq}
