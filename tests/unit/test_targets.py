"""Built-in and example targets, called the way the worker calls them: through the registry."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest
from aiohttp import web

from sundial.worker.targets.builtin import (
    DeliberateFailure,
    HttpTargetError,
    close_http_session,
    configure_http_egress,
    http_session,
    retry_after_seconds,
)
from sundial.worker.targets.egress import EgressPolicy
from sundial.worker.targets.registry import (
    REGISTRY,
    JsonObject,
    PermanentFailure,
    Retry,
    RunContext,
    TargetRegistry,
    UnknownTargetError,
    load_targets,
)

BUILTIN = {"noop", "sleep", "fail", "http"}
EXAMPLES = {"biz:pipeline", "biz:review-timeout", "biz:send-reports"}


def make_ctx(scheduled_for: datetime | None = None) -> RunContext:
    return RunContext(
        run_id="run-1",
        job_id="job-1",
        namespace="default",
        name="demo",
        attempt=1,
        max_attempts=3,
        scheduled_for=scheduled_for,
        trigger="schedule" if scheduled_for else "manual",
        worker="test-worker",
    )


async def run(name: str, params: JsonObject, ctx: RunContext | None = None) -> Any:
    output = await load_targets().get(name).invoke(ctx or make_ctx(), params)
    json.dumps(output, allow_nan=False)  # job_runs.output is jsonb: output must be plain JSON
    return output


def test_load_targets_finds_builtins_and_examples_through_entry_points() -> None:
    names = set(load_targets().names())
    assert names >= BUILTIN | EXAMPLES, "run `.venv/bin/pip install -e . --no-deps` if this is empty"
    assert REGISTRY.get("biz:pipeline").description.startswith("[example]")
    assert REGISTRY.get("sleep").description  # first docstring line when none is given


def test_unknown_target_lists_known_names() -> None:
    with pytest.raises(UnknownTargetError) as caught:
        load_targets().get("biz:nope")
    message = str(caught.value)
    assert "'biz:nope'" in message
    for name in BUILTIN | EXAMPLES:
        assert name in message


async def test_sync_target_runs_in_a_thread() -> None:
    # A private registry keeps the throwaway target out of the global one other tests list.
    registry = TargetRegistry()
    loop_thread = threading.get_ident()

    def blocking(ctx: RunContext, params: JsonObject) -> JsonObject:
        return {"thread": threading.get_ident(), "echo": params["x"]}

    registry.register("test:sync", blocking)
    sync_target = registry.get("test:sync")
    assert not sync_target.is_async
    output = await sync_target.invoke(make_ctx(), {"x": 1})
    assert output["echo"] == 1
    assert output["thread"] != loop_thread


# --- noop / sleep / fail ------------------------------------------------------------------------


async def test_noop() -> None:
    assert await run("noop", {}) == {"ok": True}
    assert REGISTRY.get("noop").is_async


async def test_sleep_returns_seconds_slept() -> None:
    assert await run("sleep", {"seconds": 0.01}) == {"slept": 0.01}
    assert await run("sleep", {"seconds": 0}) == {"slept": 0}


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({}, "seconds"),
        ({"seconds": -1}, "seconds"),
        ({"seconds": 86401}, "seconds"),
        ({"seconds": "soon"}, "seconds"),
        ({"seconds": 1, "secs": 1}, "secs"),
    ],
)
async def test_sleep_rejects_bad_params(params: JsonObject, field: str) -> None:
    with pytest.raises(PermanentFailure, match=rf"invalid params for sleep: {field}: "):
        await run("sleep", params)


async def test_sleep_stops_promptly_when_cancelled() -> None:
    task = asyncio.create_task(run("sleep", {"seconds": 60}))
    await asyncio.sleep(0.01)
    task.cancel()
    async with asyncio.timeout(1):
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_fail_raises_a_plain_retryable_error() -> None:
    with pytest.raises(DeliberateFailure, match=r"^boom$"):
        await run("fail", {"message": "boom"})


async def test_fail_permanent() -> None:
    with pytest.raises(PermanentFailure, match=r"^gone$"):
        await run("fail", {"message": "gone", "permanent": True})


async def test_fail_asks_for_a_retry_delay() -> None:
    with pytest.raises(Retry, match=r"^later$") as caught:
        await run("fail", {"message": "later", "retry_delay": 12.5})
    assert caught.value.delay == 12.5


@pytest.mark.parametrize(
    ("params", "problem"),
    [
        ({"permanent": True, "retry_delay": 1}, "permanent and retry_delay are mutually exclusive"),
        ({"retry_delay": -1}, "retry_delay: "),
        ({"message": 3}, "message: "),
    ],
)
async def test_fail_rejects_bad_params(params: JsonObject, problem: str) -> None:
    with pytest.raises(PermanentFailure, match=f"invalid params for fail: .*{problem}"):
        await run("fail", params)


# --- http ---------------------------------------------------------------------------------------


async def _json(request: web.Request) -> web.Response:
    return web.json_response({"hello": "world"})


async def _echo(request: web.Request) -> web.Response:
    return web.json_response(
        {
            "method": request.method,
            "header": request.headers.get("X-Token"),
            "content_type": request.content_type,
            "body": await request.text(),
        },
        status=201,
    )


async def _status(request: web.Request) -> web.Response:
    status = int(request.match_info["code"])
    return web.Response(status=status, text=f"status {status} " + "x" * 500)


async def _unavailable(request: web.Request) -> web.Response:
    return web.Response(status=503, text="down for maintenance", headers={"Retry-After": "7"})


async def _rate_limited(request: web.Request) -> web.Response:
    when = datetime.now(UTC) + timedelta(seconds=120)
    return web.Response(status=429, headers={"Retry-After": format_datetime(when, usegmt=True)})


async def _slow(request: web.Request) -> web.Response:
    await asyncio.sleep(5)
    return web.Response(text="too late")


async def _big_text(request: web.Request) -> web.Response:
    return web.Response(text="é" * 20_000)  # 2 bytes each: the cut lands mid-character


async def _big_json(request: web.Request) -> web.Response:
    return web.json_response({"items": list(range(10_000))})


async def _bad_json(request: web.Request) -> web.Response:
    return web.Response(text="{not json", content_type="application/json")


@pytest.fixture(scope="module")
async def server() -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_get("/json", _json)
    app.router.add_route("*", "/echo", _echo)
    app.router.add_get("/status/{code}", _status)
    app.router.add_get("/unavailable", _unavailable)
    app.router.add_get("/rate-limited", _rate_limited)
    app.router.add_get("/slow", _slow)
    app.router.add_get("/big-text", _big_text)
    app.router.add_get("/big-json", _big_json)
    app.router.add_get("/bad-json", _bad_json)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)  # port 0: the OS picks a free one
    await site.start()
    host, port = runner.addresses[0][:2]
    yield f"http://{host}:{port}"
    await runner.cleanup()


@pytest.fixture(scope="module", autouse=True)
async def _shared_session_closed() -> AsyncIterator[None]:
    # Loopback is denied by default (docs/security.md); these servers live there, so allow it
    # explicitly, as SUNDIAL_HTTP_ALLOW_CIDRS would.
    configure_http_egress(EgressPolicy.build(allow_cidrs=["127.0.0.1"]))
    yield
    await close_http_session()  # as the worker does on shutdown; no "unclosed session" warning
    configure_http_egress(EgressPolicy())


async def test_http_get_json(server: str) -> None:
    output = await run("http", {"url": f"{server}/json"})
    assert output["status"] == 200
    assert output["body"] == {"hello": "world"}
    assert isinstance(output["elapsed_ms"], int)
    assert output["elapsed_ms"] >= 0


async def test_http_sends_method_headers_and_json(server: str) -> None:
    output = await run(
        "http",
        {"method": "post", "url": f"{server}/echo", "headers": {"X-Token": "t"}, "json": {"a": 1}},
    )
    assert output["status"] == 201
    assert output["body"] == {
        "method": "POST",
        "header": "t",
        "content_type": "application/json",
        "body": '{"a": 1}',
    }


async def test_http_sends_a_text_body(server: str) -> None:
    output = await run("http", {"method": "PUT", "url": f"{server}/echo", "body": "plain"})
    assert output["body"]["method"] == "PUT"
    assert output["body"]["body"] == "plain"


async def test_http_500_fails_with_method_url_status_and_body(server: str) -> None:
    url = f"{server}/status/500"
    with pytest.raises(HttpTargetError) as caught:
        await run("http", {"url": url})
    message = str(caught.value)
    assert message.startswith(f"GET {url} returned 500: ")
    assert "status 500 xxx" in message
    assert "x" * 201 not in message  # only the first 200 characters of the body
    assert caught.value.status == 500


async def test_http_expected_status(server: str) -> None:
    output = await run("http", {"url": f"{server}/status/404", "expected_status": [404]})
    assert output["status"] == 404
    with pytest.raises(HttpTargetError, match="returned 201"):
        await run("http", {"method": "POST", "url": f"{server}/echo", "expected_status": [200]})


async def test_http_503_with_retry_after_seconds_asks_for_that_delay(server: str) -> None:
    with pytest.raises(Retry, match="returned 503: 'down for maintenance'") as caught:
        await run("http", {"url": f"{server}/unavailable"})
    assert caught.value.delay == 7.0


async def test_http_429_with_retry_after_date_asks_for_the_remaining_time(server: str) -> None:
    with pytest.raises(Retry) as caught:
        await run("http", {"url": f"{server}/rate-limited"})
    assert caught.value.delay is not None
    assert 110 <= caught.value.delay <= 121


async def test_http_503_without_retry_after_is_an_ordinary_failure(server: str) -> None:
    with pytest.raises(HttpTargetError, match="returned 503"):
        await run("http", {"url": f"{server}/status/503"})


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("30", 30.0),
        (" 0 ", 0.0),
        ("Fri, 01 Mar 2024 12:01:00 GMT", 60.0),
        ("Fri, 01 Mar 2024 11:00:00 GMT", 0.0),  # already past: retry now
        ("soon", None),
        ("-5", None),
    ],
)
def test_retry_after_seconds(value: str | None, expected: float | None) -> None:
    assert retry_after_seconds(value, datetime(2024, 3, 1, 12, 0, tzinfo=UTC)) == expected


@pytest.mark.parametrize(
    ("params", "problem"),
    [
        ({}, "url: Field required"),
        ({"url": "ftp://example.com/x"}, "url: URL scheme should be 'http' or 'https'"),
        ({"url": "not a url"}, "url: "),
        ({"url": "http://x", "method": "FETCH"}, "method: "),
        ({"url": "http://x", "json": {}, "body": "b"}, "json and body are mutually exclusive"),
        ({"url": "http://x", "timeout_seconds": 0}, "timeout_seconds: "),
        ({"url": "http://x", "expected_status": [700]}, "expected_status.0: "),
        ({"url": "http://x", "expected_status": []}, "expected_status: "),
        (
            {"url": "http://x", "headers": {"X": "a\r\nInjected: 1"}},
            "headers: header 'X' contains a line break",
        ),
        ({"url": "http://x", "header": {}}, "header: Extra inputs are not permitted"),
    ],
)
async def test_http_rejects_bad_params_naming_the_field(params: JsonObject, problem: str) -> None:
    with pytest.raises(PermanentFailure) as caught:
        await run("http", params)
    assert str(caught.value).startswith("invalid params for http: ")
    assert problem in str(caught.value)


async def test_http_timeout_seconds_is_honoured(server: str) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(HttpTargetError, match=r"^GET .*/slow timed out after 0.2s$"):
        await run("http", {"url": f"{server}/slow", "timeout_seconds": 0.2})
    assert loop.time() - started < 2


async def test_http_keeps_only_the_first_2kb_of_a_large_body(server: str) -> None:
    text = await run("http", {"url": f"{server}/big-text"})
    assert text["body"] == "é" * 1024  # whole characters only
    large_json = await run("http", {"url": f"{server}/big-json"})
    assert isinstance(large_json["body"], str)
    assert large_json["body"].startswith('{"items": [0, 1, 2')
    assert len(large_json["body"]) == 2048


async def test_http_mislabelled_json_is_kept_as_text(server: str) -> None:
    assert (await run("http", {"url": f"{server}/bad-json"}))["body"] == "{not json"


async def test_http_connection_refused_is_retryable() -> None:
    with socket.socket() as probe:  # a port that was free a moment ago has nobody listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(HttpTargetError, match=rf"^GET http://127.0.0.1:{port}/ failed: "):
        await run("http", {"url": f"http://127.0.0.1:{port}/"})


async def test_http_keeps_credentials_out_of_error_messages(server: str) -> None:
    url = server.replace("http://", "http://user:secret@") + "/status/500"
    with pytest.raises(HttpTargetError) as caught:
        await run("http", {"url": url})
    assert "secret" not in str(caught.value)
    assert "user" not in str(caught.value)


async def test_http_session_is_shared_and_closable(server: str) -> None:
    session = http_session()
    assert http_session() is session
    await close_http_session()
    assert session.closed
    assert (await run("http", {"url": f"{server}/json"}))["status"] == 200  # a fresh one on demand
    assert http_session() is not session


# --- examples -----------------------------------------------------------------------------------


async def test_example_pipeline_counts_each_step() -> None:
    output = await run("biz:pipeline", {"records": 10, "step_delay_seconds": 0})
    assert output == {
        "synced": 10,
        "processed": 10,
        "held_for_review": 2,
        "sent": 8,
        "steps": [
            {"step": "sync", "source": "primecare", "count": 10},
            {"step": "process", "engine": "ai", "count": 10},
            {"step": "send", "channel": "whatsapp", "count": 8},
        ],
    }
    assert (await run("biz:pipeline", {"step_delay_seconds": 0}))["sent"] == 9  # 12 records by default


# An epoch minute divisible by 7, the simulated inbox's cadence.
ON_CADENCE = datetime(2024, 3, 1, 12, 3, tzinfo=UTC)
assert int(ON_CADENCE.timestamp()) // 60 % 7 == 0


@pytest.mark.parametrize(
    ("scheduled_for", "params", "expected"),
    [
        # ages 35, 42, ..., 84: waited more than 30 min, at most 60 beyond that
        (ON_CADENCE, {}, 8),
        # ages 63, 70, ..., 119
        (ON_CADENCE, {"timeout_minutes": 60}, 9),
        # ages 31, 38, ..., 87
        (ON_CADENCE + timedelta(minutes=3), {}, 9),
    ],
)
async def test_example_review_timeout_is_predictable_from_the_slot(
    scheduled_for: datetime, params: JsonObject, expected: int
) -> None:
    output = await run("biz:review-timeout", params, make_ctx(scheduled_for))
    assert output["fallback_applied"] == expected
    assert len(output["reviews"]) == expected
    assert output["as_of"] == scheduled_for.isoformat()
    if scheduled_for == ON_CADENCE and not params:
        assert output["reviews"][-1] == "review-20240301T1128Z"  # the youngest overdue: 35 min old


async def test_example_review_timeout_without_a_slot_uses_now() -> None:
    output = await run("biz:review-timeout", {"timeout_minutes": 30})
    assert output["fallback_applied"] in (8, 9)


async def test_example_send_reports() -> None:
    output = await run("biz:send-reports", {"reports": 3, "delay_seconds": 0})
    assert output == {"sent": 3, "channel": "whatsapp"}


@pytest.mark.parametrize(
    ("name", "params", "field"),
    [
        ("biz:pipeline", {"records": -1}, "records"),
        ("biz:review-timeout", {"timeout_minutes": 0}, "timeout_minutes"),
        ("biz:send-reports", {"reports": "many"}, "reports"),
    ],
)
async def test_examples_reject_bad_params(name: str, params: JsonObject, field: str) -> None:
    with pytest.raises(PermanentFailure, match=f"invalid params for {name}: {field}: "):
        await run(name, params)
