"""Resolving `secretKeyRef` params from the Secret files a pool's Deployment mounts, and keeping
the values out of everything the worker writes.

Why mounted Secrets rather than a resolver with a token: the worker runs arbitrary target code, so
any credential it holds is the target's too. A mounted Secret gives it the values its own team
already chose to hand its pool, and nothing else: no API token, no way to read another namespace.
The kubelet keeps the files current, so a rotated Secret is used from its next run on.

Layout: `<secrets_dir>/<secret name>/<key>` (one Secret volume per name, mounted at its name). A
pool mounts the Secrets of one namespace (`SUNDIAL_SECRETS_NAMESPACE`); a job of any other
namespace cannot resolve references here.

The values live only in the params handed to the target. Whatever the target returns or raises is
redacted before it is recorded, and log records made while the run executes are redacted by
`RedactSecrets` (installed on the worker's log handlers), so no value reaches PostgreSQL, Redis,
a log line or a metric label.
"""

from __future__ import annotations

import contextvars
import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final

from sundial.core.secrets import REF_KEY, SecretRef, SecretRefError, is_ref, parse_ref
from sundial.worker.executor import Outcome

REDACTED: Final = "[redacted]"
# The values of the run this task executes, for RedactSecrets (each run is its own task).
_RUN_SECRETS: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar("sundial_run_secrets", default=())


@dataclass(frozen=True)
class MountedSecrets:
    directory: Path
    namespace: str  # whose Secrets are mounted; "" for none

    def resolve(self, params: dict[str, Any], namespace: str) -> tuple[dict[str, Any], tuple[str, ...]]:
        """(params with every reference replaced by its value, the values); raises SecretRefError."""
        values: list[str] = []
        resolved = self._walk(params, namespace, "params", values)
        return resolved, tuple(sorted(set(values), key=len, reverse=True))

    def _walk(self, value: Any, namespace: str, where: str, values: list[str]) -> Any:
        if is_ref(value):
            secret = self._read(parse_ref(value, where), namespace, where)
            values.append(secret)
            return secret
        if isinstance(value, dict):
            return {key: self._walk(item, namespace, f"{where}.{key}", values) for key, item in value.items()}
        if isinstance(value, list):
            return [self._walk(item, namespace, f"{where}[{i}]", values) for i, item in enumerate(value)]
        return value

    def _read(self, ref: SecretRef, namespace: str, where: str) -> str:
        if ref.namespace is not None and ref.namespace != namespace:
            raise SecretRefError(f"{where}.{REF_KEY}: refers to a Secret in namespace {ref.namespace}; "
                                 f"a job may only use Secrets of its own namespace ({namespace})")
        if namespace != self.namespace:
            mounted = f"those of namespace {self.namespace}" if self.namespace else "none"
            raise SecretRefError(f"{where}.{REF_KEY}: this worker pool mounts no Secrets of namespace {namespace} "
                                 f"({mounted}); run the job in its namespace's pool (spec.workerPool)")
        path = self.directory / ref.name / ref.key
        try:
            return path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise SecretRefError(f"{where}.{REF_KEY}: {ref} is not mounted in this worker pool "
                                 "(add it to the pool's secrets in the chart)") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise SecretRefError(f"{where}.{REF_KEY}: {ref} cannot be read: {type(exc).__name__}") from None


def redact(value: Any, secrets: tuple[str, ...]) -> Any:
    """`value` with every occurrence of a secret replaced, in strings and keys, however deep."""
    if not secrets:
        return value
    if isinstance(value, str):
        for secret in secrets:  # longest first, so one secret inside another is fully covered
            if secret:
                value = value.replace(secret, REDACTED)
        return value
    if isinstance(value, dict):
        return {redact(key, secrets): redact(item, secrets) for key, item in value.items()}
    if isinstance(value, list):
        return [redact(item, secrets) for item in value]
    return value


def redact_outcome(outcome: Outcome, secrets: tuple[str, ...]) -> Outcome:
    if not secrets:
        return outcome
    return replace(outcome, output=redact(outcome.output, secrets), error=redact(outcome.error, secrets))


def bind_run_secrets(secrets: tuple[str, ...]) -> None:
    """Mark the current task as holding these values, for RedactSecrets."""
    _RUN_SECRETS.set(secrets)


class RedactSecrets(logging.Filter):
    """Redacts the current run's secret values from a log record (message and traceback)."""

    def filter(self, record: logging.LogRecord) -> bool:
        secrets = _RUN_SECRETS.get()
        if not secrets:
            return True
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + logging.Formatter().formatException(record.exc_info)
            record.exc_info, record.exc_text = None, None
        record.msg, record.args = redact(message, secrets), ()
        return True


def install_redaction() -> None:
    """On every root handler: records of any logger pass through them."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactSecrets) for f in handler.filters):
            handler.addFilter(RedactSecrets())
