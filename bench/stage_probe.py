"""A worker with a probe that notes when each run was fired and read, for `bench.run_lateness`.

Runs `sundial-worker` unchanged, except that every batch the consumer reads from the queue is
noted as (run id, fired: the Redis time stamped into the message id by XADD, read: this
process's clock when the reply arrived). The notes are appended as JSON lines to
`$SUNDIAL_STAGE_PROBE` every second and when the worker exits, so the bench can split each run's lateness into
slot -> fired, fired -> read and read -> code start (`job_runs.started_at`). The cost is a
tuple per delivered run; a worker whose broker has no `read` (a different version) runs
unprobed and the bench says so.

    SUNDIAL_STAGE_PROBE=/tmp/w0.stages python -m bench.stage_probe
"""

from __future__ import annotations

import functools
import json
import os
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from sundial.core import broker
from sundial.worker.main import main as worker_main

Notes = list[tuple[str, int, int]]


def probe_reads(notes: Notes) -> bool:
    """Wrap `Broker.read` to note (run, fired ms, read ms) per delivery; False if there is none."""
    read: Callable[..., Awaitable[list[Any]]] | None = getattr(broker.Broker, "read", None)
    if read is None:
        return False

    @functools.wraps(read)
    async def noted(self: Any, *args: Any, **kwargs: Any) -> list[Any]:
        deliveries = await read(self, *args, **kwargs)
        read_ms = int(time.time() * 1000)
        for delivery in deliveries:
            raw, message_id = getattr(delivery, "raw", None), getattr(delivery, "message_id", "")
            if isinstance(raw, dict) and "run" in raw:
                notes.append((raw["run"], int(str(message_id).split("-")[0]), read_ms))
        return deliveries

    broker.Broker.read = noted  # type: ignore[method-assign]
    return True


def write_notes(target: Path, notes: Notes, stop: threading.Event) -> None:
    """Append the notes to `target` every second, so a worker killed at the end leaves them too."""
    written = 0
    with target.open("a") as out:
        while not stop.wait(1.0):
            fresh, written = notes[written:], len(notes)
            out.writelines(json.dumps(note) + "\n" for note in fresh)
            out.flush()
        out.writelines(json.dumps(note) + "\n" for note in notes[written:])


def main() -> None:
    notes: Notes = []
    probed = probe_reads(notes)
    target = os.environ.get("SUNDIAL_STAGE_PROBE")
    if target:
        Path(target).write_text(json.dumps({"probed": probed}) + "\n")
    serve_writing(target, lambda path, stop: write_notes(path, notes, stop))


def serve_writing(target: str | None, write: Callable[[Path, threading.Event], None]) -> None:
    """Run the worker while a thread writes the probe's findings to `target` until it stops."""
    stop = threading.Event()
    writer = None
    if target:
        writer = threading.Thread(target=write, args=(Path(target), stop), daemon=True)
        writer.start()
    try:
        worker_main()
    finally:
        stop.set()
        if writer is not None:
            writer.join()


if __name__ == "__main__":
    main()
