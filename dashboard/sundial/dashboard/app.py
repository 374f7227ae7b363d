"""The HTTP surface: routes, identity, errors, the page. Handlers stay thin; `service` does the work."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from importlib.resources import files
from pathlib import Path
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, FastAPI, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from psycopg import Error as PostgresError
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from pydantic import ValidationError
from redis.exceptions import RedisError

from sundial.core.broker import Broker
from sundial.core.clock import SYSTEM_CLOCK, Clock
from sundial.core.config import AuthMode, DashboardSettings
from sundial.core.policies import spec_schedule, upcoming_fires
from sundial.core.spec import ScheduledJobSpec
from sundial.core.store import Store
from sundial.dashboard.errors import ApiProblem, FieldProblem, from_validation_error, invalid
from sundial.dashboard.guard import Guard, LoginThrottle
from sundial.dashboard.kube import Caller, KubeGateway, load_kube_config
from sundial.dashboard.models import (
    Accepted,
    BackfillAccepted,
    BackfillIn,
    DeadLettersOut,
    JobCreate,
    JobOut,
    JobPatch,
    MeOut,
    PodLogOut,
    PreviewOut,
    PreviewRequest,
    QueueOut,
    RunPage,
    ScheduleFormOut,
)
from sundial.dashboard.schedule_words import describe_all, schedule_form
from sundial.dashboard.service import Dashboard, JobKey
from sundial.dashboard.views import job_out, offered_targets

log = logging.getLogger("sundial.dashboard")

STATIC_DIR: Final = Path(str(files("sundial.dashboard") / "static"))
PAGE_PATHS: Final = ("/agendamentos", "/schedules")
# Writes that change nothing anywhere stay open to read-only displays.
PURE_POSTS: Final = frozenset({"/api/schedule/preview"})


def create_app(
    settings: DashboardSettings,
    *,
    clock: Clock = SYSTEM_CLOCK,
    kube: KubeGateway | None = None,
) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        gateway = kube or KubeGateway(load_kube_config(), impersonating=settings.auth is AuthMode.PROXY)
        # Opened without waiting: a database that is down answers 503 per request instead of
        # keeping the page itself from loading.
        pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            settings.database_url, min_size=1, max_size=4, open=False, timeout=5, kwargs={"autocommit": True}
        )
        await pool.open(wait=False)
        broker = Broker.from_url(settings.redis_url, settings.keyspace)
        app.state.dashboard = Dashboard(settings, gateway, Store(pool), broker, clock)
        try:
            yield
        finally:
            await gateway.aclose()
            await broker.close()
            await pool.close()

    app = FastAPI(
        title="Sundial dashboard API",
        version="v1",
        description=(
            "The original design's `/api/jobs`, over ScheduledJob resources. Writes go through the "
            "Kubernetes API as the caller; `{namespace}/{name}` or `uid:{uid}` names a job."
        ),
        openapi_url="/api/openapi.json",
        docs_url="/api/docs",
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.settings = settings
    _install_errors(app)
    _install_read_only(app, settings)
    # Added last, so outermost: its 413 and 429 answers and every other get the security headers.
    app.add_middleware(
        Guard,
        max_body_bytes=settings.max_body_bytes,
        throttle=LoginThrottle(settings.login_failures, settings.login_window_seconds),
        monotonic=clock.monotonic,
    )
    app.include_router(_api_router())
    _install_page(app)
    return app


# ---- identity ----------------------------------------------------------------------------


def _dashboard(request: Request) -> Dashboard:
    dashboard: Dashboard = request.app.state.dashboard
    return dashboard


def _caller(request: Request) -> Caller:
    settings: DashboardSettings = request.app.state.settings
    if settings.auth is AuthMode.PROXY:
        user = request.headers.get(settings.user_header, "").strip()
        if not user:
            raise ApiProblem(401, "Unauthorized", f"no {settings.user_header} header: sign in through the proxy")
        groups = tuple(g.strip() for g in request.headers.get(settings.groups_header, "").split(",") if g.strip())
        return Caller(user=user, groups=groups)
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiProblem(401, "Unauthorized", "send a Kubernetes bearer token: Authorization: Bearer <token>")
    return Caller(token=token.strip())


DashboardDep = Annotated[Dashboard, Depends(_dashboard)]
CallerDep = Annotated[Caller, Depends(_caller)]


async def _job_key(request: Request, dashboard: DashboardDep, caller: CallerDep) -> JobKey:
    params = request.path_params
    if "uid" in params:
        return await dashboard.resolve_uid(caller, params["uid"])
    return JobKey(params["namespace"], params["name"])


JobDep = Annotated[JobKey, Depends(_job_key)]
DryRun = Annotated[bool, Query(alias="dryRun", description="Validate with the API server; change nothing.")]

_BY_NAME = [
    {"name": "namespace", "in": "path", "required": True, "schema": {"type": "string"}},
    {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}},
]
_BY_UID = [{"name": "uid", "in": "path", "required": True, "schema": {"type": "string", "format": "uuid"}}]


# ---- routes ------------------------------------------------------------------------------


def _api_router() -> APIRouter:
    router = APIRouter(prefix="/api")
    router.add_api_route("/jobs", list_jobs, methods=["GET"], response_model=list[JobOut], tags=["jobs"])
    router.add_api_route("/jobs", create_job, methods=["POST"], response_model=JobOut, status_code=201,
                         tags=["jobs"])
    per_job = (
        ("", get_job, "GET", JobOut, 200),
        ("", patch_job, "PATCH", JobOut, 200),
        ("", delete_job, "DELETE", dict[str, Any], 200),
        ("/run", run_job, "POST", Accepted, 202),
        ("/backfill", backfill_job, "POST", BackfillAccepted, 202),
        ("/enable", enable_job, "POST", JobOut, 200),
        ("/disable", disable_job, "POST", JobOut, 200),
        ("/runs", job_runs, "GET", RunPage, 200),
        ("/logs", job_logs, "GET", list[PodLogOut], 200),
    )
    # Every uid route goes first: `uid:…` can never be a namespace, but `/{namespace}/{name}`
    # would otherwise also match `/uid:…/runs`.
    for prefix, params, form in (("/jobs/uid:{uid}", _BY_UID, "uid"), ("/jobs/{namespace}/{name}", _BY_NAME, "name")):
        for suffix, endpoint, method, model, code in per_job:
            router.add_api_route(prefix + suffix, endpoint, methods=[method], response_model=model, status_code=code,
                                 tags=["jobs"], openapi_extra={"parameters": params},
                                 operation_id=f"{endpoint.__name__}_by_{form}")
    router.add_api_route("/runs/{run_id}/retry", retry_run, methods=["POST"], response_model=Accepted,
                         status_code=202, tags=["queue"])
    router.add_api_route("/queue", queue, methods=["GET"], response_model=QueueOut, tags=["queue"])
    router.add_api_route("/deadletters", dead_letters, methods=["GET"], response_model=DeadLettersOut,
                         tags=["queue"])
    router.add_api_route("/schedule/preview", preview, methods=["POST"], response_model=PreviewOut,
                         tags=["schedule"])
    router.add_api_route("/me", me, methods=["GET"], response_model=MeOut, tags=["session"])
    router.add_api_route("/targets", targets, methods=["GET"], response_model=list[str], tags=["queue"])
    return router


async def list_jobs(
    dashboard: DashboardDep, caller: CallerDep, category: str | None = None, namespace: str | None = None
) -> list[JobOut]:
    return await dashboard.jobs(caller, namespace, category)


async def create_job(
    body: JobCreate, dashboard: DashboardDep, caller: CallerDep, response: Response, dry_run: DryRun = False
) -> JobOut:
    if dry_run:
        response.status_code = 200
    return await dashboard.create(caller, body, dry_run=dry_run)


async def get_job(job: JobDep, dashboard: DashboardDep, caller: CallerDep) -> JobOut:
    return job_out(await dashboard.get(caller, job))


async def patch_job(
    job: JobDep, body: JobPatch, dashboard: DashboardDep, caller: CallerDep, dry_run: DryRun = False
) -> JobOut:
    return await dashboard.patch(caller, job, body, dry_run=dry_run)


async def delete_job(job: JobDep, dashboard: DashboardDep, caller: CallerDep) -> dict[str, Any]:
    await dashboard.delete(caller, job)
    return {"success": True, "job": job.label}


async def run_job(job: JobDep, dashboard: DashboardDep, caller: CallerDep) -> Accepted:
    return await dashboard.run_now(caller, job)


async def backfill_job(job: JobDep, body: BackfillIn, dashboard: DashboardDep, caller: CallerDep, response: Response,
                       dry_run: DryRun = False) -> BackfillAccepted:
    if dry_run:
        response.status_code = 200
    return await dashboard.backfill(caller, job, body, dry_run=dry_run)


async def enable_job(job: JobDep, dashboard: DashboardDep, caller: CallerDep) -> JobOut:
    return await dashboard.patch(caller, job, JobPatch(enabled=True), dry_run=False)


async def disable_job(job: JobDep, dashboard: DashboardDep, caller: CallerDep) -> JobOut:
    return await dashboard.patch(caller, job, JobPatch(enabled=False), dry_run=False)


async def job_runs(
    job: JobDep,
    dashboard: DashboardDep,
    caller: CallerDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 20,
    offset: Annotated[int, Query(ge=0)] = 0,
    status: Annotated[list[str] | None, Query(description="Only runs in these states.")] = None,
) -> RunPage:
    return await dashboard.runs(caller, job, limit, offset, status)


async def job_logs(
    job: JobDep, dashboard: DashboardDep, caller: CallerDep,
    run: Annotated[str | None, Query(description="The run id; default: the newest run's Jobs.")] = None,
) -> list[PodLogOut]:
    return await dashboard.logs(caller, job, run)


async def retry_run(run_id: str, dashboard: DashboardDep, caller: CallerDep) -> Accepted:
    return await dashboard.retry(caller, run_id)


async def queue(dashboard: DashboardDep, caller: CallerDep, namespace: str | None = None) -> QueueOut:
    return await dashboard.queue(caller, namespace)


async def dead_letters(
    dashboard: DashboardDep, caller: CallerDep, namespace: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> DeadLettersOut:
    return await dashboard.dead_letters(caller, namespace, limit)


async def targets(dashboard: DashboardDep, caller: CallerDep) -> list[str]:
    return offered_targets(await dashboard.targets())


async def me(request: Request, dashboard: DashboardDep, caller: CallerDep) -> MeOut:
    settings: DashboardSettings = request.app.state.settings
    user, groups = await dashboard.identity(caller)
    return MeOut(user=user, groups=groups, read_only=settings.read_only, auth_mode=settings.auth.value,
                 default_namespace=settings.default_namespace)


def preview(body: PreviewRequest, dashboard: DashboardDep) -> PreviewOut:
    """The schedule in words and its next fire times, or why it is invalid. Pure."""
    policies = {key: value for key, value in (("jitterSeconds", body.jitter_seconds), ("startTime", body.start_time),
                                              ("endTime", body.end_time), ("maxRuns", body.max_runs)) if value}
    try:
        spec = ScheduledJobSpec.model_validate(
            {"target": "preview", "schedule": body.schedule, "timeZone": body.time_zone, **policies})
    except ValidationError as exc:
        first = from_validation_error(exc, "spec").fields[0]
        return PreviewOut(valid=False, error=first.message, error_field=first.field)
    schedule = spec_schedule(spec, body.uid)
    now: datetime = dashboard.clock.now()
    fires = upcoming_fires(schedule, now, body.count)
    return PreviewOut(
        valid=True,
        text=describe_all(body.schedule),
        form=ScheduleFormOut.model_validate(schedule_form(body.schedule).as_json()),
        next_runs=[fire.start for fire in fires],
        next_slots=[fire.slot for fire in fires],
    )


# ---- cross-cutting -----------------------------------------------------------------------


def _install_errors(app: FastAPI) -> None:
    async def problem(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiProblem)
        return JSONResponse(exc.body(), status_code=exc.status)

    async def bad_request(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        fields = [
            FieldProblem(".".join(str(p) for p in error["loc"][1:]) or "body", str(error["msg"]))
            for error in exc.errors()
        ]
        return JSONResponse(invalid(fields).body(), status_code=400)

    async def backend_down(_: Request, exc: Exception) -> Response:
        log.warning("backend unavailable: %s", exc)
        which = "Redis" if isinstance(exc, RedisError) else "PostgreSQL"
        body = ApiProblem(503, "BackendUnavailable", f"{which} is unavailable: {exc}").body()
        return JSONResponse(body, status_code=503)

    app.add_exception_handler(ApiProblem, problem)
    app.add_exception_handler(RequestValidationError, bad_request)
    for backend_error in (PostgresError, PoolTimeout, RedisError):
        app.add_exception_handler(backend_error, backend_down)


def _install_read_only(app: FastAPI, settings: DashboardSettings) -> None:
    @app.middleware("http")
    async def guard(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        writes = request.method not in {"GET", "HEAD", "OPTIONS"}
        if settings.read_only and writes and request.url.path.startswith("/api/") and (
            request.url.path not in PURE_POSTS
        ):
            problem = ApiProblem(403, "ReadOnly", "this dashboard is read-only")
            return JSONResponse(problem.body(), status_code=403)
        return await call_next(request)


def _install_page(app: FastAPI) -> None:
    index = STATIC_DIR / "index.html"

    async def page() -> FileResponse:
        return FileResponse(index, headers={"Cache-Control": "no-cache"})

    async def root() -> RedirectResponse:
        return RedirectResponse(PAGE_PATHS[0])

    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    async def readyz(dashboard: DashboardDep) -> dict[str, str]:
        await dashboard.store.ping()
        await dashboard.broker.redis.ping()
        return {"status": "ready"}

    for path in PAGE_PATHS:
        app.add_api_route(path, page, methods=["GET"], include_in_schema=False)
    app.add_api_route("/", root, methods=["GET"], include_in_schema=False)
    app.add_api_route("/healthz", healthz, methods=["GET"], include_in_schema=False)
    app.add_api_route("/readyz", readyz, methods=["GET"], include_in_schema=False)
    app.mount("/static", StaticFiles(directory=STATIC_DIR, check_dir=False), name="static")
