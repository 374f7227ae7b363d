"""Who is asking the run history API, and may they: front-proxy authentication and delegated
authorization, as every aggregated API server does it (metrics-server, sample-apiserver).

1. The TLS handshake verified the client certificate against the front proxy's CA; its common
   name must be one of the allowed names (any, when the list is empty). Without such a
   certificate the headers prove nothing and the request is answered 401.
2. The caller is read from the username, group and extra headers the front proxy set.
3. A SubjectAccessReview decides each (caller, verb, namespace) question; answers are reused
   for a few seconds, as the generic apiserver's delegating authorizer does.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final
from urllib.parse import unquote

from multidict import CIMultiDictProxy

from sundial.core.clock import Clock
from sundial.kube.delegation import Access, Caller, FrontProxy

# A bound on remembered answers: past it the cache starts again rather than grow.
CACHE_ENTRIES: Final = 10_000

Review = Callable[[Caller, Access], Awaitable[tuple[bool, str]]]


class Unauthorized(Exception):
    """No front-proxy certificate vouches for this request (answered 401)."""


def certificate_common_name(peer_certificate: Mapping[str, Any] | None) -> str | None:
    """The CN of a certificate as `ssl.SSLSocket.getpeercert()` describes it."""
    for rdn in (peer_certificate or {}).get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return None


def authenticate(proxy: FrontProxy, peer_certificate: Mapping[str, Any] | None,
                 headers: CIMultiDictProxy[str]) -> Caller:
    """The caller the front proxy names, once its certificate is the one allowed to name them."""
    name = certificate_common_name(peer_certificate)
    if name is None:
        raise Unauthorized("no front-proxy client certificate: this API is served through the kube-apiserver")
    if proxy.allowed_names and name not in proxy.allowed_names:
        raise Unauthorized(f"client certificate {name!r} is not an allowed front proxy")
    user = next((headers[h] for h in proxy.username_headers if headers.get(h)), "")
    if not user:
        raise Unauthorized("the front proxy named no user")
    groups = tuple(value for h in proxy.group_headers for value in headers.getall(h, []))
    return Caller(user=user, groups=groups, extra=_extra(proxy.extra_prefixes, headers))


def _extra(prefixes: tuple[str, ...], headers: CIMultiDictProxy[str]) -> tuple[tuple[str, tuple[str, ...]], ...]:
    found: dict[str, list[str]] = {}
    for header, value in headers.items():
        for prefix in prefixes:
            if header.lower().startswith(prefix.lower()):
                # Keys travel percent-encoded and are case-insensitive (k8s.io/apiserver requestheader).
                found.setdefault(unquote(header[len(prefix):]).lower(), []).append(value)
    return tuple(sorted((key, tuple(values)) for key, values in found.items()))


class Authorizer:
    """SubjectAccessReview answers, each reused for `ttl_seconds` for the same question."""

    def __init__(self, review: Review, clock: Clock, ttl_seconds: float) -> None:
        self._review = review
        self._clock = clock
        self._ttl = ttl_seconds
        self._answers: dict[tuple[Caller, Access], tuple[float, bool, str]] = {}

    async def decide(self, caller: Caller, access: Access) -> tuple[bool, str]:
        key = (caller, access)
        now = self._clock.monotonic()
        cached = self._answers.get(key)
        if cached is not None and cached[0] > now:
            return cached[1], cached[2]
        allowed, reason = await self._review(caller, access)
        if len(self._answers) >= CACHE_ENTRIES:
            self._answers.clear()
        if self._ttl > 0:
            self._answers[key] = (now + self._ttl, allowed, reason)
        return allowed, reason
