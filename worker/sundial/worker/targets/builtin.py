"""Built-in targets every worker offers: `noop`, `sleep`, `fail` and `http`.

They register through the `sundial.targets` entry point like any team's package would. Params are
validated by small pydantic models; a bad value is a `PermanentFailure`, because retrying the same
params cannot succeed.
"""

from __future__ import annotations

import asyncio
import codecs
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Annotated, Any, Literal, TypeVar

import aiohttp
from aiohttp.abc import AbstractResolver
from pydantic import BaseModel, ConfigDict, Field, HttpUrl, ValidationError, field_validator, model_validator
from yarl import URL

from sundial.core.clock import SystemClock
from sundial.worker.targets.egress import EgressPolicy, GuardedResolver
from sundial.worker.targets.registry import EGRESS_GRANT, JsonObject, PermanentFailure, Retry, RunContext, target

MAX_SLEEP_SECONDS = 86400.0
TEXT_BODY_LIMIT = 2048  # bytes of a response body kept in run output
JSON_BODY_LIMIT = 16384  # a JSON body up to this size is stored parsed, larger ones as truncated text
ERROR_BODY_CHARS = 200
RETRY_AFTER_STATUSES = frozenset({429, 503})
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 10  # as aiohttp's own default

ParamsT = TypeVar("ParamsT", bound="TargetParams")


class TargetParams(BaseModel):
    """Base for a target's params: unknown keys are rejected so a typo cannot pass silently."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def parse_params(model: type[ParamsT], target_name: str, params: JsonObject) -> ParamsT:
    """Validate `params`, turning pydantic's report into a one-line `PermanentFailure`.

    Input values are left out of the message on purpose: params may carry secrets (headers).
    """
    try:
        return model.model_validate(params)
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_url=False):
            where = ".".join(str(part) for part in error["loc"])
            why = error["msg"].removeprefix("Value error, ")
            problems.append(f"{where}: {why}" if where else why)
        raise PermanentFailure(f"invalid params for {target_name}: {'; '.join(problems)}") from None


class DeliberateFailure(RuntimeError):
    """What `fail` raises when neither a permanent failure nor a specific retry was asked for."""


class HttpTargetError(RuntimeError):
    """A failed `http` attempt; retryable, since the far side may recover."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


# --- noop / sleep / fail ------------------------------------------------------------------------


@target("noop")
async def noop(ctx: RunContext, params: JsonObject) -> JsonObject:
    """Return at once; throughput benchmarks measure the scheduler, not this."""
    return {"ok": True}


class SleepParams(TargetParams):
    seconds: Annotated[float, Field(ge=0, le=MAX_SLEEP_SECONDS)]


@target("sleep")
async def sleep(ctx: RunContext, params: JsonObject) -> JsonObject:
    """Sleep for `seconds`; useful to exercise timeouts, concurrency policies and cancellation."""
    parsed = parse_params(SleepParams, "sleep", params)
    await asyncio.sleep(parsed.seconds)
    return {"slept": parsed.seconds}


class FailParams(TargetParams):
    message: str = "failed on request"
    permanent: bool = False
    retry_delay: Annotated[float, Field(ge=0, le=MAX_SLEEP_SECONDS)] | None = None

    @model_validator(mode="after")
    def _one_verdict(self) -> FailParams:
        if self.permanent and self.retry_delay is not None:
            raise ValueError("permanent and retry_delay are mutually exclusive")
        return self


@target("fail")
async def fail(ctx: RunContext, params: JsonObject) -> JsonObject:
    """Fail on purpose: plainly, permanently, or asking for a retry after `retry_delay` seconds."""
    parsed = parse_params(FailParams, "fail", params)
    if parsed.permanent:
        raise PermanentFailure(parsed.message)
    if parsed.retry_delay is not None:
        raise Retry(parsed.message, delay=parsed.retry_delay)
    raise DeliberateFailure(parsed.message)


# --- http ---------------------------------------------------------------------------------------

HttpMethod = Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
StatusCode = Annotated[int, Field(ge=100, le=599)]


class HttpParams(TargetParams):
    method: HttpMethod = "GET"
    url: HttpUrl
    headers: dict[str, str] = Field(default_factory=dict)
    # `json` would shadow a BaseModel attribute, hence the alias; null counts as "no JSON body".
    json_body: Any = Field(default=None, alias="json")
    body: str | None = None
    timeout_seconds: Annotated[float, Field(gt=0, le=MAX_SLEEP_SECONDS)] = 30.0
    expected_status: Annotated[list[StatusCode], Field(min_length=1)] | None = None
    # False: record only status and timing, for endpoints whose answers must not sit in run history.
    store_response: bool = True

    @field_validator("method", mode="before")
    @classmethod
    def _upper_method(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("headers")
    @classmethod
    def _no_header_injection(cls, headers: dict[str, str]) -> dict[str, str]:
        # aiohttp would refuse these at send time, which the worker would then retry forever.
        for name, value in headers.items():
            if any(ch in name or ch in value for ch in "\r\n"):
                raise ValueError(f"header {name!r} contains a line break")
        return headers

    @model_validator(mode="after")
    def _one_body(self) -> HttpParams:
        if self.json_body is not None and self.body is not None:
            raise ValueError("json and body are mutually exclusive")
        return self

    def accepts(self, status: int) -> bool:
        if self.expected_status is None:
            return 200 <= status < 300
        return status in self.expected_status


_worker_policy = EgressPolicy()
_inner_resolver: Callable[[], AbstractResolver] | None = None
_sessions: dict[EgressPolicy, aiohttp.ClientSession] = {}
_retired: list[aiohttp.ClientSession] = []
_session_loop: asyncio.AbstractEventLoop | None = None


def configure_http_egress(
    policy: EgressPolicy, *, resolver: Callable[[], AbstractResolver] | None = None
) -> None:
    """Set the worker's egress policy (and, for tests, the resolver names go through first).

    Sessions built under the previous policy serve no new request; a run already in flight keeps
    its own, and `close_http_session` closes them with the rest.
    """
    global _worker_policy, _inner_resolver
    _worker_policy, _inner_resolver = policy, resolver
    _retired.extend(_sessions.values())
    _sessions.clear()


def egress_policy_for(ctx: RunContext) -> EgressPolicy:
    """The policy a run's requests obey: the worker's, widened by what its namespace's TargetPolicy
    grants (its explicit denies, Sundial's own services, still win)."""
    grant = ctx.extra.get(EGRESS_GRANT)
    if not grant:
        return _worker_policy
    cidrs, hosts = grant
    return _worker_policy.widened(cidrs, hosts)


def http_session(policy: EgressPolicy | None = None) -> aiohttp.ClientSession:
    """The worker process's session for `policy`, created on first use in the running loop.

    A session is bound to the loop it was created in, so a new loop (tests, a restarted worker)
    gets a new one rather than a session that fails on first use. Each policy has its own session
    because the resolver enforcing it lives in the session's connector (and its DNS cache).
    """
    global _session_loop
    policy = policy or _worker_policy
    loop = asyncio.get_running_loop()
    if _session_loop is not loop:
        _sessions.clear()
        _retired.clear()  # bound to a loop that is gone: dropping them is all we can do
        _session_loop = loop
    session = _sessions.get(policy)
    if session is None or session.closed:
        inner = _inner_resolver() if _inner_resolver else None
        # Each request carries its own deadline; a session-wide one would silently cap it.
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(resolver=GuardedResolver(policy, inner)),
            timeout=aiohttp.ClientTimeout(total=None),
            headers={"User-Agent": "sundial-worker"},
        )
        _sessions[policy] = session
    return session


async def close_http_session() -> None:
    """Close the shared sessions; the worker calls this on shutdown."""
    global _session_loop
    sessions, loop = [*_sessions.values(), *_retired], _session_loop
    _sessions.clear()
    _retired.clear()
    _session_loop = None
    # A session from a loop that is gone cannot be closed from this one; dropping it is all we can do.
    if loop is asyncio.get_running_loop():
        for session in sessions:
            if not session.closed:
                await session.close()


def retry_after_seconds(value: str | None, now: datetime) -> float | None:
    """Parse a Retry-After header: delta-seconds or an HTTP-date. None when absent or unreadable."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT; parsedate gives naive for "-0000"
        return None
    return max(0.0, (when - now).total_seconds())


def _display_url(url: str) -> str:
    # Credentials in the URL must not end up in run history or logs.
    return str(URL(url).with_user(None))


async def _read_prefix(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """Read at most `limit` bytes: a huge body must not be loaded only to be truncated."""
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        chunk = await response.content.read(limit - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _decode(raw: bytes, charset: str | None) -> str:
    try:
        decoder = codecs.getincrementaldecoder(charset or "utf-8")(errors="replace")
    except LookupError:
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    # final=False drops a multi-byte character cut in half by the size limit instead of mangling it.
    return decoder.decode(raw, final=False)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # NaN/Infinity cannot be stored in jsonb


def _body_output(raw: bytes, response: aiohttp.ClientResponse, complete: bool) -> Any:
    content_type = response.content_type
    is_json = content_type == "application/json" or content_type.endswith("+json")
    if is_json and complete and raw:
        try:
            return json.loads(_decode(raw, response.charset), parse_constant=_reject_constant)
        except ValueError:
            pass  # a server mislabelling its body still gets it recorded, as text
    return _decode(raw[:TEXT_BODY_LIMIT], response.charset)


@dataclass(frozen=True)
class HttpHop:
    """One request of a possibly redirected call."""

    method: str
    url: URL
    json_body: Any
    body: str | None
    headers: dict[str, str]


def next_hop(hop: HttpHop, status: int, location: str) -> HttpHop:
    """The request a redirect asks for, as browsers and aiohttp make it.

    303 (and 301/302 after a POST) turn into a body-less GET; credentials stay with their origin.
    """
    url = hop.url.join(URL(location))
    if url.scheme not in {"http", "https"}:
        raise PermanentFailure(f"http target refused a redirect to {_display_url(str(url))}: not http(s)")
    method, json_body, body = hop.method, hop.json_body, hop.body
    if (status == 303 and method != "HEAD") or (status in {301, 302} and method == "POST"):
        method, json_body, body = "GET", None, None
    headers = hop.headers
    if url.origin() != hop.url.origin():
        headers = {k: v for k, v in headers.items() if k.lower() not in {"authorization", "cookie"}}
    return HttpHop(method, url, json_body, body, headers)


@target("http")
async def http(ctx: RunContext, params: JsonObject) -> JsonObject:
    """Call an HTTP endpoint; non-expected statuses fail the attempt, 429/503 honour Retry-After.

    Destinations (every redirect hop included) must pass the worker's egress policy
    (docs/security.md); a refused one fails the run for good, with nothing of a response stored.
    """
    parsed = parse_params(HttpParams, "http", params)
    policy = egress_policy_for(ctx)
    hop = HttpHop(parsed.method, URL(str(parsed.url)), parsed.json_body, parsed.body, parsed.headers)
    label = f"{parsed.method} {_display_url(str(hop.url))}"
    started = asyncio.get_running_loop().time()
    try:
        # asyncio.timeout covers DNS, connect, redirects and body alike, and stays distinct from
        # the worker's own cancellation, which must propagate untouched.
        async with asyncio.timeout(parsed.timeout_seconds):
            for _ in range(MAX_REDIRECTS + 1):
                policy.check_host(hop.url.raw_host or "")
                async with http_session(policy).request(
                    hop.method, hop.url, headers=hop.headers, json=hop.json_body, data=hop.body,
                    allow_redirects=False,
                ) as response:
                    location = response.headers.get("Location")
                    if response.status in REDIRECT_STATUSES and location:
                        hop = next_hop(hop, response.status, location)
                        continue
                    return await _http_outcome(parsed, label, response, started)
    except TimeoutError:
        # Raised as our own error, not TimeoutError, so it reads as a failed attempt rather than
        # the run's timeout, which the worker enforces and records separately.
        raise HttpTargetError(f"{label} timed out after {parsed.timeout_seconds:g}s") from None
    except aiohttp.ClientError as exc:
        raise HttpTargetError(f"{label} failed: {type(exc).__name__}: {exc}") from exc
    raise HttpTargetError(f"{label} failed: more than {MAX_REDIRECTS} redirects")


async def _http_outcome(
    parsed: HttpParams, label: str, response: aiohttp.ClientResponse, started: float
) -> JsonObject:
    """The run's output for an answered request, or the failure its status calls for."""
    raw = await _read_prefix(response, JSON_BODY_LIMIT + 1 if parsed.store_response else 0)
    status = response.status
    elapsed_ms = int((asyncio.get_running_loop().time() - started) * 1000)
    if not parsed.accepts(status):
        message = f"{label} returned {status}"
        if parsed.store_response:
            snippet = _decode(raw[: ERROR_BODY_CHARS * 4], response.charset)[:ERROR_BODY_CHARS]
            message = f"{message}: {snippet!r}"
        if status in RETRY_AFTER_STATUSES:
            delay = retry_after_seconds(response.headers.get("Retry-After"), SystemClock().now())
            if delay is not None:
                raise Retry(message, delay=delay)
        raise HttpTargetError(message, status=status)
    if not parsed.store_response:
        return {"status": status, "elapsed_ms": elapsed_ms}
    body = _body_output(raw, response, len(raw) <= JSON_BODY_LIMIT)
    return {"status": status, "elapsed_ms": elapsed_ms, "body": body}
