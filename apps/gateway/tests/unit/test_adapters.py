"""The sidecar adapters against httpx.MockTransport: the URLs they build and how they read Dapr's answers."""

import json
from collections.abc import Callable

import httpx
import pytest

from gateway.adapters import DaprInvoker, DaprJwksSource, DaprSidecarHealth, sidecar_client
from gateway.domain import (
    InvocationFailedError,
    KeysUnavailableError,
    SidecarUnreachableError,
    UpstreamRequest,
    UpstreamTimeoutError,
)
from gateway.settings import Settings

Handler = Callable[[httpx.Request], httpx.Response]


def _client(handler: Handler) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url="http://127.0.0.1:3500", transport=httpx.MockTransport(handler))


def _raising(exc: Exception) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    return handler


async def test_invoke_calls_the_sidecar_invoke_api() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(201, json={"id": "u-1"}, headers={"etag": '"1"'})

    invoker = DaprInvoker(_client(handler))
    request = UpstreamRequest("POST", "users", {"x-request-id": "r-1", "content-type": "application/json"}, b"{}")
    answer = await invoker.invoke("users", request)
    assert (answer.status, json.loads(answer.body), answer.headers["etag"]) == (201, {"id": "u-1"}, '"1"')
    [sent] = seen
    assert (sent.method, sent.url.path) == ("POST", "/v1.0/invoke/users/method/users")
    assert (sent.headers["x-request-id"], sent.content) == ("r-1", b"{}")


async def test_invoke_passes_the_query_string_to_the_sidecar() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={})

    query = "limit=5&from=2026-01-01T00%3A00%3A00Z&type=a%26b"
    await DaprInvoker(_client(handler)).invoke("analytics", UpstreamRequest("GET", "reports/summary", query=query))
    [sent] = seen
    assert (sent.url.path, sent.url.query) == ("/v1.0/invoke/analytics/method/reports/summary", query.encode())
    assert sent.url.params.multi_items() == [("limit", "5"), ("from", "2026-01-01T00:00:00Z"), ("type", "a&b")]


async def test_invoke_without_a_query_sends_no_question_mark() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200)

    await DaprInvoker(_client(handler)).invoke("users", UpstreamRequest("GET", "users/u-1"))
    assert (str(seen[0].url), seen[0].url.query) == ("http://127.0.0.1:3500/v1.0/invoke/users/method/users/u-1", b"")


async def test_dapr_own_error_is_an_invocation_failure() -> None:
    body = {"errorCode": "ERR_DIRECT_INVOKE", "message": "failed to invoke, id: users, err: couldn't find service"}
    invoker = DaprInvoker(_client(lambda request: httpx.Response(500, json=body)))
    with pytest.raises(InvocationFailedError, match="ERR_DIRECT_INVOKE"):
        await invoker.invoke("users", UpstreamRequest("GET", "users/u-1"))


async def test_app_error_is_returned_not_taken_for_a_dapr_error() -> None:
    body: dict[str, object] = {"error": {"code": "internal_error", "message": "x", "details": [], "request_id": None}}
    invoker = DaprInvoker(_client(lambda request: httpx.Response(500, json=body)))
    answer = await invoker.invoke("users", UpstreamRequest("GET", "users/u-1"))
    assert answer.status == 500


async def test_sidecar_down_is_unreachable() -> None:
    invoker = DaprInvoker(_client(_raising(httpx.ConnectError("refused"))))
    with pytest.raises(SidecarUnreachableError):
        await invoker.invoke("users", UpstreamRequest("GET", "users/u-1"))


async def test_slow_answer_is_a_timeout() -> None:
    invoker = DaprInvoker(_client(_raising(httpx.ReadTimeout("slow"))))
    with pytest.raises(UpstreamTimeoutError):
        await invoker.invoke("users", UpstreamRequest("GET", "users/u-1"))


async def test_invocation_outcomes_are_reported() -> None:
    outcomes: list[tuple[str, str]] = []
    invoker = DaprInvoker(_client(lambda request: httpx.Response(200)), on_call=lambda *call: outcomes.append(call))
    await invoker.invoke("users", UpstreamRequest("GET", "x"))
    assert outcomes == [("users", "answered")]


async def test_jwks_is_fetched_from_users_through_the_sidecar() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        return httpx.Response(200, json={"keys": []})

    source = DaprJwksSource(DaprInvoker(_client(handler)), users_app_id="users", method=".well-known/jwks.json")
    assert await source.fetch_jwks() == {"keys": []}
    assert seen == ["/v1.0/invoke/users/method/.well-known/jwks.json"]


@pytest.mark.parametrize(
    "handler",
    [
        lambda request: httpx.Response(500, json={"errorCode": "ERR_DIRECT_INVOKE", "message": "down"}),
        lambda request: httpx.Response(404, json={"error": {"code": "not_found", "message": "x"}}),
        lambda request: httpx.Response(200, content=b"<html>"),
        _raising(httpx.ConnectError("refused")),
    ],
)
async def test_jwks_failures_are_unavailable(handler: Handler) -> None:
    source = DaprJwksSource(DaprInvoker(_client(handler)), users_app_id="users", method=".well-known/jwks.json")
    with pytest.raises(KeysUnavailableError):
        await source.fetch_jwks()


@pytest.mark.parametrize(
    ("handler", "ready"),
    [
        (lambda request: httpx.Response(204), True),
        (lambda request: httpx.Response(500), False),
        (_raising(httpx.ConnectError("refused")), False),
    ],
)
async def test_sidecar_health_reads_the_outbound_probe(handler: Handler, ready: bool) -> None:
    paths: list[str] = []

    def recording(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.path)
        return handler(request)

    assert await DaprSidecarHealth(_client(recording), timeout=1).is_ready() is ready
    assert paths == ["/v1.0/healthz/outbound"]


async def test_sidecar_client_targets_the_configured_port_and_token() -> None:
    settings = Settings(dapr_http_port=3999, dapr_api_token="s3cret")
    async with sidecar_client(settings) as client:
        assert str(client.base_url) == "http://127.0.0.1:3999"
        assert client.headers["dapr-api-token"] == "s3cret"


def test_settings_read_the_unprefixed_ports_the_dapr_cli_sets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_PORT", "9001")
    monkeypatch.setenv("DAPR_HTTP_PORT", "3999")
    monkeypatch.setenv("DAPR_GRPC_PORT", "50999")
    monkeypatch.setenv("GATEWAY_JWT_AUDIENCE", "elsewhere")
    settings = Settings()
    assert (settings.app_port, settings.dapr_http_port, settings.dapr_grpc_port) == (9001, 3999, 50999)
    assert settings.jwt_audience == "elsewhere"


def test_settings_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("APP_PORT", "DAPR_HTTP_PORT", "DAPR_GRPC_PORT"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings()
    assert (settings.app_port, settings.dapr_http_port, settings.dapr_grpc_port) == (8080, 3500, 50001)
    assert (settings.jwt_issuer, settings.jwt_audience, settings.jwks_cache_ttl_seconds) == (
        "sidecart-users",
        "sidecart",
        300.0,
    )
    assert (settings.inventory_app_id, settings.payments_app_id, settings.orders_app_id) == (
        "inventory",
        "payments",
        "orders",
    )
    assert (settings.analytics_app_id, settings.max_query_bytes) == ("analytics", 2048)
