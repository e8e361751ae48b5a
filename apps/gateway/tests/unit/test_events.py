"""POST /api/v1/events: bearer token or X-API-Key, ingest's body limit, forwarding; the API key cache and source."""

import json
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from gateway.adapters import DaprSecretApiKeySource
from gateway.api import get_api_keys, get_authenticator, get_upstream
from gateway.domain import ApiKeysUnavailableError, InvalidApiKeyError, TokenPolicy, UpstreamResponse, api_key_matches
from gateway.handlers import ApiKeys, Authenticator, SigningKeys
from gateway.main import create_app
from gateway.settings import Settings

MIB = 1024 * 1024
KEY = "k-live-0123456789"
BATCH = {"events": [{"id": "6f1c2a4e-2b0b-4bb8-9a57-6f0a1d2f9c11", "type": "page_view", "ts": "2026-01-01T00:00:00Z"}]}


class FakeApiKeySource:
    """Serves the secret's value (or fails), counting reads."""

    def __init__(self, value: str = f" {KEY} , k-other ,") -> None:
        self.value = value
        self.available = True
        self.fetches = 0

    async def fetch_api_keys(self) -> str:
        self.fetches += 1
        if not self.available:
            raise ApiKeysUnavailableError("secret store down")
        return self.value


@pytest.fixture
def key_source() -> FakeApiKeySource:
    return FakeApiKeySource()


@pytest.fixture
def client(upstream: Any, jwks_source: Any, clock: Any, key_source: FakeApiKeySource) -> TestClient:
    # A small general limit shows the telemetry route keeps its own 1 MiB.
    app = create_app(Settings(max_body_bytes=1024))
    authenticator = Authenticator(
        SigningKeys(jwks_source, ttl=300, min_refetch_interval=5, clock=clock),
        TokenPolicy(issuer="sidecart-users", audience="sidecart", leeway_seconds=10),
    )
    api_keys = ApiKeys(key_source, ttl=60, retry_interval=2, clock=clock)
    upstream.answer = UpstreamResponse(202, {"content-type": "application/json"}, b'{"accepted": 1, "rejected": []}')
    app.dependency_overrides[get_upstream] = lambda: upstream
    app.dependency_overrides[get_authenticator] = lambda: authenticator
    app.dependency_overrides[get_api_keys] = lambda: api_keys
    return TestClient(app, raise_server_exceptions=False)


def _post(client: TestClient, headers: dict[str, str], body: bytes | None = None) -> Any:
    content = json.dumps(BATCH).encode() if body is None else body
    return client.post("/api/v1/events", content=content, headers={"content-type": "application/json", **headers})


def _assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["error"]["code"] == code
    assert body["error"]["request_id"] == response.headers["x-request-id"]
    return body


def test_bearer_token_is_accepted_and_the_batch_forwarded(client: TestClient, upstream: Any, signer: Any) -> None:
    response = _post(
        client, {"Authorization": f"Bearer {signer.token()}", "traceparent": "00-" + "a" * 32 + "-" + "b" * 16 + "-01"}
    )
    assert (response.status_code, response.json()) == (202, {"accepted": 1, "rejected": []})
    [(app_id, request)] = upstream.calls
    assert (app_id, request.method, request.path) == ("ingest", "POST", "events")
    assert json.loads(request.body) == BATCH
    assert request.headers["content-type"] == "application/json"
    assert request.headers["x-request-id"] == response.headers["x-request-id"]
    assert "authorization" not in request.headers


def test_api_key_is_accepted(client: TestClient, upstream: Any) -> None:
    response = _post(client, {"X-API-Key": KEY})
    assert response.status_code == 202
    [(app_id, request)] = upstream.calls
    assert app_id == "ingest"
    assert "x-api-key" not in request.headers  # the key stops at the edge


def test_the_ingest_app_id_comes_from_settings(upstream: Any, key_source: FakeApiKeySource, clock: Any) -> None:
    app = create_app(Settings(ingest_app_id="ingest-blue"))
    app.dependency_overrides[get_upstream] = lambda: upstream
    app.dependency_overrides[get_authenticator] = lambda: None  # never asked: the API key decides
    app.dependency_overrides[get_api_keys] = lambda: ApiKeys(key_source, ttl=60, retry_interval=2, clock=clock)
    assert _post(TestClient(app), {"X-API-Key": KEY}).status_code == 200
    assert upstream.calls[0][0] == "ingest-blue"


def test_content_type_is_forwarded_as_sent(client: TestClient, upstream: Any) -> None:
    client.post("/api/v1/events", content=b"x", headers={"X-API-Key": KEY, "content-type": "text/plain"})
    assert upstream.calls[0][1].headers["content-type"] == "text/plain"


@pytest.mark.parametrize("key", ["wrong", KEY + "x", KEY[:-1], "", "k-live"])
def test_a_wrong_api_key_is_401(client: TestClient, upstream: Any, key: str) -> None:
    body = _assert_error(_post(client, {"X-API-Key": key}), 401, "invalid_api_key")
    assert body["error"]["details"][0]["field"] == "X-API-Key"
    assert upstream.calls == []


def test_a_wrong_api_key_is_not_rescued_by_a_token(client: TestClient, upstream: Any, signer: Any) -> None:
    response = _post(client, {"X-API-Key": "wrong", "Authorization": f"Bearer {signer.token()}"})
    _assert_error(response, 401, "invalid_api_key")
    assert upstream.calls == []


def test_no_credentials_is_401(client: TestClient, upstream: Any) -> None:
    response = _assert_error(_post(client, {}), 401, "missing_token")
    assert response["error"]["details"][0]["field"] == "Authorization"
    assert upstream.calls == []


def test_a_bad_token_is_401(client: TestClient, upstream: Any) -> None:
    _assert_error(_post(client, {"Authorization": "Bearer not-a-token"}), 401, "invalid_token")
    assert upstream.calls == []


def test_secret_store_down_is_503(client: TestClient, key_source: FakeApiKeySource, upstream: Any) -> None:
    key_source.available = False
    response = _post(client, {"X-API-Key": KEY})
    _assert_error(response, 503, "auth_unavailable")
    assert response.headers["retry-after"]
    assert upstream.calls == []


def test_the_body_limit_is_1_mib(client: TestClient, upstream: Any) -> None:
    exactly = b" " * (MIB - 2) + b"{}"
    assert _post(client, {"X-API-Key": KEY}, exactly).status_code == 202
    _assert_error(_post(client, {"X-API-Key": KEY}, exactly + b" "), 413, "payload_too_large")
    assert len(upstream.calls) == 1


def test_an_ingest_error_passes_through(client: TestClient, upstream: Any) -> None:
    error = {"error": {"code": "unavailable", "message": "resend", "details": [], "request_id": "r"}}
    upstream.answer = UpstreamResponse(
        503, {"content-type": "application/json", "retry-after": "2"}, json.dumps(error).encode()
    )
    response = _post(client, {"X-API-Key": KEY})
    assert (response.status_code, response.json()["error"]["code"], response.headers["retry-after"]) == (
        503,
        "unavailable",
        "2",
    )


# --- The API key cache ----------------------------------------------------------------------------------------


async def test_keys_are_cached_for_the_ttl(key_source: FakeApiKeySource, clock: Any) -> None:
    keys = ApiKeys(key_source, ttl=60, retry_interval=2, clock=clock)
    await keys.verify(KEY)
    await keys.verify("k-other")
    with pytest.raises(InvalidApiKeyError):
        await keys.verify("nope")
    assert key_source.fetches == 1
    key_source.value = "k-rotated"
    clock.now += 61
    with pytest.raises(InvalidApiKeyError):
        await keys.verify(KEY)  # revoked: gone once the cache expires
    await keys.verify("k-rotated")
    assert key_source.fetches == 2


async def test_a_failing_store_is_asked_again_only_after_the_retry_interval(
    key_source: FakeApiKeySource, clock: Any
) -> None:
    keys = ApiKeys(key_source, ttl=60, retry_interval=2, clock=clock)
    key_source.available = False
    for _ in range(3):
        with pytest.raises(ApiKeysUnavailableError):
            await keys.verify(KEY)
    assert key_source.fetches == 1
    key_source.available = True
    clock.now += 2
    await keys.verify(KEY)


async def test_an_empty_secret_accepts_no_key(clock: Any) -> None:
    keys = ApiKeys(FakeApiKeySource(" , "), ttl=60, retry_interval=2, clock=clock)
    with pytest.raises(InvalidApiKeyError):
        await keys.verify("")


def test_api_key_matches_only_whole_keys() -> None:
    assert api_key_matches("a", {"b", "a"})
    assert not api_key_matches("a", {"ab", "ba"})
    assert not api_key_matches("", set())


# --- The secret source ----------------------------------------------------------------------------------------


def _source(handler: Any) -> DaprSecretApiKeySource:
    client = httpx.AsyncClient(base_url="http://127.0.0.1:3500", transport=httpx.MockTransport(handler))
    return DaprSecretApiKeySource(client, store_name="secretstore", secret_name="ingest-api-keys", timeout=1.0)


async def test_the_secret_is_read_through_the_sidecar() -> None:
    paths: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.path)
        return httpx.Response(200, json={"ingest-api-keys": "a,b"})

    assert await _source(handler).fetch_api_keys() == "a,b"
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
async def test_an_unusable_answer_means_unavailable(response: httpx.Response) -> None:
    with pytest.raises(ApiKeysUnavailableError):
        await _source(lambda request: response).fetch_api_keys()


async def test_an_unreachable_sidecar_means_unavailable() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    with pytest.raises(ApiKeysUnavailableError):
        await _source(handler).fetch_api_keys()
