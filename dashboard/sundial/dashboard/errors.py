"""One error shape for every failure the API reports.

    {"error": {"status": 400, "reason": "Invalid", "message": "...", "fields": [{"field": ..., "message": ...}]}}

Kubernetes `Status` objects, pydantic validation errors and backend outages all become this,
so the page has a single place to read problems from.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError
from pydantic.alias_generators import to_camel


@dataclass(frozen=True)
class FieldProblem:
    field: str
    message: str


@dataclass
class ApiProblem(Exception):
    status: int
    reason: str
    message: str
    fields: list[FieldProblem] = field(default_factory=list)

    def __str__(self) -> str:
        return f"{self.status} {self.reason}: {self.message}"

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "status": self.status,
                "reason": self.reason,
                "message": self.message,
                "fields": [{"field": f.field, "message": f.message} for f in self.fields],
            }
        }


def not_found(what: str) -> ApiProblem:
    return ApiProblem(404, "NotFound", f"{what} not found")


def invalid(fields: Iterable[FieldProblem]) -> ApiProblem:
    problems = list(fields)
    message = "; ".join(f"{p.field}: {p.message}" for p in problems) or "invalid request"
    return ApiProblem(400, "Invalid", message, problems)


def from_validation_error(exc: ValidationError, prefix: str) -> ApiProblem:
    """Field paths in the spec's own camelCase, e.g. `spec.retry.attempts`."""
    problems = []
    for error in exc.errors():
        path = ".".join(to_camel(str(part)) if isinstance(part, str) else str(part) for part in error["loc"])
        where = f"{prefix}.{path}" if path else prefix
        problems.append(FieldProblem(where, _plain_message(error["msg"])))
    return invalid(problems)


def _plain_message(message: str) -> str:
    # pydantic prefixes messages raised by validators with "Value error, ".
    return message.removeprefix("Value error, ")


# Kubernetes `Status.reason` values mapped to what the API answers.
_KUBE_STATUS = {401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 409: "Conflict"}


def from_kube_status(code: int, status: Mapping[str, Any]) -> ApiProblem:
    message = str(status.get("message") or f"Kubernetes API answered {code}")
    if code == 422 or (code == 400 and status.get("reason") in {"Invalid", "BadRequest"}):
        causes = (status.get("details") or {}).get("causes") or []
        problems = [FieldProblem(_kube_field(c.get("field", "")), str(c.get("message", ""))) for c in causes]
        return ApiProblem(400, "Invalid", _admission_message(message), problems)
    if code in _KUBE_STATUS:
        return ApiProblem(code, _KUBE_STATUS[code], message)
    if code == 410:
        return ApiProblem(409, "Conflict", message)
    if code == 429 or code >= 500:
        return ApiProblem(503, "BackendUnavailable", f"Kubernetes API: {message}")
    return ApiProblem(code if 400 <= code < 500 else 502, str(status.get("reason") or "Error"), message)


def _kube_field(path: str) -> str:
    # metadata.name is what the request calls `name`; spec paths are already the body's paths.
    return {"metadata.name": "name", "metadata.namespace": "namespace"}.get(path, path)


def _admission_message(message: str) -> str:
    # 'admission webhook "x" denied the request: <why>' -- the why is what a person needs.
    marker = "denied the request: "
    return message.split(marker, 1)[1] if marker in message else message
