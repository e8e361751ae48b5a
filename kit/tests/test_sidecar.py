"""The sidecar client against a real HTTP server on 127.0.0.1: what it sends, what it answers, how it fails."""

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from asgi_correlation_id import correlation_id
from opentelemetry import context as otel_context
from opentelemetry import propagate
from pydantic import SecretStr

from sidecart_kit.sidecar import ServiceSettings, SidecarClient, create_sidecar_client
from sidecart_kit.state import NOT_SENT

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


async def _echo(request: web.Request) -> web.Response:
    """Answers with what it was sent, as JSON, and an ETag."""
    seen = {
        "method": request.method,
        "path": request.path,
        "query": dict(request.query),
        "headers": {name.lower(): value for name, value in request.headers.items()},
        "body": (await request.read()).decode(),
    }
    return web.json_response(seen, status=201, headers={"ETag": "7"})


async def _empty(request: web.Request) -> web.Response:
    return web.Response(status=204)


async def _slow(request: web.Request) -> web.Response:
    await asyncio.sleep(2)
    return web.Response(status=204)


async def _hang_up(request: web.Request) -> web.StreamResponse:
    assert request.transport is not None
    request.transport.close()  # the request arrived; no answer ever comes back
    await asyncio.sleep(0.5)
    return web.Response(status=204)


@pytest.fixture
async def sidecar() -> AsyncIterator[TestServer]:
    app = web.Application()
    app.router.add_route("*", "/v1.0/echo/{tail:.*}", _echo)
    app.router.add_route("*", "/v1.0-alpha1/echo/{tail:.*}", _echo)
    app.router.add_get("/v1.0/empty", _empty)
    app.router.add_get("/v1.0/slow", _slow)
    app.router.add_post("/v1.0/hang-up", _hang_up)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield server
    await server.close()


def _port(server: TestServer) -> int:
    assert server.port is not None
    return server.port


def _settings(port: int) -> ServiceSettings:
    return ServiceSettings(dapr_http_port=port, dapr_api_token=SecretStr("s3cret"), sidecar_timeout_seconds=5.0)


async def test_the_app_gets_the_aiohttp_client_and_tests_get_httpx_with_their_fake_sidecar() -> None:
    async with create_sidecar_client(ServiceSettings()) as client:
        assert isinstance(client, SidecarClient)
    fake = httpx.MockTransport(lambda request: httpx.Response(204))
    async with create_sidecar_client(ServiceSettings(), fake) as client:
        assert not isinstance(client, SidecarClient)


async def test_a_call_carries_the_token_the_request_id_the_trace_context_and_its_query(sidecar: TestServer) -> None:
    request_id = correlation_id.set("req-42")
    trace = otel_context.attach(propagate.extract({"traceparent": TRACEPARENT}))
    try:
        async with create_sidecar_client(_settings(_port(sidecar))) as client:
            response = await client.get("/echo/state/orders-store/a%3Ab", params={"consistency": "strong"})
    finally:
        otel_context.detach(trace)
        correlation_id.reset(request_id)
    seen = response.json()
    assert (response.status_code, response.headers["etag"]) == (201, "7")
    assert (seen["method"], seen["path"], seen["query"]) == (
        "GET",
        "/v1.0/echo/state/orders-store/a:b",
        {"consistency": "strong"},
    )
    assert seen["headers"]["dapr-api-token"] == "s3cret"
    assert seen["headers"]["x-request-id"] == "req-42"
    assert seen["headers"]["traceparent"].split("-")[1] == TRACEPARENT.split("-")[1]


async def test_json_is_sent_compact_and_a_callers_header_wins_over_the_context(sidecar: TestServer) -> None:
    request_id = correlation_id.set("req-42")
    try:
        async with create_sidecar_client(_settings(_port(sidecar))) as client:
            sent_json = await client.post("/echo/state/s", json=[{"key": "k", "value": {"n": "é"}}])
            sent_bytes = await client.request(
                "PUT", "/echo/invoke/users/method/x?a=1", content=b"raw", headers={"X-Request-ID": "caller"}
            )
    finally:
        correlation_id.reset(request_id)
    seen = sent_json.json()
    assert seen["body"] == '[{"key":"k","value":{"n":"é"}}]'
    assert seen["headers"]["content-type"] == "application/json"
    alpha = await _alpha_call(_port(sidecar))
    assert (alpha["path"], alpha["headers"]["dapr-api-token"]) == ("/v1.0-alpha1/echo/publish/bulk", "s3cret")
    seen = sent_bytes.json()
    assert (seen["method"], seen["query"], seen["body"]) == ("PUT", {"a": "1"}, "raw")
    assert seen["headers"]["x-request-id"] == "caller"
    assert "content-type" not in seen["headers"]  # as httpx sends raw content: no type unless the caller names one


async def _alpha_call(port: int) -> dict[str, Any]:
    async with create_sidecar_client(_settings(port)) as client:
        response = await client.post(client.base_url.join("/v1.0-alpha1/echo/publish/bulk"), json=[])
    seen: dict[str, Any] = response.json()
    return seen


async def test_an_empty_answer_is_an_empty_response(sidecar: TestServer) -> None:
    async with create_sidecar_client(_settings(_port(sidecar))) as client:
        response = await client.get("/empty")
    assert (response.status_code, response.content, response.is_success) == (204, b"", True)
    assert response.raise_for_status() is response
    assert str(response.url) == f"http://127.0.0.1:{_port(sidecar)}/v1.0/empty"


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_a_sidecar_that_is_not_there_is_a_call_never_sent() -> None:
    async with create_sidecar_client(_settings(_closed_port())) as client:
        with pytest.raises(NOT_SENT) as raised:
            await client.get("/healthz")
    assert isinstance(raised.value, httpx.ConnectError)


async def test_a_slow_answer_times_out_and_a_lost_one_is_not_taken_for_never_sent(sidecar: TestServer) -> None:
    async with create_sidecar_client(_settings(_port(sidecar))) as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.get("/slow", timeout=0.2)
        client.timeout = httpx.Timeout(0.2)  # as orders sets it for its activities' longer calls
        with pytest.raises(httpx.ReadTimeout):
            await client.get("/slow")
        with pytest.raises(httpx.TransportError) as raised:
            await client.post("/hang-up", content=b"{}")
    assert not isinstance(raised.value, NOT_SENT)


async def test_what_the_client_does_not_send_is_refused_not_dropped(sidecar: TestServer) -> None:
    async with create_sidecar_client(_settings(_port(sidecar))) as client:
        with pytest.raises(TypeError, match="cookies"):
            await client.get("/empty", cookies={"a": "b"})
        assert json.loads((await client.get("/echo/x")).content)["method"] == "GET"
