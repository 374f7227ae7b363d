"""A worker with a probe that notes when each run was fired and read, for `bench.run_lateness`.

Runs `sundial-worker` unchanged, except that every batch the consumer reads from the queue is
noted as (run id, fired: the Redis time stamped into the message id by XADD, read: this
process's clock when the reply arrived). The notes are appended as JSON lines to
`$SUNDIAL_STAGE_PROBE` every second and when the worker exits, so the bench can split each run's lateness into
slot -> fired, fired -> read and read -> code start (`job_runs.started_at`). The cost is a
list append per batch read; a worker whose broker has no `read` (a different version) runs
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

# Per batch read: (read ms, its deliveries). The hot path only appends; the writer thread
# formats each run's line, so the probe adds little to the worker it measures.
Notes = list[tuple[int, list[Any]]]


def probe_reads(notes: Notes) -> bool:
    """Wrap `Broker.read` to note each batch's deliveries and when they arrived; False if there is none."""
    read: Callable[..., Awaitable[list[Any]]] | None = getattr(broker.Broker, "read", None)
    if read is None:
        return False

    @functools.wraps(read)
    async def noted(self: Any, *args: Any, **kwargs: Any) -> list[Any]:
        deliveries = await read(self, *args, **kwargs)
        if deliveries:
            notes.append((int(time.time() * 1000), deliveries))
        return deliveries

    broker.Broker.read = noted  # type: ignore[method-assign]
    return True


def note_lines(notes: Notes) -> list[str]:
    """One line per delivered run: run id, fired ms (its message id's time), read ms, tab-separated.
    Not JSON: this thread formats ten thousand lines a second holding the worker's interpreter
    lock, and a `json.dumps` per run was a visible share of the CPU the bench charges the worker."""
    lines = []
    for read_ms, deliveries in notes:
        for delivery in deliveries:
            raw, message_id = getattr(delivery, "raw", None), getattr(delivery, "message_id", "")
            if isinstance(raw, dict) and "run" in raw:
                lines.append(f"{raw['run']}\t{str(message_id).partition('-')[0]}\t{read_ms}\n")
    return lines


def write_notes(target: Path, notes: Notes, stop: threading.Event) -> None:
    """Append the notes to `target` every second (and let go of the deliveries written), so a
    worker killed at the end leaves them too."""
    with target.open("a") as out:
        while not stop.wait(1.0):
            out.writelines(note_lines(_take(notes)))
            out.flush()
        out.writelines(note_lines(_take(notes)))


def _take(notes: Notes) -> Notes:
    # The event loop only appends, so the first `count` items are this thread's to take.
    count = len(notes)
    taken = notes[:count]
    del notes[:count]
    return taken


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
