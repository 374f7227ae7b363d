"""Two failures kept apart on purpose.

`KubeUnreachable`: no cluster could be asked (nothing configured, or the API server did not
answer); a reader may fall back to PostgreSQL and say so. `KubeError`: the cluster answered no
(forbidden, not found, a bad context name); that is the answer, and falling back would hide it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class KubeUnreachable(RuntimeError):
    """No cluster could be asked: nothing is configured, or the API server did not answer."""


class KubeError(RuntimeError):
    """The API server answered with an error (or the configuration names something missing)."""

    def __init__(self, message: str, code: int | None = None, reason: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason

    @classmethod
    def from_status(cls, code: int, body: Mapping[str, Any]) -> KubeError:
        """From an API server answer: a metav1.Status body, or whatever else came back."""
        message = str(body.get("message") or f"HTTP {code}")
        return cls(f"Kubernetes API: {message}", code, str(body.get("reason") or ""))
