"""What stands in front of every route: security headers, body size limits, failed-login throttling.

Plain ASGI, outermost, so the answers given here (413, 429) carry the same headers and the same
JSON error shape as any other, and nothing a handler does can skip them.
"""

from __future__ import annotations

import json
import math
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Final

from sundial.dashboard.errors import ApiProblem

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

SECURITY_HEADERS: Final = {
    # The page loads only its own module scripts and styles: no inline code to allow.
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; object-src 'none'; frame-ancestors 'none'; "
        "base-uri 'none'; form-action 'self'"
    ),
    "X-Frame-Options": "DENY",  # frame-ancestors for browsers that predate it
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
_ENCODED_HEADERS: Final = [(k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]


class LoginThrottle:
    """Per client address: after `limit` failed logins within `window` seconds, refuse for a while.

    A sliding window: a client is let in again once its oldest counted failure is `window` old.
    Pure and clock-free: callers pass `now` (monotonic seconds). At most `max_clients` addresses are
    remembered, oldest first out, so a flood of addresses cannot grow memory without bound.
    """

    def __init__(self, limit: int, window: float, max_clients: int = 10_000) -> None:
        self.limit = limit
        self.window = window
        self.max_clients = max_clients
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def retry_after(self, client: str, now: float) -> float | None:
        """Seconds until `client` may try again, or None when it may try now."""
        failures = self._failures.get(client)
        if failures is None:
            return None
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        if not failures:
            del self._failures[client]
            return None
        if len(failures) < self.limit:
            return None
        return failures[0] + self.window - now

    def failed(self, client: str, now: float) -> None:
        failures = self._failures.pop(client, None) or deque(maxlen=self.limit)
        failures.append(now)
        self._failures[client] = failures  # most recent last
        while len(self._failures) > self.max_clients:
            self._failures.popitem(last=False)


class Guard:
    """ASGI middleware applying the three rules to every HTTP request."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int, throttle: LoginThrottle,
                 monotonic: Callable[[], float]) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.throttle = throttle
        self.monotonic = monotonic

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        send = _with_headers(send)
        client = (scope.get("client") or ("unknown",))[0]
        wait = self.throttle.retry_after(client, self.monotonic())
        if wait is not None:
            problem = ApiProblem(429, "TooManyRequests", "too many failed logins from this address; try again later")
            await _answer(send, problem, {"retry-after": str(math.ceil(wait))})
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_body_bytes:
            await _answer(send, self._too_large())
            return
        body = _BodyLimit(receive, send, self.max_body_bytes)
        try:
            await self.app(scope, body.receive, self._watch_logins(send, client))
        except Exception:
            if not body.refused:
                raise
            # The app saw the client "disconnect" mid-body and gave up; the 413 has been sent.

    def _too_large(self) -> ApiProblem:
        return _too_large(self.max_body_bytes)

    def _watch_logins(self, send: Send, client: str) -> Send:
        async def watched(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 401:
                self.throttle.failed(client, self.monotonic())
            await send(message)

        return watched


def _too_large(limit: int) -> ApiProblem:
    return ApiProblem(413, "TooLarge", f"request body larger than {limit} bytes")


class _BodyLimit:
    """A chunked body has no Content-Length: count it as it arrives, and answer 413 once over."""

    def __init__(self, receive: Receive, send: Send, limit: int) -> None:
        self._receive, self._send, self._limit = receive, send, limit
        self._received = 0
        self.refused = False

    async def receive(self) -> Message:
        message = await self._receive()
        if message["type"] == "http.request" and not self.refused:
            self._received += len(message.get("body", b""))
            if self._received > self._limit:
                self.refused = True
                await _answer(self._send, _too_large(self._limit))
        if self.refused:
            return {"type": "http.disconnect"}  # the app stops reading; its own answer is dropped
        return message


def _with_headers(send: Send) -> Send:
    """Adds the security headers to the one answer; drops any second answer (the app's, after a 413)."""
    stage = "idle"

    async def with_headers(message: Message) -> None:
        nonlocal stage
        if message["type"] == "http.response.start":
            if stage != "idle":
                return
            stage = "started"
            names = {name.lower() for name, _ in message.get("headers", [])}
            extra = [(name, value) for name, value in _ENCODED_HEADERS if name not in names]
            message["headers"] = [*message.get("headers", []), *extra]
        elif message["type"] == "http.response.body":
            if stage != "started":
                return
            if not message.get("more_body", False):
                stage = "closed"
        await send(message)

    return with_headers


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _answer(send: Send, problem: ApiProblem, headers: dict[str, str] | None = None) -> None:
    body = json.dumps(problem.body()).encode()
    raw_headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw_headers += [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": problem.status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body})
