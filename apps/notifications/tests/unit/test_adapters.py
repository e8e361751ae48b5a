"""The state-store adapter against httpx.MockTransport: Dapr's state API as observed on a real sidecar."""

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import httpx
import pytest

from contracts.users import UserRegistered
from notifications.adapters import DaprInboxRepository, DaprSidecarHealth, sidecar_client
from notifications.domain import Inbox, welcome_notice
from notifications.handlers import ConcurrencyConflictError, StoreUnavailableError
from notifications.settings import Settings

Handler = Callable[[httpx.Request], httpx.Response]
USER_ID = uuid.UUID("6f1c2a4e-2b0b-4bb8-9a57-6f0a1d2f9c11")
KEY = f"notices:{USER_ID}"
NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def _repository(handler: Handler, seen: list[httpx.Request] | None = None) -> DaprInboxRepository:
    def recording(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        return handler(request)

    client = httpx.AsyncClient(base_url="http://127.0.0.1:3502", transport=httpx.MockTransport(recording))
    return DaprInboxRepository(client, "notifications-store")


def _inbox() -> Inbox:
    user = UserRegistered(user_id=USER_ID, email="a@example.com", name="A", registered_at=NOW)
    return Inbox().deliver(welcome_notice("evt-1", user, NOW), max_notices=10, max_remembered_events=10)


def _raise(exc: Exception) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    return handler


async def test_absent_inbox_is_empty_without_etag() -> None:
    seen: list[httpx.Request] = []
    current = await _repository(lambda request: httpx.Response(204), seen).get(USER_ID)
    assert (current.inbox, current.etag) == (Inbox(), None)
    [request] = seen
    assert request.url.path == f"/v1.0/state/notifications-store/{KEY}"
    assert request.url.params["consistency"] == "strong"


async def test_stored_inbox_is_read_with_its_etag() -> None:
    inbox = _inbox()
    answer = httpx.Response(200, json=inbox.to_document(), headers={"etag": "7"})
    current = await _repository(lambda request: answer).get(USER_ID)
    assert (current.inbox, current.etag) == (inbox, "7")


@pytest.mark.parametrize(
    "handler",
    [
        lambda request: httpx.Response(500, json={"errorCode": "ERR_STATE_GET", "message": "redis down"}),
        lambda request: httpx.Response(400, json={"errorCode": "ERR_STATE_STORE_NOT_FOUND", "message": "no"}),
        lambda request: httpx.Response(200, content=b"{not json"),
        lambda request: httpx.Response(200, json={"notices": "corrupt"}),
        _raise(httpx.ConnectError("refused")),
        _raise(httpx.ReadTimeout("slow")),
    ],
)
async def test_read_failures_are_store_unavailable(handler: Handler) -> None:
    with pytest.raises(StoreUnavailableError):
        await _repository(handler).get(USER_ID)


async def test_save_sends_the_etag_with_first_write_concurrency() -> None:
    seen: list[httpx.Request] = []
    await _repository(lambda request: httpx.Response(204), seen).save(USER_ID, _inbox(), "7")
    [request] = seen
    assert (request.method, request.url.path) == ("POST", "/v1.0/state/notifications-store")
    [item] = json.loads(request.content)
    assert item["key"] == KEY
    assert item["etag"] == "7"
    assert item["options"] == {"concurrency": "first-write", "consistency": "strong"}
    assert Inbox.from_document(item["value"]) == _inbox()


async def test_first_save_sends_no_etag_so_it_only_inserts() -> None:
    seen: list[httpx.Request] = []
    await _repository(lambda request: httpx.Response(204), seen).save(USER_ID, _inbox(), None)
    [item] = json.loads(seen[0].content)
    assert "etag" not in item
    assert item["options"]["concurrency"] == "first-write"


async def test_etag_mismatch_is_a_conflict() -> None:
    # What daprd 1.18 answers for a stale ETag on Redis.
    body = {"errorCode": "ERR_STATE_SAVE", "message": "possible etag mismatch. error from state store: ..."}
    with pytest.raises(ConcurrencyConflictError):
        await _repository(lambda request: httpx.Response(409, json=body)).save(USER_ID, _inbox(), "7")


@pytest.mark.parametrize(
    "handler",
    [
        lambda request: httpx.Response(500, json={"errorCode": "ERR_STATE_SAVE", "message": "failed to set key"}),
        lambda request: httpx.Response(400, json={"errorCode": "ERR_STATE_SAVE", "message": "invalid etag value"}),
        _raise(httpx.ConnectError("refused")),
    ],
)
async def test_other_save_failures_are_store_unavailable(handler: Handler) -> None:
    with pytest.raises(StoreUnavailableError):
        await _repository(handler).save(USER_ID, _inbox(), "7")


@pytest.mark.parametrize(
    ("handler", "ready"),
    [
        (lambda request: httpx.Response(204), True),
        (lambda request: httpx.Response(500), False),
        (_raise(httpx.ConnectError("refused")), False),
    ],
)
async def test_sidecar_health_reads_the_outbound_probe(handler: Handler, ready: bool) -> None:
    paths: list[str] = []

    def recording(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.path)
        return handler(request)

    client = httpx.AsyncClient(base_url="http://127.0.0.1:3502", transport=httpx.MockTransport(recording))
    assert await DaprSidecarHealth(client, timeout=1).is_ready() is ready
    assert paths == ["/v1.0/healthz/outbound"]


def test_settings_read_the_unprefixed_ports_the_dapr_cli_sets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_PORT", "9102")
    monkeypatch.setenv("DAPR_HTTP_PORT", "3992")
    monkeypatch.setenv("DAPR_GRPC_PORT", "50992")
    monkeypatch.setenv("NOTIFICATIONS_STATE_STORE_NAME", "other-store")
    settings = Settings()
    assert (settings.app_port, settings.dapr_http_port, settings.dapr_grpc_port) == (9102, 3992, 50992)
    assert settings.state_store_name == "other-store"


def test_settings_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("APP_PORT", "DAPR_HTTP_PORT", "DAPR_GRPC_PORT"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings()
    assert (settings.app_port, settings.dapr_http_port, settings.dapr_grpc_port) == (8102, 3502, 50021)
    assert (settings.pubsub_name, settings.state_store_name) == ("pubsub", "notifications-store")


async def test_sidecar_client_targets_the_configured_port() -> None:
    async with sidecar_client(Settings(dapr_http_port=3992)) as client:
        assert str(client.base_url) == "http://127.0.0.1:3992"
        assert "dapr-api-token" not in client.headers
