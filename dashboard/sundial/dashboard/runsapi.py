"""`sundial-runs-api`: run history served as the read-only aggregated API `runs.sundial.dev`.

The kube-apiserver forwards `kubectl get scheduledjobruns` (and `kubectl sundial runs`) here
through an APIService, as it forwards `kubectl top` to metrics-server; RBAC on
`scheduledjobruns.runs.sundial.dev` decides who reads what (sundial.dashboard.runsauth).
Reads are `Store.run_rows` / `Store.run_row`; objects and tables come from
sundial.core.runobjects. Nothing is stored in etcd.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import ssl
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Final

import psycopg
from aiohttp import web
from lightkube import AsyncClient

from sundial.core import runobjects as ro
from sundial.core.clock import SYSTEM_CLOCK, Clock
from sundial.core.config import ConfigError, RunsApiSettings, load_runs_api_settings
from sundial.core.logs import configure_logging
from sundial.core.store import BackendUnavailable, Store
from sundial.dashboard import runsopenapi, runswatch
from sundial.dashboard.runsauth import Authorizer, Unauthorized, authenticate
from sundial.dashboard.runswatch import Expired, RunChanges
from sundial.kube.config import load_config
from sundial.kube.delegation import Access, Caller, FrontProxy, read_front_proxy, review_access
from sundial.kube.errors import KubeError

log = logging.getLogger("sundial.runsapi")

PREFIX: Final = f"/apis/{ro.GROUP}/{ro.VERSION}"
UNAUTHENTICATED: Final = frozenset({"/healthz", "/livez", "/readyz"})
STORE: Final = web.AppKey("store", Store)
AUTHORIZER: Final = web.AppKey("authorizer", Authorizer)
PROXY: Final = web.AppKey("front_proxy", FrontProxy)
CLOCK: Final = web.AppKey("clock", Clock)
CHANGES: Final = web.AppKey("changes", RunChanges)
CALLER: Final = "caller"
# A probe answers within Kubernetes' default 1 s timeout even when PostgreSQL hangs.
READY_PING_SECONDS: Final = 0.8
# A watch without timeoutSeconds ends after this, as the kube-apiserver's --min-request-timeout.
WATCH_DEFAULT_SECONDS: Final = 1800
# With allowWatchBookmarks, a quiet watch is told the current resourceVersion this often.
BOOKMARK_SECONDS: Final = 5.0
# A watch from a version the poller has not read yet waits this long for it (as the kube-apiserver
# waits 3 s for its watch cache) before it is answered 410 Gone.
FUTURE_VERSION_WAIT_SECONDS: Final = 3.0
CERTIFICATE_CHECK_SECONDS: Final = 30.0

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


# ---- answers in the API's shapes -----------------------------------------------------------


def status_body(code: int, reason: str, message: str, name: str | None = None) -> dict[str, Any]:
    details: dict[str, Any] = {"group": ro.GROUP, "kind": ro.PLURAL}
    if name:
        details["name"] = name
    return {"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure", "message": message,
            "reason": reason, "details": details, "code": code}


def status_response(code: int, reason: str, message: str, name: str | None = None) -> web.Response:
    return web.json_response(status_body(code, reason, message, name), status=code)


def wants_table(request: web.Request) -> bool:
    """kubectl asks `application/json;as=Table;v=v1;g=meta.k8s.io` first; honour the first choice."""
    first = request.headers.get("Accept", "").split(",")[0]
    params = {part.split("=", 1)[0].strip(): part.split("=", 1)[-1].strip() for part in first.split(";")[1:]}
    return params.get("as") == "Table" and params.get("g") == "meta.k8s.io"


def discovery_group() -> dict[str, Any]:
    version = {"groupVersion": ro.API_VERSION, "version": ro.VERSION}
    return {"kind": "APIGroup", "apiVersion": "v1", "name": ro.GROUP, "versions": [version],
            "preferredVersion": version}


def discovery_resources() -> dict[str, Any]:
    resource = {"name": ro.PLURAL, "singularName": ro.SINGULAR, "namespaced": True, "kind": ro.KIND,
                "verbs": list(ro.VERBS), "shortNames": list(ro.SHORT_NAMES)}
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": ro.API_VERSION, "resources": [resource]}


# ---- middleware ----------------------------------------------------------------------------


@web.middleware
async def front_proxy_only(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path in UNAUTHENTICATED:
        return await handler(request)
    transport = request.transport
    peer = transport.get_extra_info("peercert") if transport is not None else None
    try:
        request[CALLER] = authenticate(request.app[PROXY], peer, request.headers)
    except Unauthorized as exc:
        return status_response(401, "Unauthorized", str(exc))
    if request.method not in ("GET", "HEAD"):
        return status_response(405, "MethodNotAllowed", f"{ro.RESOURCE} is read-only: only get and list are served")
    try:
        return await handler(request)
    except ro.BadRequest as exc:
        return status_response(400, "BadRequest", str(exc))
    except ro.NotFound as exc:
        return status_response(404, "NotFound", str(exc), request.match_info.get("name"))
    except (psycopg.Error, TimeoutError) as exc:
        log.warning("run history unavailable: %s", exc)
        return status_response(503, "ServiceUnavailable", f"run history is unavailable: {exc}")
    except KubeError as exc:
        log.warning("authorization unavailable: %s", exc)
        return status_response(503, "ServiceUnavailable", f"cannot authorize the request: {exc}")


async def authorize(request: web.Request, verb: str, namespace: str | None, name: str | None = None
                    ) -> web.Response | None:
    """None when the caller may `verb` runs here; else the 403 to answer."""
    caller: Caller = request[CALLER]
    access = Access(verb=verb, group=ro.GROUP, resource=ro.PLURAL, namespace=namespace, name=name)
    allowed, reason = await request.app[AUTHORIZER].decide(caller, access)
    if allowed:
        return None
    where = f' in the namespace "{namespace}"' if namespace else " at the cluster scope"
    target = f'{ro.RESOURCE} "{name}"' if name else ro.RESOURCE
    message = (f'{target} is forbidden: User "{caller.user}" cannot {verb} resource "{ro.PLURAL}" '
               f'in API group "{ro.GROUP}"{where}' + (f": {reason}" if reason else ""))
    return status_response(403, "Forbidden", message, name)


# ---- handlers ------------------------------------------------------------------------------


async def health(request: web.Request) -> web.Response:
    if request.path == "/readyz":
        try:
            await request.app[STORE].ping(give_up_after=READY_PING_SECONDS)
        except (psycopg.Error, TimeoutError) as exc:
            return web.Response(status=503, text=f"PostgreSQL: {exc}")
    return web.Response(text="ok")


async def api_groups(request: web.Request) -> web.Response:
    return web.json_response({"kind": "APIGroupList", "apiVersion": "v1", "groups": [discovery_group()]})


async def api_group(request: web.Request) -> web.Response:
    return web.json_response(discovery_group())


async def api_resources(request: web.Request) -> web.Response:
    return web.json_response(discovery_resources())


def _openapi(document: Callable[[], bytes]) -> Handler:
    """A fixed document, with the ETag the aggregator revalidates by."""
    async def serve(request: web.Request) -> web.StreamResponse:
        body = document()
        tag = f'"{runsopenapi.etag(body)}"'
        if request.headers.get("If-None-Match") == tag:
            return web.Response(status=304, headers={"ETag": tag})
        return web.Response(body=body, content_type="application/json", headers={"ETag": tag})

    return serve


async def list_runs(request: web.Request) -> web.StreamResponse:
    namespace = request.match_info.get("namespace")
    if request.query.get("watch") in ("1", "true"):
        return await watch_runs(request, namespace)
    denied = await authorize(request, "list", namespace)
    if denied is not None:
        return denied
    query = ro.run_query(namespace, request.query.get("labelSelector", ""), request.query.get("fieldSelector", ""),
                         request.query.get("continue", ""))
    limit = ro.page_limit(request.query.get("limit", ""))
    # Read before the rows, from PostgreSQL rather than the poller's last tick (up to a poll
    # interval old, so a run written since would be listed above the list's version and sent
    # again by a watch from it): every write up to it is in the list, so a watch misses nothing.
    version = max(await request.app[STORE].run_version_horizon() - 1, 0)
    rows = await request.app[STORE].run_rows(query, limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    token = ro.encode_continue(rows[-1]) if more else None
    return _objects(request, [ro.run_object(row) for row in rows], token, single=False, version=str(version))


async def watch_runs(request: web.Request, namespace: str | None) -> web.StreamResponse:
    """`?watch=1`: JSON lines of ADDED, MODIFIED and DELETED events (and BOOKMARK when asked) from the
    resourceVersion given (runswatch), until timeoutSeconds or the client leaves."""
    denied = await authorize(request, "watch", namespace)
    if denied is not None:
        return denied
    changes = request.app[CHANGES]
    query = ro.run_query(namespace, request.query.get("labelSelector", ""), request.query.get("fieldSelector", ""),
                         "")
    try:
        since = runswatch.parse_version(request.query.get("resourceVersion", ""))
        timeout = int(request.query.get("timeoutSeconds") or WATCH_DEFAULT_SECONDS)
    except ValueError as exc:
        raise ro.BadRequest(str(exc)) from None
    await changes.caught_up(since, FUTURE_VERSION_WAIT_SECONDS, request.app[CLOCK])
    try:
        cursor = changes.cursor(since)
    except Expired as exc:
        return status_response(410, "Expired", str(exc))
    stream = web.StreamResponse(headers={"Content-Type": "application/json"})
    stream.enable_chunked_encoding()
    await stream.prepare(request)
    clock = request.app[CLOCK]
    deadline = clock.monotonic() + max(timeout, 0)
    bookmarks = request.query.get("allowWatchBookmarks") in ("1", "true")
    seen = runswatch.Seen(changes.resource_version if since is None else since)
    quiet_since = clock.monotonic()
    try:
        while clock.monotonic() < deadline and not changes.closed and not _gone(request):
            try:
                found, cursor = changes.since(cursor)
            except Expired as exc:
                await _event(stream, "ERROR", status_body(410, "Expired", str(exc)))
                break
            if await _send_changes(request, stream, query, found, seen):
                quiet_since = clock.monotonic()
            elif bookmarks and clock.monotonic() - quiet_since >= BOOKMARK_SECONDS:
                await _event(stream, "BOOKMARK", {"apiVersion": ro.API_VERSION, "kind": ro.KIND, "metadata": {
                    "resourceVersion": str(changes.resource_version)}})
                quiet_since = clock.monotonic()
            await changes.next_tick(max(0.0, min(deadline - clock.monotonic(), BOOKMARK_SECONDS)))
    except ConnectionResetError:
        return stream  # the client left while we wrote
    await stream.write_eof()
    return stream


def _gone(request: web.Request) -> bool:
    """The client left (nothing is written to a quiet watch that would tell)."""
    return request.transport is None or request.transport.is_closing()


async def _send_changes(request: web.Request, stream: web.StreamResponse, query: Any,
                        found: list[runswatch.Change], seen: runswatch.Seen) -> int:
    """Write the changes the watch selects; how many."""
    sent = 0
    for change in found:
        # A list can be newer than the poller's last tick: what it already showed is not sent again.
        if change.row.resource_version <= seen.since or not runswatch.matches(query, change.row):
            continue
        event = seen.event_type(change.row)
        if event is None:
            continue
        obj = ro.run_object(change.row)
        if wants_table(request):
            include = request.query.get("includeObject", "Object")
            obj = ro.table([obj], request.app[CLOCK].now(), None, include, str(change.row.resource_version))
        await _event(stream, event, obj)
        sent += 1
    return sent


async def _event(stream: web.StreamResponse, kind: str, obj: dict[str, Any]) -> None:
    await stream.write(json.dumps({"type": kind, "object": obj}, separators=(",", ":")).encode() + b"\n")


async def get_run(request: web.Request) -> web.Response:
    namespace, name = request.match_info["namespace"], request.match_info["name"]
    denied = await authorize(request, "get", namespace, name)
    if denied is not None:
        return denied
    wanted = ro.parse_run_name(name)
    row = await request.app[STORE].run_row(namespace, wanted.job_name, wanted.logical_time, wanted.attempt)
    if row is None:
        raise ro.NotFound(f'{ro.RESOURCE} "{name}" not found')
    return _objects(request, [ro.run_object(row)], None, single=True, version=str(row.resource_version))


def _objects(request: web.Request, objects: list[dict[str, Any]], token: str | None, *, single: bool,
             version: str) -> web.Response:
    if wants_table(request):
        include = request.query.get("includeObject", "Metadata")
        body = ro.table(objects, request.app[CLOCK].now(), token, include, version)
        return web.json_response(body, content_type="application/json")
    return web.json_response(objects[0] if single else ro.list_object(objects, token, version))


# ---- the application -----------------------------------------------------------------------


def create_app(store: Store, authorizer: Authorizer, proxy: FrontProxy, clock: Clock = SYSTEM_CLOCK,
               changes: RunChanges | None = None) -> web.Application:
    app = web.Application(middlewares=[front_proxy_only])
    app[STORE], app[AUTHORIZER], app[PROXY], app[CLOCK] = store, authorizer, proxy, clock
    app[CHANGES] = changes or RunChanges()
    app.router.add_get("/healthz", health)
    app.router.add_get("/livez", health)
    app.router.add_get("/readyz", health)
    app.router.add_get("/apis", api_groups)
    app.router.add_get(f"/apis/{ro.GROUP}", api_group)
    app.router.add_get(PREFIX, api_resources)
    app.router.add_get("/openapi/v2", _openapi(runsopenapi.openapi_v2))
    app.router.add_get("/openapi/v3", _openapi(runsopenapi.openapi_v3_discovery))
    app.router.add_get(f"/openapi/v3/{runsopenapi.V3_PATH}", _openapi(runsopenapi.openapi_v3_group))
    app.router.add_get(f"{PREFIX}/{ro.PLURAL}", list_runs)
    app.router.add_get(f"{PREFIX}/namespaces/{{namespace}}/{ro.PLURAL}", list_runs)
    app.router.add_get(f"{PREFIX}/namespaces/{{namespace}}/{ro.PLURAL}/{{name}}", get_run)
    return app


def tls_context(settings: RunsApiSettings, proxy: FrontProxy) -> ssl.SSLContext:
    """Serving certificate, and the front proxy's CA for client certificates (optional in the
    handshake so the health probes pass; without one every other request is answered 401)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(settings.tls_cert_file, settings.tls_key_file)
    context.load_verify_locations(cadata=proxy.ca_pem)
    context.verify_mode = ssl.CERT_OPTIONAL
    return context


async def build(settings: RunsApiSettings) -> tuple[web.Application, FrontProxy]:
    kube = AsyncClient(load_config(), field_manager="sundial-runs-api")
    if settings.requestheader_ca_file:
        proxy = FrontProxy(ca_pem=await asyncio.to_thread(Path(settings.requestheader_ca_file).read_text))
    else:
        proxy = await read_front_proxy(kube)

    async def review(caller: Caller, access: Access) -> tuple[bool, str]:
        return await review_access(kube, caller, access)

    store = await Store.open(settings.database_url, min_size=1, max_size=4)
    changes = RunChanges(settings.watch_capacity)
    app = create_app(store, Authorizer(review, SYSTEM_CLOCK, settings.authorization_cache_seconds), proxy,
                     changes=changes)
    poller = asyncio.create_task(runswatch.poll(store, changes, settings.watch_poll_seconds), name="run-changes")

    async def close(_: web.Application) -> None:
        poller.cancel()
        await asyncio.gather(poller, return_exceptions=True)
        await store.close()
        await kube.close()

    app.on_cleanup.append(close)
    return app, proxy


def _certificate_stamp(settings: RunsApiSettings) -> tuple[int, ...]:
    found = [Path(name).stat() for name in (settings.tls_cert_file, settings.tls_key_file)]
    return tuple(value for stat in found for value in (stat.st_ino, stat.st_mtime_ns))


async def reload_certificate(settings: RunsApiSettings, context: ssl.SSLContext) -> None:
    """Forever: load a renewed serving certificate (cert-manager rewrites the mounted Secret) into
    the context, which new connections then present."""
    stamp = await asyncio.to_thread(_certificate_stamp, settings)
    while True:
        await asyncio.sleep(CERTIFICATE_CHECK_SECONDS)
        try:
            now = await asyncio.to_thread(_certificate_stamp, settings)
            if now != stamp:
                context.load_cert_chain(settings.tls_cert_file, settings.tls_key_file)
                stamp = now
                log.info("loaded the renewed serving certificate %s", settings.tls_cert_file)
        except (OSError, ssl.SSLError) as exc:  # half-written during the swap: next time
            log.warning("cannot load the serving certificate yet: %s", exc)


async def serve(settings: RunsApiSettings) -> None:
    """Serve until SIGTERM or SIGINT, then close connections and pools and return."""
    app, proxy = await build(settings)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    context = tls_context(settings, proxy)
    reloading = asyncio.create_task(reload_certificate(settings, context), name="certificate")
    try:
        site = web.TCPSite(runner, settings.host, settings.port, ssl_context=context)
        await site.start()
        log.info("serving %s on %s:%d", ro.API_VERSION, settings.host, settings.port)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
    finally:
        reloading.cancel()
        await app[CHANGES].close()
        await runner.cleanup()


def main() -> None:
    try:
        settings = load_runs_api_settings()
    except ConfigError as exc:
        sys.exit(f"sundial-runs-api: {exc}")
    configure_logging(settings.log_level, settings.log_format)
    try:
        asyncio.run(serve(settings))
    except (KubeError, OSError, BackendUnavailable) as exc:
        sys.exit(f"sundial-runs-api: {exc}")


if __name__ == "__main__":
    main()
