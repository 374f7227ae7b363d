"""`secretKeyRef` in params: a reference to a key of a Kubernetes Secret, never its value.

    params: {headers: {Authorization: {secretKeyRef: {name: api-token, key: header}}}}

Any JSON object in params whose only key is `secretKeyRef` is a reference. The spec, the
PostgreSQL row, the Redis entry and every run message carry the reference; only the worker that
runs the job turns it into the value, from the Secret files its pool's Deployment mounts (see
`sundial.worker.secrets`), just before calling the target. A reference may name its namespace,
but only the job's own: another namespace's Secret is refused at admission and by the worker.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

REF_KEY: Final = "secretKeyRef"
# As Kubernetes spells Secret names (DNS subdomain) and data keys.
NAME_PATTERN: Final = r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$"
KEY_PATTERN: Final = r"^[-._a-zA-Z0-9]+$"


class SecretRefError(ValueError):
    """A reference that cannot be resolved; the message says where and why, never a value."""


@dataclass(frozen=True)
class SecretRef:
    name: str
    key: str
    namespace: str | None = None

    def __str__(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        return f"Secret {where}{self.name} key {self.key}"


def is_ref(value: object) -> bool:
    return isinstance(value, dict) and len(value) == 1 and REF_KEY in value


def has_refs(value: Any) -> bool:
    if is_ref(value):
        return True
    if isinstance(value, dict):
        return any(has_refs(item) for item in value.values())
    if isinstance(value, list):
        return any(has_refs(item) for item in value)
    return False


def parse_ref(value: dict[str, Any], where: str) -> SecretRef:
    body = value[REF_KEY]
    if not isinstance(body, dict) or set(body) - {"name", "key", "namespace"}:
        raise SecretRefError(f"{where}.{REF_KEY}: expected {{name, key}} (and optionally namespace)")
    name, key, namespace = body.get("name"), body.get("key"), body.get("namespace")
    if not isinstance(name, str) or not re.fullmatch(NAME_PATTERN, name) or len(name) > 253:
        raise SecretRefError(f"{where}.{REF_KEY}.name: not a Secret name")
    if not isinstance(key, str) or not re.fullmatch(KEY_PATTERN, key) or len(key) > 253 or key in (".", ".."):
        raise SecretRefError(f"{where}.{REF_KEY}.key: not a Secret data key")
    if namespace is not None and (not isinstance(namespace, str) or not re.fullmatch(NAME_PATTERN, namespace)):
        raise SecretRefError(f"{where}.{REF_KEY}.namespace: not a namespace name")
    return SecretRef(name, key, namespace)


def secret_refs(params: Any, where: str = "spec.params") -> Iterator[tuple[str, SecretRef]]:
    """(path, reference) for every reference in `params`; raises SecretRefError for a malformed one."""
    if is_ref(params):
        yield where, parse_ref(params, where)
    elif isinstance(params, dict):
        for key, item in params.items():
            yield from secret_refs(item, f"{where}.{key}")
    elif isinstance(params, list):
        for index, item in enumerate(params):
            yield from secret_refs(item, f"{where}[{index}]")


def foreign_ref_refusal(params: Any, namespace: str) -> str | None:
    """Why these params may not run in `namespace` (a malformed reference, or one to another
    namespace's Secret), or None."""
    try:
        for where, ref in secret_refs(params):
            if ref.namespace is not None and ref.namespace != namespace:
                return (f"{where}.{REF_KEY}: refers to a Secret in namespace {ref.namespace}; a job may only "
                        f"use Secrets of its own namespace ({namespace})")
    except SecretRefError as exc:
        return str(exc)
    return None
