"""The sidecar adapters over the kit's client and a fake sidecar: the URLs they build, how they read Dapr's answers."""

import json
from collections.abc import Callable

import httpx
import pytest

from gateway.adapters import DaprInvoker, DaprJwksSource, DaprSecretApiKeySource
from gateway.domain import (
    ApiKeysUnavailableError,
    InvocationFailedError,
    KeysUnavailableError,
    SidecarUnreachableError,
    UpstreamRequest,
    UpstreamTimeoutError,
)
from sidecart_kit.testing import fake_sidecar_client

Handler = Callable[[httpx.Request], httpx.Response]


def _raising(exc: Exception) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    return handler


async def test_invoke_calls_the_sidecar_invoke_api() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(201, json={"id": "u-1"}, headers={"etag": '"1"'})

    invoker = DaprInvoker(fake_sidecar_client(handler))
    request = UpstreamRequest("POST", "users", {"idempotency-key": "k-1", "content-type": "application/json"}, b"{}")
    answer = await invoker.invoke("users", request)
    assert (answer.status, json.loads(answer.body), answer.headers["etag"]) == (201, {"id": "u-1"}, '"1"')
    [sent] = seen
    assert (sent.method, sent.url.path) == ("POST", "/v1.0/invoke/users/method/users")
    assert (sent.headers["idempotency-key"], sent.content) == ("k-1", b"{}")


async def test_invoke_passes_the_query_string_to_the_sidecar() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={})

    query = "limit=5&from=2026-01-01T00%3A00%3A00Z&type=a%26b"
    await DaprInvoker(fake_sidecar_client(handler)).invoke(
        "analytics", UpstreamRequest("GET", "reports/summary", query=query)
    )
    [sent] = seen
    assert (sent.url.path, sent.url.query) == ("/v1.0/invoke/analytics/method/reports/summary", query.encode())
    assert sent.url.params.multi_items() == [("limit", "5"), ("from", "2026-01-01T00:00:00Z"), ("type", "a&b")]


async def test_invoke_without_a_query_sends_no_question_mark() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200)

    await DaprInvoker(fake_sidecar_client(handler)).invoke("users", UpstreamRequest("GET", "users/u-1"))
    assert (str(seen[0].url), seen[0].url.query) == ("http://127.0.0.1:3500/v1.0/invoke/users/method/users/u-1", b"")


async def test_dapr_own_error_is_an_invocation_failure() -> None:
    body = {"errorCode": "ERR_DIRECT_INVOKE", "message": "failed to invoke, id: users, err: couldn't find service"}
    invoker = DaprInvoker(fake_sidecar_client(lambda request: httpx.Response(500, json=body)))
    with pytest.raises(InvocationFailedError, match="ERR_DIRECT_INVOKE"):
        await invoker.invoke("users", UpstreamRequest("GET", "users/u-1"))


async def test_app_error_is_returned_not_taken_for_a_dapr_error() -> None:
    body: dict[str, object] = {"error": {"code": "internal_error", "message": "x", "details": [], "request_id": None}}
    invoker = DaprInvoker(fake_sidecar_client(lambda request: httpx.Response(500, json=body)))
    answer = await invoker.invoke("users", UpstreamRequest("GET", "users/u-1"))
    assert answer.status == 500


async def test_sidecar_down_is_unreachable() -> None:
    invoker = DaprInvoker(fake_sidecar_client(_raising(httpx.ConnectError("refused"))))
    with pytest.raises(SidecarUnreachableError):
        await invoker.invoke("users", UpstreamRequest("GET", "users/u-1"))


async def test_slow_answer_is_a_timeout() -> None:
    invoker = DaprInvoker(fake_sidecar_client(_raising(httpx.ReadTimeout("slow"))))
    with pytest.raises(UpstreamTimeoutError):
        await invoker.invoke("users", UpstreamRequest("GET", "users/u-1"))


async def test_invocation_outcomes_are_reported() -> None:
    outcomes: list[tuple[str, str]] = []
    invoker = DaprInvoker(
        fake_sidecar_client(lambda request: httpx.Response(200)), on_call=lambda *call: outcomes.append(call)
    )
    await invoker.invoke("users", UpstreamRequest("GET", "x"))
    assert outcomes == [("users", "answered")]


async def test_jwks_is_fetched_from_users_through_the_sidecar() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        return httpx.Response(200, json={"keys": []})

    source = DaprJwksSource(
        DaprInvoker(fake_sidecar_client(handler)), users_app_id="users", method=".well-known/jwks.json"
    )
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
    source = DaprJwksSource(
        DaprInvoker(fake_sidecar_client(handler)), users_app_id="users", method=".well-known/jwks.json"
    )
    with pytest.raises(KeysUnavailableError):
        await source.fetch_jwks()


def _secret_source(handler: Handler) -> DaprSecretApiKeySource:
    return DaprSecretApiKeySource(
        fake_sidecar_client(handler), store_name="secretstore", secret_name="ingest-api-keys", timeout=1.0
    )


async def test_the_secret_is_read_through_the_sidecar() -> None:
    paths: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.path)
        return httpx.Response(200, json={"ingest-api-keys": "a,b"})

    assert await _secret_source(handler).fetch_api_keys() == "a,b"
    assert paths == ["/v1.0/secrets/secretstore/ingest-api-keys"]


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(500, json={"errorCode": "ERR_SECRET_STORE_NOT_FOUND", "message": "x"}),
        httpx.Response(403, json={"errorCode": "ERR_PERMISSION_DENIED", "message": "x"}),
        httpx.Response(200, text="not json"),
        httpx.Response(200, json={"a": "1", "b": "2"}),
        httpx.Response(200, json=["a"]),
    ],
)
async def test_an_unusable_secret_means_unavailable(response: httpx.Response) -> None:
    with pytest.raises(ApiKeysUnavailableError):
        await _secret_source(lambda request: response).fetch_api_keys()


async def test_an_unreachable_sidecar_means_the_keys_are_unavailable() -> None:
    with pytest.raises(ApiKeysUnavailableError):
        await _secret_source(_raising(httpx.ConnectError("refused"))).fetch_api_keys()
