"""The inbox in the state store: its key and document form, over the kit's DaprStateStore and a fake sidecar."""

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import httpx
import pytest

from contracts.users import UserRegistered
from notifications.adapters import StoredInboxRepository
from notifications.domain import Inbox, welcome_notice
from notifications.settings import Settings
from sidecart_kit.retry import RetryPolicy
from sidecart_kit.state import DaprStateStore, StoreUnavailableError
from sidecart_kit.testing import fake_sidecar_client

from .conftest import InboxStore

Handler = Callable[[httpx.Request], httpx.Response]
USER_ID = uuid.UUID("6f1c2a4e-2b0b-4bb8-9a57-6f0a1d2f9c11")
NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def _repository(handler: Handler, seen: list[httpx.Request]) -> StoredInboxRepository:
    def recording(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)

    return StoredInboxRepository(DaprStateStore(fake_sidecar_client(recording), "notifications-store"))


def _inbox() -> Inbox:
    user = UserRegistered(user_id=USER_ID, email="a@example.com", name="A", registered_at=NOW)
    return Inbox().deliver(welcome_notice("evt-1", user, NOW), max_notices=10, max_remembered_events=10)


async def test_absent_inbox_is_empty_without_etag() -> None:
    seen: list[httpx.Request] = []
    current = await _repository(lambda request: httpx.Response(204), seen).get(USER_ID)
    assert (current.inbox, current.etag) == (Inbox(), None)
    [request] = seen
    assert request.url.path == f"/v1.0/state/notifications-store/notices:{USER_ID}"


async def test_stored_inbox_is_read_with_its_etag() -> None:
    inbox = _inbox()
    answer = httpx.Response(200, json=inbox.to_document(), headers={"etag": "7"})
    current = await _repository(lambda request: answer, []).get(USER_ID)
    assert (current.inbox, current.etag) == (inbox, "7")


async def test_an_inbox_is_updated_as_one_document_over_its_etag() -> None:
    seen: list[httpx.Request] = []

    def sidecar(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return httpx.Response(200, json=Inbox().to_document(), headers={"etag": "7"})
        return httpx.Response(204)

    result = await _repository(sidecar, seen).update(USER_ID, lambda inbox: (_inbox(), "written"), retry=RetryPolicy())
    assert result == "written"
    [item] = json.loads(seen[1].content)
    assert (item["key"], item["etag"]) == (f"notices:{USER_ID}", "7")
    assert Inbox.from_document(item["value"]) == _inbox()


async def test_an_update_that_decides_nothing_writes_nothing() -> None:
    store = InboxStore()
    result = await StoredInboxRepository(store).update(USER_ID, lambda inbox: (None, inbox), retry=RetryPolicy())
    assert (result, store.writes) == (Inbox(), 0)


@pytest.mark.parametrize("document", [{"notices": "corrupt"}, [1, 2], {"notices": [{"id": "no other field"}]}])
async def test_an_unreadable_inbox_is_store_unavailable(document: object) -> None:
    store = InboxStore()
    store.documents[f"notices:{USER_ID}"] = (document, 1)
    with pytest.raises(StoreUnavailableError, match="unreadable"):
        await StoredInboxRepository(store).get(USER_ID)
    with pytest.raises(StoreUnavailableError, match="unreadable"):
        await StoredInboxRepository(store).update(USER_ID, lambda inbox: (inbox, None), retry=RetryPolicy())
    assert store.writes == 0


def test_settings_read_the_unprefixed_ports_the_dapr_cli_sets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_PORT", "9102")
    monkeypatch.setenv("DAPR_HTTP_PORT", "3992")
    monkeypatch.setenv("DAPR_GRPC_PORT", "50992")
    monkeypatch.setenv("NOTIFICATIONS_STATE_STORE", "other-store")
    settings = Settings()
    assert settings.state_store == "other-store"


def test_settings_defaults() -> None:
    settings = Settings()
    assert (settings.pubsub_name, settings.state_store) == ("pubsub", "notifications-store")
    assert settings.sidecar_timeout_seconds == 20.0
