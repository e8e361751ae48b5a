"""The HTTP contract with the sidecar (subscription, deliveries) and with the gateway (listing), via TestClient."""

import base64
import json
import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient

from contracts.users import UserRegistered
from notifications.api import get_repository, get_sidecar_health
from notifications.main import create_app
from notifications.settings import Settings


class FakeSidecarHealth:
    def __init__(self) -> None:
        self.ready = True

    async def is_ready(self) -> bool:
        return self.ready


@pytest.fixture
def health() -> FakeSidecarHealth:
    return FakeSidecarHealth()


@pytest.fixture
def client(repository: Any, health: FakeSidecarHealth) -> TestClient:
    app = create_app(Settings(pubsub_name="bus", dead_letter_topic="poison"))
    app.dependency_overrides[get_repository] = lambda: repository
    app.dependency_overrides[get_sidecar_health] = lambda: health
    return TestClient(app, raise_server_exceptions=False)


def _cloud_event(user_id: uuid.UUID, event_id: str | None = None, **overrides: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "specversion": "1.0",
        "id": event_id or f"evt-{uuid.uuid4()}",
        "source": "users",
        "type": UserRegistered.TYPE,
        "datacontenttype": "application/json",
        "topic": "users",
        "pubsubname": "bus",
        "data": {
            "user_id": str(user_id),
            "email": "ada@example.com",
            "name": "Ada",
            "registered_at": "2026-11-22T00:00:00Z",
        },
    }
    event.update(overrides)
    return event


def _deliver(client: TestClient, event: dict[str, Any] | bytes) -> Any:
    content = event if isinstance(event, bytes) else json.dumps(event).encode()
    return client.post(
        "/events/user-registered", content=content, headers={"content-type": "application/cloudevents+json"}
    )


def _notices(client: TestClient, user_id: uuid.UUID) -> list[dict[str, Any]]:
    response = client.get(f"/users/{user_id}/notifications")
    assert response.status_code == 200
    items: list[dict[str, Any]] = response.json()["items"]
    return items


# --- subscription -------------------------------------------------------------------------------------------


def test_subscription_routes_by_type_with_a_default_and_a_dead_letter_topic(client: TestClient) -> None:
    response = client.get("/dapr/subscribe")
    assert response.status_code == 200
    assert response.json() == [
        {
            "pubsubname": "bus",
            "topic": "users",
            "routes": {
                "rules": [{"match": 'event.type == "sidecart.user.registered.v1"', "path": "/events/user-registered"}],
                "default": "/events/unhandled",
            },
            "deadLetterTopic": "poison",
        }
    ]


# --- deliveries ---------------------------------------------------------------------------------------------


def test_first_delivery_stores_a_welcome_notice(client: TestClient, user_id: uuid.UUID) -> None:
    response = _deliver(client, _cloud_event(user_id, "evt-1"))
    assert (response.status_code, response.json()) == (200, {"status": "SUCCESS"})
    [notice] = _notices(client, user_id)
    assert (notice["event_id"], notice["kind"]) == ("evt-1", "welcome")
    assert set(notice) == {"id", "event_id", "kind", "title", "message", "created_at"}


def test_redelivery_of_the_same_event_stores_one_notice(client: TestClient, user_id: uuid.UUID) -> None:
    event = _cloud_event(user_id, "evt-1")
    assert _deliver(client, event).json() == {"status": "SUCCESS"}
    assert _deliver(client, event).json() == {"status": "SUCCESS"}
    assert len(_notices(client, user_id)) == 1


def test_two_events_store_two_notices_newest_first(client: TestClient, user_id: uuid.UUID) -> None:
    _deliver(client, _cloud_event(user_id, "evt-1"))
    _deliver(client, _cloud_event(user_id, "evt-2"))
    assert [notice["event_id"] for notice in _notices(client, user_id)] == ["evt-2", "evt-1"]


def test_unknown_data_fields_are_ignored(client: TestClient, user_id: uuid.UUID) -> None:
    event = _cloud_event(user_id)
    event["data"]["plan"] = "gold"
    event["traceparent"] = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    assert _deliver(client, event).json() == {"status": "SUCCESS"}
    assert len(_notices(client, user_id)) == 1


def test_data_sent_as_a_json_string_is_read(client: TestClient, user_id: uuid.UUID) -> None:
    event = _cloud_event(user_id)
    event["data"] = json.dumps(event["data"])
    assert _deliver(client, event).json() == {"status": "SUCCESS"}
    assert len(_notices(client, user_id)) == 1


def test_data_sent_base64_encoded_is_read(client: TestClient, user_id: uuid.UUID) -> None:
    event = _cloud_event(user_id)
    event["data_base64"] = base64.b64encode(json.dumps(event.pop("data")).encode()).decode()
    assert _deliver(client, event).json() == {"status": "SUCCESS"}
    assert len(_notices(client, user_id)) == 1


@pytest.mark.parametrize(
    "malformed",
    [
        lambda event: event["data"].pop("user_id"),
        lambda event: event["data"].update(user_id="not-a-uuid"),
        lambda event: event["data"].update(registered_at="yesterday"),
        lambda event: event.update(data="not json"),
        lambda event: event.update(data=None),
        lambda event: event.update(data=[1, 2]),
        lambda event: event.pop("id"),
        lambda event: event.update(id=""),
    ],
)
def test_malformed_event_is_dropped(client: TestClient, repository: Any, user_id: uuid.UUID, malformed: Any) -> None:
    event = _cloud_event(user_id)
    malformed(event)
    response = _deliver(client, event)
    assert (response.status_code, response.json()) == (200, {"status": "DROP"})
    assert repository.documents == {}


@pytest.mark.parametrize("body", [b"", b"not json", b"[]", b'"text"'])
def test_unparseable_delivery_is_dropped(client: TestClient, body: bytes) -> None:
    assert _deliver(client, body).json() == {"status": "DROP"}


def test_store_outage_asks_for_redelivery(client: TestClient, repository: Any, user_id: uuid.UUID) -> None:
    repository.available = False
    response = _deliver(client, _cloud_event(user_id))
    assert (response.status_code, response.json()) == (500, {"status": "RETRY"})


def test_redelivery_after_an_outage_stores_the_notice(client: TestClient, repository: Any, user_id: uuid.UUID) -> None:
    event = _cloud_event(user_id, "evt-1")
    repository.available = False
    assert _deliver(client, event).status_code == 500
    repository.available = True
    assert _deliver(client, event).json() == {"status": "SUCCESS"}
    assert len(_notices(client, user_id)) == 1


def test_unhandled_event_type_is_acknowledged(client: TestClient, repository: Any, user_id: uuid.UUID) -> None:
    event = _cloud_event(user_id, type="sidecart.user.registered.v2")
    response = client.post("/events/unhandled", json=event)
    assert (response.status_code, response.json()) == (200, {"status": "SUCCESS"})
    assert repository.documents == {}
    assert 'notifications_events_total{outcome="ignored",route="/events/unhandled"} 1.0' in client.get("/metrics").text


# --- listing ------------------------------------------------------------------------------------------------


def test_user_without_notices_gets_an_empty_list(client: TestClient) -> None:
    response = client.get(f"/users/{uuid.uuid4()}/notifications")
    assert (response.status_code, response.json()) == (200, {"items": []})


def test_invalid_user_id_is_422_naming_the_field(client: TestClient) -> None:
    response = client.get("/users/not-a-uuid/notifications")
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert error["details"][0]["field"] == "user_id"


def test_listing_during_a_store_outage_is_503(client: TestClient, repository: Any) -> None:
    repository.available = False
    response = client.get(f"/users/{uuid.uuid4()}/notifications", headers={"X-Request-ID": "req-1"})
    assert response.status_code == 503
    assert response.json()["error"] == {
        "code": "store_unavailable",
        "message": "Notifications cannot be read right now.",
        "details": [],
        "request_id": "req-1",
    }


# --- health and errors --------------------------------------------------------------------------------------


def test_healthz(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}


def test_readyz_follows_the_sidecar(client: TestClient, health: FakeSidecarHealth) -> None:
    assert (client.get("/readyz").status_code, client.get("/readyz").json()) == (200, {"status": "ready"})
    health.ready = False
    response = client.get("/readyz")
    assert (response.status_code, response.json()["error"]["code"]) == (503, "not_ready")


def test_unknown_route_is_404_in_the_error_shape(client: TestClient) -> None:
    response = client.get("/nope", headers={"X-Request-ID": "req-404"})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert response.json()["error"]["request_id"] == "req-404"
    assert response.headers["x-request-id"] == "req-404"


def test_wrong_method_is_405_in_the_error_shape(client: TestClient) -> None:
    response = client.delete(f"/users/{uuid.uuid4()}/notifications")
    assert (response.status_code, response.json()["error"]["code"]) == (405, "method_not_allowed")


def test_unexpected_exception_is_500_internal_error(client: TestClient) -> None:
    class BrokenRepository:
        async def get(self, user_id: uuid.UUID) -> Any:
            raise RuntimeError("bug")

    client.app.dependency_overrides[get_repository] = BrokenRepository  # type: ignore[attr-defined]
    response = client.get(f"/users/{uuid.uuid4()}/notifications")
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "internal_error"
    assert "bug" not in response.text


def test_log_lines_carry_the_request_id(
    client: TestClient, user_id: uuid.UUID, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("INFO"):
        client.post("/events/user-registered", json=_cloud_event(user_id, "evt-1"), headers={"X-Request-ID": "req-ev"})
    events = [record.msg for record in caplog.records if isinstance(record.msg, dict)]
    handled = next(event for event in events if event.get("event") == "event_handled")
    assert (handled["request_id"], handled["event_id"], handled["outcome"]) == ("req-ev", "evt-1", "recorded")


def test_a_dropped_event_is_logged_without_its_data(
    client: TestClient, user_id: uuid.UUID, caplog: pytest.LogCaptureFixture
) -> None:
    event = _cloud_event(user_id, "evt-bad")
    event["data"]["user_id"] = "not-a-uuid"
    with caplog.at_level("INFO"):
        assert _deliver(client, event).json() == {"status": "DROP"}
    events = [record.msg for record in caplog.records if isinstance(record.msg, dict)]
    dropped = next(event for event in events if event.get("event") == "event_dropped_malformed")
    assert dropped["event_id"] == "evt-bad"
    assert dropped["problems"] == ["user_id: uuid_parsing"]
    assert "ada@example.com" not in json.dumps(dropped)
