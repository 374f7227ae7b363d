"""Running a command's async body and turning known failures into kubectl-like exits.

Exit codes: 0 ok, 1 a failure (unreachable backend, API error, a run that failed), 2 a usage
error (click's own). Tracebacks are for bugs only.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

import click

from sundial.cli.kube import KubeError, KubeUnreachable
from sundial.core.store import BackendUnavailable

T = TypeVar("T")


def run_async(body: Coroutine[Any, Any, T]) -> T:
    # psycopg's pool logs every failed connection attempt; the command reports the failure once.
    logging.getLogger("psycopg.pool").disabled = True
    try:
        return asyncio.run(body)
    except (KubeError, KubeUnreachable, BackendUnavailable) as exc:
        raise click.ClickException(str(exc)) from exc


def note(message: str) -> None:
    """A remark for the person at the terminal, on stderr so -o json stays parseable."""
    click.echo(f"note: {message}", err=True)
