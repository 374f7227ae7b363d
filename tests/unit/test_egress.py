"""The `http` target's egress policy, attacked: metadata, loopback, rebinding names, redirects.

Real aiohttp servers on loopback addresses stand in for the internal services a job must not reach;
each attack checks both the refusal and that the server never saw a request.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult

from sundial.core.config import ConfigError, load_settings
from sundial.worker.main import egress_policy
from sundial.worker.targets.builtin import close_http_session, configure_http_egress
from sundial.worker.targets.egress import EgressPolicy, EgressRefused
from sundial.worker.targets.registry import JsonObject, PermanentFailure, RunContext, load_targets

INTERNAL = "127.0.0.1"  # stands for a Sundial service / anything denied
PUBLIC = "127.0.0.2"  # stands for an ordinary destination: allowed explicitly in these tests
REBINDING_NAME = "innocent.example.test"  # resolves to INTERNAL


class StaticResolver(AbstractResolver):
    """DNS as an attacker controls it: fixed answers, no /etc/hosts, no network."""

    def __init__(self, answers: dict[str, str]) -> None:
        self.answers = answers

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if host not in self.answers:
            raise OSError(f"no such host {host}")
        return [{"hostname": host, "host": self.answers[host], "port": port, "family": socket.AF_INET,
                 "proto": 0, "flags": socket.AI_NUMERICHOST}]

    async def close(self) -> None:
        return None


@dataclass
class Server:
    url: str
    hits: list[str] = field(default_factory=list)


async def _start(host: str, routes: Callable[[Server], web.Application]) -> AsyncIterator[Server]:
    server = Server("")
    runner = web.AppRunner(routes(server), shutdown_timeout=0.1)
    await runner.setup()
    await web.TCPSite(runner, host, 0).start()
    server.url = f"http://{host}:{runner.addresses[0][1]}"
    yield server
    await runner.cleanup()


def _secret_app(server: Server) -> web.Application:
    async def secret(request: web.Request) -> web.Response:
        server.hits.append(request.path)
        return web.json_response({"credentials": "sk-internal"})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", secret)
    return app


@pytest.fixture
async def internal() -> AsyncIterator[Server]:
    async for server in _start(INTERNAL, _secret_app):
        yield server


@pytest.fixture
async def public(internal: Server) -> AsyncIterator[Server]:
    def app_for(server: Server) -> web.Application:
        async def redirect(request: web.Request) -> web.Response:
            server.hits.append(request.path)
            raise web.HTTPFound(request.query["to"])

        async def ok(request: web.Request) -> web.Response:
            server.hits.append(request.path)
            return web.json_response({"method": request.method, "body": await request.text()})

        app = web.Application()
        app.router.add_route("*", "/redirect", redirect)
        app.router.add_route("*", "/ok", ok)
        return app

    async for server in _start(PUBLIC, app_for):
        yield server


@pytest.fixture(autouse=True)
async def policy() -> AsyncIterator[Callable[..., None]]:
    def configure(**rules: object) -> None:
        configure_http_egress(EgressPolicy.build(**rules),  # type: ignore[arg-type]
                              resolver=lambda: StaticResolver({REBINDING_NAME: INTERNAL}))

    configure(allow_cidrs=[PUBLIC])
    yield configure
    await close_http_session()
    configure_http_egress(EgressPolicy())


def make_ctx() -> RunContext:
    return RunContext(run_id="r", job_id="j", namespace="team-a", name="probe", attempt=1, max_attempts=3,
                      scheduled_for=None, trigger="manual", worker="w")


async def call(params: JsonObject) -> JsonObject:
    output: JsonObject = await load_targets().get("http").invoke(make_ctx(), params)
    return output


def refused(destination: str, rule: str) -> str:
    return f"http target refused {destination}: {rule} denied by the worker's egress policy"


# ---- attacks -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://169.254.169.254/latest/meta-data/iam/", "169.254.169.254"),
        ("http://[fd00:ec2::254]/latest/", "fd00:ec2::254"),
        ("http://[::ffff:169.254.169.254]/", "::ffff:a9fe:a9fe"),  # IPv4-mapped: the same address
    ],
)
async def test_the_metadata_service_is_refused_for_good(url: str, shown: str) -> None:
    with pytest.raises(EgressRefused) as caught:
        await call({"url": url})
    assert str(caught.value) == refused(shown, "link-local/metadata range")
    assert isinstance(caught.value, PermanentFailure)  # the worker does not retry it


async def test_loopback_is_refused_and_never_reached(internal: Server) -> None:
    with pytest.raises(EgressRefused, match=r"refused 127\.0\.0\.1: loopback range denied"):
        await call({"url": f"{internal.url}/metrics"})
    assert internal.hits == []


async def test_a_name_resolving_to_a_denied_address_is_refused_at_connect(internal: Server) -> None:
    url = internal.url.replace(INTERNAL, REBINDING_NAME) + "/metrics"
    with pytest.raises(EgressRefused) as caught:
        await call({"url": url})
    assert str(caught.value) == refused(f"{REBINDING_NAME} ({INTERNAL})", "loopback range")
    assert internal.hits == []


@pytest.mark.parametrize("target", ["{internal}/metrics", "http://169.254.169.254/", "{rebinding}/metrics"])
async def test_a_redirect_into_a_denied_range_is_refused(public: Server, internal: Server, target: str) -> None:
    to = target.format(internal=internal.url, rebinding=internal.url.replace(INTERNAL, REBINDING_NAME))
    with pytest.raises(EgressRefused, match="denied by the worker's egress policy"):
        await call({"url": f"{public.url}/redirect?to={to}"})
    assert public.hits == ["/redirect"]
    assert internal.hits == []


async def test_sundial_service_addresses_stay_denied_even_inside_an_allowed_range(
    policy: Callable[..., None], internal: Server
) -> None:
    policy(allow_cidrs=["127.0.0.0/8"], deny_cidrs=[f"{INTERNAL}/32"])
    with pytest.raises(EgressRefused, match="a Sundial service address range denied"):
        await call({"url": f"{internal.url}/metrics"})
    policy(allow_hosts=[REBINDING_NAME], deny_hosts=["*.example.test"])
    with pytest.raises(EgressRefused, match="a Sundial service host name denied"):
        await call({"url": internal.url.replace(INTERNAL, REBINDING_NAME)})
    assert internal.hits == []


# ---- what stays allowed ------------------------------------------------------------------------


async def test_an_explicitly_allowed_destination_works(policy: Callable[..., None], internal: Server) -> None:
    policy(allow_cidrs=[INTERNAL])
    assert (await call({"url": f"{internal.url}/x"}))["body"] == {"credentials": "sk-internal"}
    policy(allow_hosts=[REBINDING_NAME])
    assert (await call({"url": internal.url.replace(INTERNAL, REBINDING_NAME) + "/y"}))["status"] == 200
    assert internal.hits == ["/x", "/y"]


async def test_redirects_within_the_allowed_set_are_followed(public: Server) -> None:
    output = await call({"method": "POST", "url": f"{public.url}/redirect?to=/ok", "body": "data"})
    assert output["body"] == {"method": "GET", "body": ""}  # 302 after a POST: a body-less GET
    assert public.hits == ["/redirect", "/ok"]


async def test_store_response_false_keeps_the_body_out_of_the_run(public: Server) -> None:
    output = await call({"url": f"{public.url}/ok", "store_response": False})
    assert output.keys() == {"status", "elapsed_ms"}


# ---- the policy, pure --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "rules", "reason"),
    [
        ("169.254.169.254", {}, "link-local/metadata range"),
        ("fe80::1", {}, "link-local/metadata range"),
        ("::1", {}, "loopback range"),
        ("0.0.0.0", {}, "unspecified address"),
        ("::", {}, "unspecified address"),
        ("10.1.2.3", {}, None),  # private ranges: allowed unless denied
        ("10.1.2.3", {"deny_private": True}, "private range"),
        ("10.1.2.3", {"deny_private": True, "allow_cidrs": ["10.1.0.0/16"]}, None),
        ("10.96.0.10", {"deny_cidrs": ["10.96.0.10"]}, "a Sundial service address range"),
        ("93.184.216.34", {"deny_private": True}, None),
        ("169.254.169.254", {"allow_cidrs": ["169.254.169.254/32"]}, None),
    ],
)
def test_refusal_for_address(address: str, rules: dict[str, object], reason: str | None) -> None:
    policy = EgressPolicy.build(**rules)  # type: ignore[arg-type]
    assert policy.refusal_for_address(ipaddress.ip_address(address)) == reason


def test_worker_settings_build_the_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUNDIAL_HTTP_ALLOW_CIDRS", "127.0.0.1, 10.0.0.0/8")
    monkeypatch.setenv("SUNDIAL_HTTP_DENY_HOSTS", "sundial-operator.sundial.svc")
    monkeypatch.setenv("SUNDIAL_HTTP_DENY_PRIVATE", "true")
    policy = egress_policy(load_settings(database_url="postgresql://x", redis_url="redis://x"))
    assert policy.refusal_for_address(ipaddress.ip_address("127.0.0.1")) is None
    assert policy.refusal_for_host("sundial-operator.sundial.svc.") == "a Sundial service host name"
    assert policy.deny_private


def test_a_bad_cidr_setting_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUNDIAL_HTTP_DENY_CIDRS", "10.0.0.0/33")
    with pytest.raises(ConfigError, match=r"SUNDIAL_HTTP_DENY_CIDRS .*'10\.0\.0\.0/33' is not a CIDR"):
        load_settings(database_url="postgresql://x", redis_url="redis://x")
