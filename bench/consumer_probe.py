"""A worker with a probe that counts what its consumer and recorder do, for `bench.throughput --probe`.

Runs `sundial-worker` unchanged, except that a few methods are wrapped to count their calls, the
items each call carried (messages read, runs acknowledged, records written) and the wall time
spent awaiting them. Cumulative counts are written as one JSON object to `$SUNDIAL_CONSUMER_PROBE`
every 0.5 s (and at exit), so a bench reads them at a window's start and end and prints the
difference: batch sizes per XREADGROUP, per ack and per commit, idle wake-ups, lanes started.
A method a worker version does not have is left out, and the counts say so by their absence.

    SUNDIAL_CONSUMER_PROBE=/tmp/w0.probe python -m bench.consumer_probe
"""

from __future__ import annotations

import functools
import inspect
import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.stage_probe import serve_writing
from sundial.core import broker, store
from sundial.worker import consumer, recorder

Counts = dict[str, list[float]]  # name -> [calls, items, seconds awaited]

# (owner, method, which argument or the result holds the items: an index, "result", or None)
PROBED: tuple[tuple[Any, str, int | str | None], ...] = (
    (broker.Broker, "read", "result"),
    (broker.Broker, "reclaim", "result"),
    (broker.Broker, "ack", 0),
    (broker.Broker, "touch", 2),
    (broker.Broker, "extend_active", 0),
    (store.Store, "record_runs", 0),
    (consumer.Consumer, "wait_for_room", None),
    (consumer.Consumer, "_lane", None),
    (recorder.Recorder, "_flush", 0),
)


def _size(value: Any) -> int:
    try:
        return len(value)
    except TypeError:
        return 0


def probe(counts: Counts) -> None:
    for owner, name, items_at in PROBED:
        method: Callable[..., Any] | None = getattr(owner, name, None)
        if method is None or not inspect.iscoroutinefunction(method):
            continue
        counted = counts.setdefault(f"{owner.__name__}.{name}", [0, 0, 0.0])

        def wrap(method: Callable[..., Any], counted: list[float], items_at: int | str | None) -> Callable[..., Any]:
            @functools.wraps(method)
            async def noted(self: Any, *args: Any, **kwargs: Any) -> Any:
                began = time.perf_counter()
                if isinstance(items_at, int) and len(args) > items_at:
                    args = (*args[:items_at], list(args[items_at]), *args[items_at + 1:])
                    counted[1] += _size(args[items_at])
                try:
                    result = await method(self, *args, **kwargs)
                finally:
                    counted[0] += 1
                    counted[2] += time.perf_counter() - began
                if items_at == "result":
                    counted[1] += _size(result)
                return result
            return noted

        setattr(owner, name, wrap(method, counted, items_at))


def write_counts(target: Path, counts: Counts, stop: threading.Event) -> None:
    while True:
        snapshot = {"at": time.time(), **{name: list(values) for name, values in counts.items()}}
        target.with_suffix(".tmp").write_text(json.dumps(snapshot))
        target.with_suffix(".tmp").replace(target)
        if stop.wait(0.5):
            return


def main() -> None:
    counts: Counts = {}
    probe(counts)
    serve_writing(os.environ.get("SUNDIAL_CONSUMER_PROBE"), lambda path, stop: write_counts(path, counts, stop))

if __name__ == "__main__":
    main()
