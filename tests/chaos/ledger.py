"""A target that writes each execution to an append-only file: the chaos tests' independent count.

PostgreSQL's history cannot show a run executed twice (a second execution of the same run id
updates the same row), so the ledger is what tells a duplicate from a lost run. Loaded into real
worker processes through `SUNDIAL_TARGET_MODULES`; the file is named by `SUNDIAL_CHAOS_LEDGER`.
"""

from __future__ import annotations

import os
import time

from sundial.worker.targets.registry import JsonObject, RunContext, target

LEDGER_ENV = "SUNDIAL_CHAOS_LEDGER"


@target("chaos-ledger", description="record this execution in the chaos tests' ledger")
async def ledger(ctx: RunContext, params: JsonObject) -> JsonObject:
    # One short write with O_APPEND is atomic among processes: lines never interleave.
    line = f"{ctx.run_id} {ctx.attempt} {ctx.worker} {time.time():.3f}\n".encode()
    fd = os.open(os.environ[LEDGER_ENV], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)
    return {"ok": True}
