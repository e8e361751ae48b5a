"""The public HTTP API through TestClient: the routes over fakes of the use cases' ports, and the whole app (its
lifespan, the kit's sidecar client) over a fake sidecar."""

import asyncio
import json
import socket
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from gateway.domain import (
    InvocationFailedError,
    SidecarUnreachableError,
    TokenPolicy,
    UpstreamResponse,
    UpstreamTimeoutError,
)
from gateway.handlers import ApiKeys, Authenticator, Gateway, SigningKeys
from gateway.main import create_app
from gateway.rate_limits import HoldBack, LimitSpecs, RateLimitedError, RateLimits
from gateway.settings import Settings
from sidecart_kit.service import Fakes
from sidecart_kit.testing import FakeSidecarHealth, FakeSleep, assert_probes_follow_the_sidecar

SUBJECT = "0f8fad5b-d9cb-469f-a165-70867728950e"
API_KEY = "k-live-0123456789"
MIB = 1024 * 1024
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def limit_specs(**tighter: str) -> LimitSpecs:
    """The default limits, with some replaced."""
    return replace(Settings().rate_limit_specs(), **tighter)


@pytest.fixture
def rate_limits() -> RateLimits:
    return RateLimits(limit_specs())


@pytest.fixture
def client(
    gateway: Gateway,
    jwks_source: Any,
    key_source: Any,
    clock: Any,
    sidecar_health: FakeSidecarHealth,
    rate_limits: RateLimits,
) -> TestClient:
    # A small general limit shows the telemetry route keeps its own 1 MiB.
    app = create_app(Settings(max_body_bytes=1024, metrics_port=None))
    authenticator = Authenticator(
        SigningKeys(jwks_source, ttl=300, min_refetch_interval=5, clock=clock),
        TokenPolicy(issuer="sidecart-users", audience="sidecart", leeway_seconds=10),
    )
    api_keys = ApiKeys(key_source, ttl=60, retry_interval=2, clock=clock)
    # What the lifespan would build (the client is not entered, so the lifespan does not run): fakes instead.
    app.state.gateway = gateway
    app.state.authenticator = authenticator
    app.state.api_keys = api_keys
    app.state.sidecar_health = sidecar_health
    app.state.rate_limits = rate_limits
    return TestClient(app, raise_server_exceptions=False)


@pytest.fixture
def bearer(signer: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {signer.token(sub=SUBJECT)}"}


def _assert_error_shape(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    assert body["error"]["request_id"] == response.headers["x-request-id"]
    return body


# --- health -------------------------------------------------------------------------------------------------


def test_probes_follow_the_sidecar(client: TestClient, sidecar_health: FakeSidecarHealth) -> None:
    assert_probes_follow_the_sidecar(client, sidecar_health)


# --- authentication -----------------------------------------------------------------------------------------

ORDER_ID = "6f1c2a4e-2b0b-4bb8-9a57-6f0a1d2f9c11"
PROTECTED = [
    ("GET", "/api/v1/users/me"),
    ("GET", "/api/v1/users/me/notifications"),
    ("GET", "/api/v1/users/me/wallet"),
    ("GET", "/api/v1/products"),
    ("GET", "/api/v1/products/sku-1"),
    ("POST", "/api/v1/orders"),
    ("GET", "/api/v1/orders"),
    ("GET", f"/api/v1/orders/{ORDER_ID}"),
    ("GET", "/api/v1/analytics/summary"),
    ("GET", "/api/v1/analytics/top-products"),
    ("GET", "/api/v1/analytics/funnel"),
    ("GET", "/api/v1/analytics/timeseries"),
]


@pytest.mark.parametrize(("method", "path"), PROTECTED)
def test_missing_token_is_401(client: TestClient, upstream: Any, method: str, path: str) -> None:
    response = client.request(method, path, json={"lines": []}, headers={"Idempotency-Key": "k-1"})
    _assert_error_shape(response, 401, "missing_token")
    assert response.headers["www-authenticate"] == 'Bearer realm="sidecart"'
    assert upstream.calls == []


def _bad_tokens(signer: Any, other_signer: Any, forge: Any, claims: Any) -> dict[str, str]:
    return {
        "expired": f"Bearer {signer.token(exp=int(time.time()) - 120)}",
        "wrong audience": f"Bearer {signer.token(aud='other-platform')}",
        "wrong issuer": f"Bearer {signer.token(iss='someone')}",
        "bad signature": f"Bearer {other_signer.token(kid='key-1')}",
        "alg none": f"Bearer {forge({'alg': 'none', 'kid': 'key-1'}, claims(), None)}",
        "HS256 with public key": f"Bearer {forge({'alg': 'HS256', 'kid': 'key-1'}, claims(), signer.public_pem())}",
        "unknown kid": f"Bearer {other_signer.token()}",
        "garbage": "Bearer not.a.jwt",
        "malformed header": f"Token {signer.token()}",
        "bearer without token": "Bearer",
    }


BAD_TOKEN_CASES = [
    "expired", "wrong audience", "wrong issuer", "bad signature", "alg none", "HS256 with public key",
    "unknown kid", "garbage", "malformed header", "bearer without token",
]  # fmt: skip


@pytest.mark.parametrize("case", BAD_TOKEN_CASES)
@pytest.mark.parametrize(("method", "path"), PROTECTED)
def test_bad_token_is_401(
    client: TestClient,
    upstream: Any,
    signer: Any,
    other_signer: Any,
    forge: Any,
    claims: Any,
    case: str,
    method: str,
    path: str,
) -> None:
    authorization = _bad_tokens(signer, other_signer, forge, claims)[case]
    response = client.request(method, path, json={"lines": []}, headers={"Authorization": authorization})
    body = _assert_error_shape(response, 401, "invalid_token")
    assert response.headers["www-authenticate"].startswith('Bearer realm="sidecart", error="invalid_token"')
    assert body["error"]["details"][0]["field"] == "Authorization"
    assert upstream.calls == []


def test_unknown_kid_refetches_the_keys_once(
    client: TestClient, jwks_source: Any, clock: Any, signer: Any, other_signer: Any
) -> None:
    client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {signer.token()}"})
    assert jwks_source.fetches == 1
    clock.now += 60
    jwks_source.document = {"keys": [signer.jwk(), other_signer.jwk()]}
    response = client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {other_signer.token()}"})
    assert response.status_code == 200
    assert jwks_source.fetches == 2


def test_jwks_unavailable_is_503_not_401(client: TestClient, jwks_source: Any, bearer: dict[str, str]) -> None:
    jwks_source.available = False
    response = client.get("/api/v1/users/me", headers=bearer)
    _assert_error_shape(response, 503, "auth_unavailable")
    assert "www-authenticate" not in response.headers


@pytest.mark.parametrize(("method", "path"), [("post", "/api/v1/users"), ("post", "/api/v1/auth/token")])
def test_sign_up_and_login_need_no_token(client: TestClient, upstream: Any, method: str, path: str) -> None:
    assert client.request(method, path, json={}).status_code == 200
    assert len(upstream.calls) == 1


# --- routing ------------------------------------------------------------------------------------------------


def test_notifications_route_to_the_notifications_app_for_the_token_subject(
    client: TestClient, upstream: Any, bearer: dict[str, str]
) -> None:
    upstream.answer = UpstreamResponse(200, {"content-type": "application/json"}, b'{"items": []}')
    response = client.get("/api/v1/users/me/notifications?user_id=someone-else", headers=bearer)
    assert (response.status_code, response.json()) == (200, {"items": []})
    [(app_id, request)] = upstream.calls
    assert (app_id, request.method, request.path) == ("notifications", "GET", f"users/{SUBJECT}/notifications")


def test_profile_routes_to_users_for_the_token_subject(
    client: TestClient, upstream: Any, bearer: dict[str, str]
) -> None:
    client.get("/api/v1/users/me", headers={**bearer, "X-User-Id": "someone-else"})
    [(app_id, request)] = upstream.calls
    assert (app_id, request.method, request.path) == ("users", "GET", f"users/{SUBJECT}")
    assert "authorization" not in request.headers
    assert "x-user-id" not in request.headers


def test_products_route_to_inventory(client: TestClient, upstream: Any, bearer: dict[str, str]) -> None:
    upstream.answer = UpstreamResponse(200, {"content-type": "application/json"}, b'{"items": []}')
    listed = client.get("/api/v1/products", headers=bearer)
    one = client.get("/api/v1/products/SKU-42.b_1", headers=bearer)
    assert (listed.status_code, listed.json(), one.status_code) == (200, {"items": []}, 200)
    assert [(app_id, request.method, request.path) for app_id, request in upstream.calls] == [
        ("inventory", "GET", "products"),
        ("inventory", "GET", "products/SKU-42.b_1"),
    ]
    assert all("authorization" not in request.headers for _, request in upstream.calls)


@pytest.mark.parametrize("sku", ["x" * 65, "a%20b", "caf%C3%A9", "%2E%2E", "%2E", "..%2Fadmin", "a%2Fb", "sku%0A"])
def test_a_sku_that_cannot_exist_is_404_without_asking_inventory(
    client: TestClient, upstream: Any, bearer: dict[str, str], sku: str
) -> None:
    _assert_error_shape(client.get(f"/api/v1/products/{sku}", headers=bearer), 404, "not_found")
    assert upstream.calls == []


def test_unknown_product_from_inventory_passes_through(
    client: TestClient, upstream: Any, bearer: dict[str, str]
) -> None:
    error = {"error": {"code": "product_not_found", "message": "no", "details": [], "request_id": "r"}}
    upstream.answer = UpstreamResponse(404, {"content-type": "application/json"}, json.dumps(error).encode())
    response = client.get("/api/v1/products/sku-404", headers=bearer)
    assert (response.status_code, response.json()) == (404, error)


def test_wallet_routes_to_payments_for_the_token_subject(
    client: TestClient, upstream: Any, bearer: dict[str, str]
) -> None:
    upstream.answer = UpstreamResponse(200, {"content-type": "application/json"}, b'{"balance_cents": 5000}')
    response = client.get("/api/v1/users/me/wallet?user_id=someone-else", headers={**bearer, "X-User-Id": "x"})
    assert (response.status_code, response.json()) == (200, {"balance_cents": 5000})
    [(app_id, request)] = upstream.calls
    assert (app_id, request.method, request.path) == ("payments", "GET", f"wallets/{SUBJECT}")
    assert "authorization" not in request.headers


def _accepted(order_id: str) -> UpstreamResponse:
    body = json.dumps({"order_id": order_id, "status": "pending"}).encode()
    # orders names its own path; the client must get the public one instead.
    return UpstreamResponse(
        202, {"content-type": "application/json", "location": f"/users/{SUBJECT}/orders/{order_id}"}, body
    )


def test_placing_an_order_routes_to_orders_with_the_idempotency_key(
    client: TestClient, upstream: Any, bearer: dict[str, str]
) -> None:
    upstream.answer = _accepted(ORDER_ID)
    payload = {"lines": [{"sku": "sku-1", "quantity": 2}]}
    headers = {**bearer, "Idempotency-Key": "attempt-7", "Cookie": "a=b"}
    response = client.post("/api/v1/orders", json=payload, headers=headers)
    assert (response.status_code, response.json()) == (202, {"order_id": ORDER_ID, "status": "pending"})
    assert response.headers["location"] == f"/api/v1/orders/{ORDER_ID}"
    [(app_id, request)] = upstream.calls
    assert (app_id, request.method, request.path) == ("orders", "POST", f"users/{SUBJECT}/orders")
    assert json.loads(request.body) == payload
    assert request.headers["idempotency-key"] == "attempt-7"
    assert request.headers["content-type"] == "application/json"
    assert "authorization" not in request.headers
    assert "cookie" not in request.headers


def test_an_order_without_idempotency_key_is_forwarded_for_orders_to_judge(
    client: TestClient, upstream: Any, bearer: dict[str, str]
) -> None:
    error = {"error": {"code": "idempotency_key_required", "message": "x", "details": [], "request_id": "r"}}
    upstream.answer = UpstreamResponse(400, {"content-type": "application/json"}, json.dumps(error).encode())
    response = client.post("/api/v1/orders", json={"lines": []}, headers=bearer)
    assert (response.status_code, response.json()) == (400, error)
    assert "idempotency-key" not in upstream.calls[0][1].headers


@pytest.mark.parametrize(
    ("status", "code"), [(400, "idempotency_key_required"), (409, "idempotency_key_reused"), (422, "validation_error")]
)
def test_refused_orders_pass_the_app_error_through_without_location(
    client: TestClient, upstream: Any, bearer: dict[str, str], status: int, code: str
) -> None:
    error = {"error": {"code": code, "message": "refused", "details": [], "request_id": "r"}}
    upstream.answer = UpstreamResponse(
        status, {"content-type": "application/json", "location": "/somewhere"}, json.dumps(error).encode()
    )
    response = client.post("/api/v1/orders", json={"lines": []}, headers={**bearer, "Idempotency-Key": "k"})
    assert (response.status_code, response.json()) == (status, error)
    assert "location" not in response.headers


def test_an_accepted_order_that_names_no_order_is_502(
    client: TestClient, upstream: Any, bearer: dict[str, str]
) -> None:
    upstream.answer = UpstreamResponse(202, {"content-type": "application/json"}, b'{"status": "pending"}')
    response = client.post("/api/v1/orders", json={"lines": []}, headers={**bearer, "Idempotency-Key": "k"})
    _assert_error_shape(response, 502, "bad_gateway")
    assert "location" not in response.headers


def test_orders_are_read_from_orders_for_the_token_subject(
    client: TestClient, upstream: Any, bearer: dict[str, str]
) -> None:
    upstream.answer = UpstreamResponse(200, {"content-type": "application/json"}, b'{"items": []}')
    assert client.get("/api/v1/orders?user_id=someone-else", headers=bearer).json() == {"items": []}
    assert client.get(f"/api/v1/orders/{ORDER_ID.upper()}", headers=bearer).status_code == 200
    assert [(app_id, request.method, request.path) for app_id, request in upstream.calls] == [
        ("orders", "GET", f"users/{SUBJECT}/orders"),
        ("orders", "GET", f"users/{SUBJECT}/orders/{ORDER_ID}"),
    ]


@pytest.mark.parametrize("order_id", ["42", "not-a-uuid", "%2E%2E", "..%2Fadmin", ORDER_ID.replace("-", "")])
def test_an_order_id_that_is_no_uuid_is_404_without_asking_orders(
    client: TestClient, upstream: Any, bearer: dict[str, str], order_id: str
) -> None:
    _assert_error_shape(client.get(f"/api/v1/orders/{order_id}", headers=bearer), 404, "not_found")
    assert upstream.calls == []


def test_another_users_order_is_whatever_orders_answers_for_the_caller(
    client: TestClient, upstream: Any, bearer: dict[str, str]
) -> None:
    # The gateway never names anyone but the caller: orders looks the id up among the caller's orders only.
    upstream.answer = UpstreamResponse(404, {"content-type": "text/plain"}, b"Not Found")
    response = client.get(f"/api/v1/orders/{ORDER_ID}", headers=bearer)
    _assert_error_shape(response, 404, "not_found")
    assert upstream.calls[0][1].path == f"users/{SUBJECT}/orders/{ORDER_ID}"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/admin/products"),
        ("POST", "/api/v1/products"),
        ("PUT", "/api/v1/products/sku-1"),
        ("DELETE", f"/api/v1/orders/{ORDER_ID}"),
        ("GET", "/api/v1/products/sku-1/..%2F..%2Fadmin"),
        ("GET", "/admin/wallets"),
    ],
)
def test_nothing_else_reaches_the_apps(
    client: TestClient, upstream: Any, bearer: dict[str, str], method: str, path: str
) -> None:
    assert client.request(method, path, headers=bearer).status_code in (404, 405)
    assert upstream.calls == []


def test_an_order_over_the_body_limit_is_413(client: TestClient, upstream: Any, bearer: dict[str, str]) -> None:
    headers = {**bearer, "content-type": "application/json", "Idempotency-Key": "k"}
    _assert_error_shape(client.post("/api/v1/orders", content=b"x" * 2048, headers=headers), 413, "payload_too_large")
    assert upstream.calls == []


def test_sign_up_passes_body_status_and_relevant_headers(client: TestClient, upstream: Any) -> None:
    upstream.answer = UpstreamResponse(
        201,
        {"content-type": "application/json", "etag": '"1"', "set-cookie": "x=1", "connection": "close"},
        b'{"id": "u-1"}',
    )
    payload = {"email": "a@example.com", "password": "correct horse", "name": "A"}
    response = client.post("/api/v1/users", json=payload, headers={"Cookie": "tracking=1"})
    assert (response.status_code, response.json()) == (201, {"id": "u-1"})
    assert response.headers["etag"] == '"1"'
    assert "set-cookie" not in response.headers
    [(app_id, request)] = upstream.calls
    assert (app_id, request.method, request.path) == ("users", "POST", "users")
    assert json.loads(request.body) == payload
    assert request.headers["content-type"] == "application/json"
    assert "cookie" not in request.headers


def test_login_passes_the_app_error_through(client: TestClient, upstream: Any) -> None:
    error = {"error": {"code": "invalid_credentials", "message": "no", "details": [], "request_id": "r"}}
    upstream.answer = UpstreamResponse(401, {"content-type": "application/json"}, json.dumps(error).encode())
    response = client.post("/api/v1/auth/token", json={"email": "a@example.com", "password": "x"})
    assert (response.status_code, response.json()) == (401, error)


def test_body_over_the_limit_is_413(client: TestClient, upstream: Any) -> None:
    response = client.post("/api/v1/users", content=b"x" * 2048, headers={"content-type": "application/json"})
    _assert_error_shape(response, 413, "payload_too_large")
    assert upstream.calls == []


def test_streamed_body_over_the_limit_is_413(client: TestClient, upstream: Any) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(4):
            yield b"x" * 512

    response = client.post("/api/v1/users", content=chunks(), headers={"content-type": "application/json"})
    _assert_error_shape(response, 413, "payload_too_large")
    assert upstream.calls == []


# --- analytics reports ----------------------------------------------------------------------------------------

REPORTS = ["summary", "top-products", "funnel", "timeseries"]


@pytest.mark.parametrize("report", REPORTS)
def test_reports_route_to_analytics_with_the_query_string(
    client: TestClient, upstream: Any, bearer: dict[str, str], report: str
) -> None:
    upstream.answer = UpstreamResponse(200, {"content-type": "application/json"}, b'{"items": []}')
    query = "limit=5&type=orders&from=2026-01-01T00%3A00%3A00Z&to=2026-01-31"
    response = client.get(f"/api/v1/analytics/{report}?{query}", headers=bearer)
    assert (response.status_code, response.json()) == (200, {"items": []})
    [(app_id, request)] = upstream.calls
    assert (app_id, request.method, request.path, request.query) == ("analytics", "GET", f"reports/{report}", query)
    assert "authorization" not in request.headers


def test_unknown_query_parameters_are_dropped(client: TestClient, upstream: Any, bearer: dict[str, str]) -> None:
    query = "user_id=someone&limit=3&admin=1&Limit=9&to=2026-02-01&limit=4"
    client.get(f"/api/v1/analytics/top-products?{query}", headers=bearer)
    assert upstream.calls[0][1].query == "limit=3&to=2026-02-01&limit=4"


def test_a_report_without_a_query_string_forwards_none(
    client: TestClient, upstream: Any, bearer: dict[str, str]
) -> None:
    client.get("/api/v1/analytics/summary", headers=bearer)
    assert upstream.calls[0][1].query == ""


def test_query_values_cannot_add_parameters_or_change_the_path(
    client: TestClient, upstream: Any, bearer: dict[str, str]
) -> None:
    client.get("/api/v1/analytics/timeseries?type=orders%26admin%3D1&from=..%2Fadmin%23x", headers=bearer)
    [(_, request)] = upstream.calls
    assert (request.path, request.query) == ("reports/timeseries", "type=orders%26admin%3D1&from=..%2Fadmin%23x")


def test_other_routes_forward_no_query_string(client: TestClient, upstream: Any, bearer: dict[str, str]) -> None:
    client.get("/api/v1/products?limit=5&from=x", headers=bearer)
    assert upstream.calls[0][1].query == ""


def test_analytics_validation_error_passes_through(client: TestClient, upstream: Any, bearer: dict[str, str]) -> None:
    error = {
        "error": {
            "code": "validation_error",
            "message": "The request is invalid.",
            "details": [{"field": "limit", "reason": "Input should be less than or equal to 100"}],
            "request_id": "r",
        }
    }
    upstream.answer = UpstreamResponse(422, {"content-type": "application/json"}, json.dumps(error).encode())
    response = client.get("/api/v1/analytics/top-products?limit=1000", headers=bearer)
    assert (response.status_code, response.json()) == (422, error)


def test_a_query_string_over_the_limit_is_414(client: TestClient, upstream: Any, bearer: dict[str, str]) -> None:
    response = client.get(f"/api/v1/analytics/summary?from={'x' * 2044}", headers=bearer)  # 2049 bytes
    _assert_error_shape(response, 414, "uri_too_long")
    assert upstream.calls == []


def test_a_query_string_at_the_limit_is_forwarded(client: TestClient, upstream: Any, bearer: dict[str, str]) -> None:
    response = client.get(f"/api/v1/analytics/summary?from={'x' * 2043}", headers=bearer)  # 2048 bytes
    assert response.status_code == 200
    assert upstream.calls[0][1].query == f"from={'x' * 2043}"


def test_a_long_query_string_without_a_token_is_401(client: TestClient, upstream: Any) -> None:
    _assert_error_shape(client.get(f"/api/v1/analytics/summary?from={'x' * 4096}"), 401, "missing_token")
    assert upstream.calls == []


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/analytics/admin",
        "/api/v1/analytics/admin/rebuild",
        "/api/v1/analytics/reports/summary",
        "/api/v1/analytics/summary/..%2Fadmin",
        "/api/v1/analytics",
    ],
)
def test_no_public_path_reaches_another_analytics_method(
    client: TestClient, upstream: Any, bearer: dict[str, str], path: str
) -> None:
    _assert_error_shape(client.get(path, headers=bearer), 404, "not_found")
    assert upstream.calls == []


def test_reports_are_read_only(client: TestClient, upstream: Any, bearer: dict[str, str]) -> None:
    _assert_error_shape(client.post("/api/v1/analytics/summary", json={}, headers=bearer), 405, "method_not_allowed")
    assert upstream.calls == []


@pytest.mark.parametrize(
    ("failure", "status", "code"),
    [
        (InvocationFailedError("analytics: ERR_DIRECT_INVOKE"), 503, "upstream_unavailable"),
        (SidecarUnreachableError("connection refused"), 503, "sidecar_unavailable"),
        (UpstreamTimeoutError("timed out"), 504, "upstream_timeout"),
    ],
)
def test_analytics_down_maps_to_the_error_shape(
    client: TestClient, upstream: Any, bearer: dict[str, str], failure: Exception, status: int, code: str
) -> None:
    upstream.answer = failure
    response = client.get("/api/v1/analytics/timeseries?type=orders", headers={**bearer, "X-Request-ID": "req-d"})
    body = _assert_error_shape(response, status, code)
    assert body["error"]["request_id"] == "req-d"
    assert "ERR_DIRECT_INVOKE" not in response.text


# --- upstream failures --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("failure", "status", "code"),
    [
        (InvocationFailedError("users: ERR_DIRECT_INVOKE"), 503, "upstream_unavailable"),
        (SidecarUnreachableError("connection refused"), 503, "sidecar_unavailable"),
        (UpstreamTimeoutError("timed out"), 504, "upstream_timeout"),
    ],
)
def test_failed_invocation_maps_to_the_error_shape(
    client: TestClient, upstream: Any, bearer: dict[str, str], failure: Exception, status: int, code: str
) -> None:
    upstream.answer = failure
    body = _assert_error_shape(client.get("/api/v1/users/me/notifications", headers=bearer), status, code)
    assert "ERR_DIRECT_INVOKE" not in json.dumps(body)


@pytest.mark.parametrize(("method", "path"), PROTECTED)
def test_every_route_maps_an_app_that_is_down_to_503(
    client: TestClient, upstream: Any, bearer: dict[str, str], method: str, path: str
) -> None:
    upstream.answer = InvocationFailedError("ERR_DIRECT_INVOKE")
    response = client.request(method, path, json={"lines": []}, headers={**bearer, "Idempotency-Key": "k"})
    _assert_error_shape(response, 503, "upstream_unavailable")
    assert response.headers["retry-after"] == "2"


def test_app_crash_outside_the_error_shape_is_502(client: TestClient, upstream: Any, bearer: dict[str, str]) -> None:
    upstream.answer = UpstreamResponse(500, {"content-type": "text/plain"}, b"Traceback ...")
    response = client.get("/api/v1/users/me", headers=bearer)
    _assert_error_shape(response, 502, "bad_gateway")
    assert "Traceback" not in response.text


# --- framework errors ---------------------------------------------------------------------------------------


def test_wrong_method_is_405_in_the_error_shape(client: TestClient) -> None:
    response = client.delete("/api/v1/users")
    _assert_error_shape(response, 405, "method_not_allowed")
    assert "POST" in response.headers["allow"]


# --- POST /api/v1/events: a bearer token or an API key, ingest's body limit ----------------------------------

BATCH = {"events": [{"id": "6f1c2a4e-2b0b-4bb8-9a57-6f0a1d2f9c11", "type": "page_view", "ts": "2026-01-01T00:00:00Z"}]}


@pytest.fixture
def events_client(client: TestClient, upstream: Any) -> TestClient:
    upstream.answer = UpstreamResponse(202, {"content-type": "application/json"}, b'{"accepted": 1, "rejected": []}')
    return client


def _post_events(client: TestClient, headers: dict[str, str], body: bytes | None = None) -> Any:
    content = json.dumps(BATCH).encode() if body is None else body
    return client.post("/api/v1/events", content=content, headers={"content-type": "application/json", **headers})


def test_bearer_token_is_accepted_and_the_batch_forwarded(
    events_client: TestClient, upstream: Any, signer: Any
) -> None:
    response = _post_events(events_client, {"Authorization": f"Bearer {signer.token()}"})
    assert (response.status_code, response.json()) == (202, {"accepted": 1, "rejected": []})
    [(app_id, request)] = upstream.calls
    assert (app_id, request.method, request.path) == ("ingest", "POST", "events")
    assert json.loads(request.body) == BATCH
    assert request.headers["content-type"] == "application/json"
    assert "authorization" not in request.headers


def test_api_key_is_accepted(events_client: TestClient, upstream: Any) -> None:
    response = _post_events(events_client, {"X-API-Key": API_KEY})
    assert response.status_code == 202
    [(app_id, request)] = upstream.calls
    assert app_id == "ingest"
    assert "x-api-key" not in request.headers  # the key stops at the edge


def test_content_type_is_forwarded_as_sent(events_client: TestClient, upstream: Any) -> None:
    events_client.post("/api/v1/events", content=b"x", headers={"X-API-Key": API_KEY, "content-type": "text/plain"})
    assert upstream.calls[0][1].headers["content-type"] == "text/plain"


@pytest.mark.parametrize("key", ["wrong", API_KEY + "x", API_KEY[:-1], "", "k-live"])
def test_a_wrong_api_key_is_401(events_client: TestClient, upstream: Any, key: str) -> None:
    body = _assert_error_shape(_post_events(events_client, {"X-API-Key": key}), 401, "invalid_api_key")
    assert body["error"]["details"][0]["field"] == "X-API-Key"
    assert upstream.calls == []


def test_a_wrong_api_key_is_not_rescued_by_a_token(events_client: TestClient, upstream: Any, signer: Any) -> None:
    response = _post_events(events_client, {"X-API-Key": "wrong", "Authorization": f"Bearer {signer.token()}"})
    _assert_error_shape(response, 401, "invalid_api_key")
    assert upstream.calls == []


def test_no_credentials_is_401(events_client: TestClient, upstream: Any) -> None:
    response = _assert_error_shape(_post_events(events_client, {}), 401, "missing_token")
    assert response["error"]["details"][0]["field"] == "Authorization"
    assert upstream.calls == []


def test_a_bad_token_is_401(events_client: TestClient, upstream: Any) -> None:
    _assert_error_shape(_post_events(events_client, {"Authorization": "Bearer not-a-token"}), 401, "invalid_token")
    assert upstream.calls == []


def test_secret_store_down_is_503(events_client: TestClient, key_source: Any, upstream: Any) -> None:
    key_source.available = False
    response = _post_events(events_client, {"X-API-Key": API_KEY})
    _assert_error_shape(response, 503, "auth_unavailable")
    assert response.headers["retry-after"]
    assert upstream.calls == []


def test_the_body_limit_is_1_mib(events_client: TestClient, upstream: Any) -> None:
    exactly = b" " * (MIB - 2) + b"{}"
    assert _post_events(events_client, {"X-API-Key": API_KEY}, exactly).status_code == 202
    _assert_error_shape(_post_events(events_client, {"X-API-Key": API_KEY}, exactly + b" "), 413, "payload_too_large")
    assert len(upstream.calls) == 1


def test_an_ingest_error_passes_through(events_client: TestClient, upstream: Any) -> None:
    error = {"error": {"code": "unavailable", "message": "resend", "details": [], "request_id": "r"}}
    upstream.answer = UpstreamResponse(
        503, {"content-type": "application/json", "retry-after": "2"}, json.dumps(error).encode()
    )
    response = _post_events(events_client, {"X-API-Key": API_KEY})
    assert (response.status_code, response.json()["error"]["code"], response.headers["retry-after"]) == (
        503,
        "unavailable",
        "2",
    )


# --- The whole app over a fake sidecar: what reaches the sidecar --------------------------------------------


class FakeSidecar:
    """The gateway's sidecar: the users JWKS, the API keys secret, and any other app answering 200 (recorded)."""

    def __init__(self, jwks: dict[str, Any]) -> None:
        self.jwks = jwks
        self.invocations: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/v1.0/invoke/users/method/.well-known/jwks.json":
            return httpx.Response(200, json=self.jwks)
        if path == "/v1.0/secrets/secretstore/ingest-api-keys":
            return httpx.Response(200, json={"ingest-api-keys": API_KEY})
        self.invocations.append(request)
        return httpx.Response(200, json={"ok": True})

    def invocation(self) -> httpx.Request:
        [request] = self.invocations
        return request


@pytest.fixture
def sidecar(signer: Any) -> FakeSidecar:
    return FakeSidecar({"keys": [signer.jwk()]})


def _whole_app(sidecar: FakeSidecar, **settings: Any) -> TestClient:
    """The gateway as create_app builds it; entering the client runs its lifespan."""
    # No metrics port unless a test asks for one: a running platform's gateway may hold the default one.
    settings = {"metrics_port": None, **settings}
    return TestClient(create_app(Settings(**settings), Fakes(sidecar_transport=httpx.MockTransport(sidecar))))


def test_an_invocation_carries_the_request_id_the_client_sent(sidecar: FakeSidecar) -> None:
    with _whole_app(sidecar) as client:
        response = client.post("/api/v1/users", json={}, headers={"X-Request-ID": "abc-123"})
    assert response.headers["x-request-id"] == "abc-123"
    invocation = sidecar.invocation()
    assert invocation.url.path == "/v1.0/invoke/users/method/users"
    assert invocation.headers["x-request-id"] == "abc-123"


@pytest.mark.parametrize("offered", [None, "has space", "x" * 129])
def test_an_invocation_carries_the_id_the_kit_made_in_place_of_the_clients(
    sidecar: FakeSidecar, offered: str | None
) -> None:
    with _whole_app(sidecar) as client:
        response = client.post("/api/v1/users", json={}, headers={} if offered is None else {"X-Request-ID": offered})
    made = response.headers["x-request-id"]
    assert made != offered
    assert sidecar.invocation().headers["x-request-id"] == made


def test_an_invocation_carries_the_trace_context(sidecar: FakeSidecar) -> None:
    with _whole_app(sidecar) as client:
        client.post("/api/v1/users", json={}, headers={"traceparent": TRACEPARENT, "tracestate": "a=b"})
    invocation = sidecar.invocation()
    assert (invocation.headers["traceparent"], invocation.headers["tracestate"]) == (TRACEPARENT, "a=b")


def test_reports_carry_the_request_id_and_trace_context(sidecar: FakeSidecar, signer: Any) -> None:
    headers = {
        "Authorization": f"Bearer {signer.token(sub=SUBJECT)}",
        "X-Request-ID": "req-a1",
        "traceparent": TRACEPARENT,
        "tracestate": "a=b",
    }
    with _whole_app(sidecar) as client:
        response = client.get("/api/v1/analytics/funnel?from=2026-01-01&admin=1", headers=headers)
    assert (response.status_code, response.headers["x-request-id"]) == (200, "req-a1")
    invocation = sidecar.invocation()
    assert (invocation.url.path, invocation.url.query) == (
        "/v1.0/invoke/analytics/method/reports/funnel",
        b"from=2026-01-01",
    )
    assert (
        invocation.headers["x-request-id"],
        invocation.headers["traceparent"],
        invocation.headers["tracestate"],
    ) == (
        "req-a1",
        TRACEPARENT,
        "a=b",
    )


def test_only_the_gateways_own_token_reaches_the_sidecar(sidecar: FakeSidecar) -> None:
    client_headers = {"dapr-api-token": "guess", "dapr-app-id": "payments", "Cookie": "a=b", "Connection": "close"}
    with _whole_app(sidecar, dapr_api_token="s3cret") as client:
        client.post("/api/v1/users", json={}, headers=client_headers)
    invocation = sidecar.invocation()
    assert (invocation.url.path, invocation.headers["dapr-api-token"]) == ("/v1.0/invoke/users/method/users", "s3cret")
    assert "dapr-app-id" not in invocation.headers
    assert "cookie" not in invocation.headers


def test_the_ingest_app_id_comes_from_settings(sidecar: FakeSidecar) -> None:
    with _whole_app(sidecar, ingest_app_id="ingest-blue") as client:
        response = client.post("/api/v1/events", json=BATCH, headers={"X-API-Key": API_KEY})
    assert response.status_code == 200
    assert sidecar.invocation().url.path == "/v1.0/invoke/ingest-blue/method/events"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def test_calls_to_other_apps_and_key_fetches_are_counted(sidecar: FakeSidecar, signer: Any) -> None:
    port = _free_port()
    with _whole_app(sidecar, metrics_port=port) as client:
        client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {signer.token(sub=SUBJECT)}"})
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    # The JWKS and the profile, both from users.
    assert 'gateway_upstream_requests_total{app_id="users",outcome="answered"} 2.0' in metrics
    assert 'gateway_jwks_fetches_total{outcome="ok"} 1.0' in metrics


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("Idempotency-Key", "café".encode()),
        ("Accept-Language", b"\xff\xfe"),
        ("Content-Type", "application/json; charset=ütf-8".encode()),
        ("traceparent", "00-é".encode()),
        ("Authorization", "Bearer tökén".encode()),
        ("X-Anything", b"a\x7fb"),
    ],
)
def test_a_header_value_that_is_not_visible_ascii_is_400_before_anything_else(
    client: TestClient, upstream: Any, bearer: dict[str, str], name: str, value: bytes
) -> None:
    headers: dict[str, str | bytes] = {**bearer, "Idempotency-Key": "k-1", name: value}
    response = client.post("/api/v1/orders", json={"lines": []}, headers=headers)

    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["code"], error["details"][0]["field"]) == ("invalid_header", name.lower())
    assert upstream.calls == []


def test_tabs_and_spaces_in_a_header_value_are_fine(client: TestClient, upstream: Any, bearer: dict[str, str]) -> None:
    upstream.answer = _accepted(ORDER_ID)
    headers = {**bearer, "Idempotency-Key": "k-1", "Accept-Language": "en-GB,\ten;q=0.8"}

    assert client.post("/api/v1/orders", json={"lines": []}, headers=headers).status_code == 202


def test_metrics_and_docs_are_not_on_the_public_port_but_metrics_are_on_their_own(sidecar: FakeSidecar) -> None:
    port = _free_port()
    with _whole_app(sidecar, metrics_port=port) as client:
        for path in ("/metrics", "/docs", "/redoc", "/openapi.json"):
            assert client.get(path).status_code == 404, path
        assert "http_requests_total" in httpx.get(f"http://127.0.0.1:{port}/metrics").text
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/metrics")  # stopped with the app


# --- rate limits ------------------------------------------------------------------------------------------------


def _rate_limited_client(client: TestClient, **tighter: str) -> TestClient:
    client.app.state.rate_limits = RateLimits(limit_specs(**tighter))  # type: ignore[attr-defined]
    return client


def test_login_attempts_on_one_account_are_held_back_with_an_honest_retry_after(
    client: TestClient, upstream: Any
) -> None:
    _rate_limited_client(client, login_per_account_and_address="3/minute")
    attempt = {"email": "ann@example.com", "password": "guess"}

    answers = [client.post("/api/v1/auth/token", json=attempt) for _ in range(5)]

    assert [a.status_code for a in answers[:3]] == [upstream.answer.status] * 3
    refused = _assert_error_shape(answers[3], 429, "rate_limited")
    assert "account" in refused["error"]["message"]
    assert 1 <= int(answers[3].headers["retry-after"]) <= 60
    assert len(upstream.calls) == 3  # the refused attempts never reached users
    # The same account in another spelling is the same account; another account is not held back.
    look_alike = {"email": "ANN@Example.com", "password": "guess"}
    assert client.post("/api/v1/auth/token", json=look_alike).status_code == 429
    assert client.post("/api/v1/auth/token", json={"email": "bob@example.com", "password": "x"}).status_code != 429


async def test_the_owner_of_an_account_under_attack_logs_in_from_another_address(upstream: Any) -> None:
    limits = RateLimits(limit_specs(login_per_account_and_address="3/minute"))
    for _ in range(3):
        await limits.count_login("203.0.113.9", "ann@example.com")
    with pytest.raises(RateLimitedError):
        await limits.count_login("203.0.113.9", "ann@example.com")

    await limits.count_login("198.51.100.7", "ann@example.com")  # the owner, elsewhere: not refused


async def test_a_refused_login_or_sign_up_is_held_back_before_it_is_answered() -> None:
    sleep = FakeSleep()
    limits = RateLimits(
        limit_specs(login_per_account_and_address="2/minute", sign_up_per_address="1/minute"), HoldBack(1.5, 10, sleep)
    )
    for _ in range(2):
        await limits.count_login("203.0.113.9", "ann@example.com")
    await limits.count_sign_up("203.0.113.9")
    assert sleep.delays == []  # what is let through is not held

    with pytest.raises(RateLimitedError) as refused_login:
        await limits.count_login("203.0.113.9", "ann@example.com")
    with pytest.raises(RateLimitedError):
        await limits.count_sign_up("203.0.113.9")

    assert sleep.delays == [1.5, 1.5]
    # Retry-After is read when the answer goes out, after the hold: the window's end from then, never less than 1.
    assert 1 <= refused_login.value.retry_after_seconds <= 60


async def test_refusals_beyond_the_ones_held_are_answered_at_once() -> None:
    release = asyncio.Event()

    async def until_released(seconds: float) -> None:
        await release.wait()

    hold_back = HoldBack(1.0, 2, until_released)
    limits = RateLimits(limit_specs(login_per_account_and_address="1/minute"), hold_back)
    await limits.count_login("203.0.113.9", "ann@example.com")
    held = [asyncio.create_task(limits.count_login("203.0.113.9", "ann@example.com")) for _ in range(2)]
    await asyncio.sleep(0)
    assert hold_back.held == 2

    with pytest.raises(RateLimitedError):
        await limits.count_login("203.0.113.9", "ann@example.com")  # a third: not held, refused at once
    release.set()
    for task in held:
        with pytest.raises(RateLimitedError):
            await task
    assert hold_back.held == 0


def test_a_signed_in_user_over_the_limit_gets_429_whatever_the_route(
    client: TestClient, upstream: Any, bearer: dict[str, str]
) -> None:
    _rate_limited_client(client, per_subject="2/minute")

    statuses = [client.get("/api/v1/users/me", headers=bearer).status_code for _ in range(3)]
    other_route = client.get("/api/v1/users/me/wallet", headers=bearer)

    assert statuses[:2] == [upstream.answer.status] * 2
    assert statuses[2] == 429
    assert other_route.status_code == 429
    assert len(upstream.calls) == 2


def test_every_public_route_counts_against_the_client_address(client: TestClient, upstream: Any) -> None:
    _rate_limited_client(client, per_address="2/second", sign_up_per_address="100/minute")

    statuses = [client.post("/api/v1/users", json={}).status_code for _ in range(3)]

    assert statuses[2] == 429
    assert client.get("/api/v1/products").status_code == 429  # before even asking for a token


def test_sign_ups_from_one_address_are_limited(client: TestClient, upstream: Any) -> None:
    _rate_limited_client(client, sign_up_per_address="2/minute")

    statuses = [client.post("/api/v1/users", json={}).status_code for _ in range(3)]

    assert statuses[2] == 429
