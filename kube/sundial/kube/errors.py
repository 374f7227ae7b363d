"""Two failures kept apart on purpose, and which failures are worth retrying.

`KubeUnreachable`: no cluster could be asked (nothing configured, or the API server did not
answer); a reader may fall back to PostgreSQL and say so. `KubeError`: the cluster answered no
(forbidden, not found, a bad context name); that is the answer, and falling back would hide it.
`is_transient` is the operator's retry rule: no answer, or the server busy or throttling.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import httpx2
from lightkube import ApiError

# Every way a request can fail without the API server answering it.
TRANSPORT_ERRORS: Final = (httpx2.TransportError, OSError)
# API server answers that say "not now" rather than "no".
TRANSIENT_CODES: Final = frozenset({409, 429, 500, 502, 503, 504})


class KubeUnreachable(RuntimeError):
    """No cluster could be asked: nothing is configured, or the API server did not answer."""

    @classmethod
    def at(cls, server: str, exc: BaseException) -> KubeUnreachable:
        detail = str(exc).strip() or type(exc).__name__
        return cls(f"Kubernetes API at {server} is unreachable: {detail}")


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


def is_transient(exc: BaseException) -> bool:
    """A failure worth retrying as it is: no answer, or the server busy or throttling."""
    if isinstance(exc, ApiError):
        return exc.status.code in TRANSIENT_CODES
    return isinstance(exc, TRANSPORT_ERRORS)
