"""The HTTP contract with the sidecar (subscription, deliveries) and with the gateway (listing), via TestClient."""

import base64
import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from contracts.events import Event
from contracts.orders import OrderCancelled, OrderCompleted
from contracts.users import UserRegistered
from notifications.api import ORDER_CANCELLED_ROUTE, ORDER_COMPLETED_ROUTE, USER_REGISTERED_ROUTE
from notifications.main import create_app
from notifications.settings import Settings
from sidecart_kit.events import BulkSettings, subscriptions_by_topic
from sidecart_kit.service import Fakes
from sidecart_kit.testing import FakeSidecarHealth, assert_probes_follow_the_sidecar

from .conftest import InboxStore


@pytest.fixture
def client(store: InboxStore, sidecar_health: FakeSidecarHealth) -> Iterator[TestClient]:
    app = create_app(
        Settings(pubsub_name="bus", dead_letter_topic="poison"), Fakes(store=store, sidecar_health=sidecar_health)
    )
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


ORDER_ID = "1234abcd-2b0b-4bb8-9a57-6f0a1d2f9c11"


def _user_registered(user_id: uuid.UUID) -> dict[str, Any]:
    return {"user_id": str(user_id), "email": "ada@example.com", "name": "Ada", "registered_at": "2026-11-22T00:00:00Z"}


def _order_completed(user_id: uuid.UUID) -> dict[str, Any]:
    return {
        "order_id": ORDER_ID,
        "user_id": str(user_id),
        "lines": [{"sku": "sku-1", "quantity": 2, "unit_price_cents": 2125}],
        "total_cents": 4250,
        "currency": "EUR",
        "completed_at": "2026-11-22T00:00:00Z",
    }


def _order_cancelled(user_id: uuid.UUID) -> dict[str, Any]:
    return {
        "order_id": ORDER_ID,
        "user_id": str(user_id),
        "reason": "insufficient_funds",
        "detail": "payments answered 409",
        "cancelled_at": "2026-11-22T00:00:00Z",
    }


# Each event type: its contract, the data of a valid event, and the route its deliveries arrive at.
EVENTS: dict[str, tuple[type[Event], Callable[[uuid.UUID], dict[str, Any]], str]] = {
    "user_registered": (UserRegistered, _user_registered, USER_REGISTERED_ROUTE),
    "order_completed": (OrderCompleted, _order_completed, ORDER_COMPLETED_ROUTE),
    "order_cancelled": (OrderCancelled, _order_cancelled, ORDER_CANCELLED_ROUTE),
}


def _cloud_event(
    user_id: uuid.UUID, event_id: str | None = None, kind: str = "user_registered", **overrides: Any
) -> dict[str, Any]:
    contract, data, _ = EVENTS[kind]
    event: dict[str, Any] = {
        "specversion": "1.0",
        "id": event_id or f"evt-{uuid.uuid4()}",
        "source": contract.TOPIC,
        "type": contract.TYPE,
        "datacontenttype": "application/json",
        "topic": contract.TOPIC,
        "pubsubname": "bus",
        "data": data(user_id),
    }
    event.update(overrides)
    return event


def _deliver(client: TestClient, event: dict[str, Any] | bytes, route: str = USER_REGISTERED_ROUTE) -> Any:
    content = event if isinstance(event, bytes) else json.dumps(event).encode()
    return client.post(route, content=content, headers={"content-type": "application/cloudevents+json"})


def _deliver_kind(client: TestClient, event: dict[str, Any], kind: str) -> Any:
    return _deliver(client, event, EVENTS[kind][2])


def _notices(client: TestClient, user_id: uuid.UUID) -> list[dict[str, Any]]:
    response = client.get(f"/users/{user_id}/notifications")
    assert response.status_code == 200
    items: list[dict[str, Any]] = response.json()["items"]
    return items


# --- subscription -------------------------------------------------------------------------------------------


def test_subscription_routes_by_type_with_a_default_and_a_dead_letter_topic(client: TestClient) -> None:
    # The Dapr format of a subscription is the kit's (and its tests'); what notifications subscribes to is its own.
    expected = subscriptions_by_topic(
        "bus",
        [
            (UserRegistered, "/events/user-registered"),
            (OrderCompleted, "/events/order-completed"),
            (OrderCancelled, "/events/order-cancelled"),
        ],
        default_route="/events/unhandled",
        dead_letter_topic="poison",
        bulk=BulkSettings(max_messages=100, max_await_ms=50),  # delivered in batches
    )
    response = client.get("/dapr/subscribe")
    assert (response.status_code, response.json()) == (200, [subscription.to_dapr() for subscription in expected])


def test_every_route_the_subscription_names_exists(client: TestClient) -> None:
    topics = client.get("/dapr/subscribe").json()
    paths = {rule["path"] for topic in topics for rule in topic["routes"]["rules"]}
    paths |= {topic["routes"]["default"] for topic in topics}
    assert len(paths) == 4
    for path in paths:
        assert _deliver(client, b"{}", path).status_code == 200, path  # a route that did not exist would be 404


# --- deliveries ---------------------------------------------------------------------------------------------


def test_a_bulk_delivery_records_each_notice_once_and_answers_each_entry(client: TestClient) -> None:
    first, second = uuid.uuid4(), uuid.uuid4()
    welcome = _cloud_event(first, "evt-1")
    entries = [welcome, _cloud_event(second, "evt-2"), welcome, {"id": "evt-3", "data": "not an event"}]
    bulk = {"id": "b1", "topic": "users", "entries": [{"entryId": str(n), "event": e} for n, e in enumerate(entries)]}
    response = _deliver(client, json.dumps(bulk).encode())
    assert [status["status"] for status in response.json()["statuses"]] == ["SUCCESS", "SUCCESS", "SUCCESS", "DROP"]
    assert [len(_notices(client, user_id)) for user_id in (first, second)] == [1, 1]


def test_first_delivery_stores_a_welcome_notice(client: TestClient, user_id: uuid.UUID) -> None:
    response = _deliver(client, _cloud_event(user_id, "evt-1"))
    assert (response.status_code, response.json()) == (200, {"status": "SUCCESS"})
    [notice] = _notices(client, user_id)
    # Noted under the fact's id (a second publication of this sign-up carries another CloudEvent id).
    assert (notice["event_id"], notice["kind"], notice["order_id"]) == (
        f"{UserRegistered.TYPE}:{user_id}",
        "welcome",
        None,
    )
    assert set(notice) == {"id", "event_id", "kind", "title", "message", "created_at", "order_id"}


@pytest.mark.parametrize(
    ("kind", "title", "message"),
    [
        # A confirmation naming the total.
        ("order_completed", "Your order is confirmed", "Order 1234abcd\u2026 is confirmed: 42.50 EUR."),
        # A cancellation saying why in words (the event's detail, "payments answered 409", is for operators).
        (
            "order_cancelled",
            "Your order was cancelled",
            "Order 1234abcd\u2026 was cancelled: your wallet balance is too low.",
        ),
    ],
)
def test_an_order_outcome_stores_a_notice_saying_what_happened(
    client: TestClient, user_id: uuid.UUID, kind: str, title: str, message: str
) -> None:
    response = _deliver_kind(client, _cloud_event(user_id, "evt-o", kind), kind)
    assert (response.status_code, response.json()) == (200, {"status": "SUCCESS"})
    [notice] = _notices(client, user_id)
    assert (notice["event_id"], notice["kind"], notice["order_id"]) == (
        f"{EVENTS[kind][0].TYPE}:{ORDER_ID}",
        kind,
        ORDER_ID,
    )
    assert (notice["title"], notice["message"]) == (title, message)


@pytest.mark.parametrize("kind", list(EVENTS))
def test_redelivery_of_the_same_event_stores_one_notice(client: TestClient, user_id: uuid.UUID, kind: str) -> None:
    event = _cloud_event(user_id, "evt-1", kind)
    assert _deliver_kind(client, event, kind).json() == {"status": "SUCCESS"}
    assert _deliver_kind(client, event, kind).json() == {"status": "SUCCESS"}
    assert [notice["kind"] for notice in _notices(client, user_id)] == [kind.replace("user_registered", "welcome")]


def test_a_users_welcome_and_orders_share_one_inbox_newest_first(client: TestClient, user_id: uuid.UUID) -> None:
    for kind in EVENTS:
        _deliver_kind(client, _cloud_event(user_id, f"evt-{kind}", kind), kind)
    kinds = [notice["kind"] for notice in _notices(client, user_id)]
    assert kinds == ["order_cancelled", "order_completed", "welcome"]


@pytest.mark.parametrize("kind", list(EVENTS))
def test_a_fact_published_twice_under_two_event_ids_stores_one_notice(
    client: TestClient, user_id: uuid.UUID, kind: str
) -> None:
    for event_id in ("evt-1", "evt-2"):  # the same sign-up or order outcome, published again
        assert _deliver_kind(client, _cloud_event(user_id, event_id, kind), kind).json() == {"status": "SUCCESS"}
    assert len(_notices(client, user_id)) == 1


@pytest.mark.parametrize("kind", list(EVENTS))
def test_unknown_data_fields_are_ignored(client: TestClient, user_id: uuid.UUID, kind: str) -> None:
    event = _cloud_event(user_id, kind=kind)
    event["data"]["plan"] = "gold"
    event["traceparent"] = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    assert _deliver_kind(client, event, kind).json() == {"status": "SUCCESS"}
    assert len(_notices(client, user_id)) == 1


@pytest.mark.parametrize("kind", list(EVENTS))
def test_data_sent_as_a_json_string_is_read(client: TestClient, user_id: uuid.UUID, kind: str) -> None:
    event = _cloud_event(user_id, kind=kind)
    event["data"] = json.dumps(event["data"])
    assert _deliver_kind(client, event, kind).json() == {"status": "SUCCESS"}
    assert len(_notices(client, user_id)) == 1


@pytest.mark.parametrize("kind", list(EVENTS))
def test_data_sent_base64_encoded_is_read(client: TestClient, user_id: uuid.UUID, kind: str) -> None:
    event = _cloud_event(user_id, kind=kind)
    event["data_base64"] = base64.b64encode(json.dumps(event.pop("data")).encode()).decode()
    assert _deliver_kind(client, event, kind).json() == {"status": "SUCCESS"}
    assert len(_notices(client, user_id)) == 1


ENVELOPE_FAULTS = [
    lambda event: event["data"].pop("user_id"),
    lambda event: event["data"].update(user_id="not-a-uuid"),
    lambda event: event.update(data="not json"),
    lambda event: event.update(data=None),
    lambda event: event.update(data=[1, 2]),
    lambda event: event.update(data_base64="%%%", data=None),
    lambda event: event.pop("id"),
    lambda event: event.update(id=""),
]
DATA_FAULTS = {
    "user_registered": [lambda data: data.update(registered_at="yesterday")],
    "order_completed": [
        lambda data: data.pop("order_id"),
        lambda data: data.update(order_id="42"),
        lambda data: data.update(total_cents=-1),
        lambda data: data.update(total_cents="lots"),
        lambda data: data.update(currency="EURO"),
        lambda data: data.update(lines=[{"sku": "sku-1", "quantity": 0, "unit_price_cents": 1}]),
        lambda data: data.pop("completed_at"),
    ],
    "order_cancelled": [
        lambda data: data.pop("order_id"),
        lambda data: data.pop("reason"),
        lambda data: data.update(cancelled_at="soon"),
    ],
}
MALFORMED = [(kind, fault) for kind in EVENTS for fault in ENVELOPE_FAULTS] + [
    (kind, lambda event, fault=fault: fault(event["data"])) for kind, faults in DATA_FAULTS.items() for fault in faults
]


@pytest.mark.parametrize(("kind", "malformed"), MALFORMED)
def test_malformed_event_is_dropped(
    client: TestClient, store: InboxStore, user_id: uuid.UUID, kind: str, malformed: Any
) -> None:
    event = _cloud_event(user_id, kind=kind)
    malformed(event)
    response = _deliver_kind(client, event, kind)
    assert (response.status_code, response.json()) == (200, {"status": "DROP"})
    assert store.documents == {}


@pytest.mark.parametrize(
    ("kind", "route"), [("order_cancelled", ORDER_COMPLETED_ROUTE), ("user_registered", ORDER_CANCELLED_ROUTE)]
)
def test_data_of_another_event_type_is_dropped(
    client: TestClient, store: InboxStore, user_id: uuid.UUID, kind: str, route: str
) -> None:
    assert _deliver(client, _cloud_event(user_id, kind=kind), route).json() == {"status": "DROP"}
    assert store.documents == {}


@pytest.mark.parametrize("route", [USER_REGISTERED_ROUTE, ORDER_COMPLETED_ROUTE, ORDER_CANCELLED_ROUTE])
@pytest.mark.parametrize("body", [b"", b"not json", b"[]", b'"text"'])
def test_unparseable_delivery_is_dropped(client: TestClient, body: bytes, route: str) -> None:
    assert _deliver(client, body, route).json() == {"status": "DROP"}


@pytest.mark.parametrize("kind", list(EVENTS))
def test_store_outage_asks_for_redelivery(client: TestClient, store: InboxStore, user_id: uuid.UUID, kind: str) -> None:
    store.available = False
    response = _deliver_kind(client, _cloud_event(user_id, kind=kind), kind)
    assert (response.status_code, response.json()) == (500, {"status": "RETRY"})


@pytest.mark.parametrize("kind", list(EVENTS))
def test_redelivery_after_an_outage_stores_the_notice(
    client: TestClient, store: InboxStore, user_id: uuid.UUID, kind: str
) -> None:
    event = _cloud_event(user_id, "evt-1", kind)
    store.available = False
    assert _deliver_kind(client, event, kind).status_code == 500
    store.available = True
    assert _deliver_kind(client, event, kind).json() == {"status": "SUCCESS"}
    assert len(_notices(client, user_id)) == 1


@pytest.mark.parametrize(
    ("kind", "future_type"),
    [("user_registered", "sidecart.user.registered.v2"), ("order_completed", "sidecart.order.refunded.v1")],
)
def test_unhandled_event_type_is_acknowledged(
    client: TestClient, store: InboxStore, user_id: uuid.UUID, kind: str, future_type: str
) -> None:
    event = _cloud_event(user_id, kind=kind, type=future_type)
    response = client.post("/events/unhandled", json=event)
    assert (response.status_code, response.json()) == (200, {"status": "SUCCESS"})
    assert store.documents == {}
    assert 'notifications_events_total{outcome="ignored",route="/events/unhandled"} 1.0' in client.get("/metrics").text


def test_deliveries_are_counted_by_route_and_outcome(client: TestClient, user_id: uuid.UUID) -> None:
    event = _cloud_event(user_id, "evt-1", "order_completed")
    _deliver_kind(client, event, "order_completed")
    _deliver_kind(client, event, "order_completed")
    _deliver(client, b"", ORDER_CANCELLED_ROUTE)
    text = client.get("/metrics").text
    assert 'notifications_events_total{outcome="recorded",route="/events/order-completed"} 1.0' in text
    assert 'notifications_events_total{outcome="already_handled",route="/events/order-completed"} 1.0' in text
    assert 'notifications_events_total{outcome="dropped",route="/events/order-cancelled"} 1.0' in text


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


def test_listing_during_a_store_outage_is_503(client: TestClient, store: InboxStore) -> None:
    store.available = False
    response = client.get(f"/users/{uuid.uuid4()}/notifications", headers={"X-Request-ID": "req-1"})
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert response.json()["error"] == {
        "code": "unavailable",
        "message": "The notifications service cannot be read or changed right now; retry.",
        "details": [],
        "request_id": "req-1",
    }


# --- health and errors --------------------------------------------------------------------------------------


def test_probes_follow_the_sidecar(client: TestClient, sidecar_health: FakeSidecarHealth) -> None:
    assert_probes_follow_the_sidecar(client, sidecar_health)


def test_wrong_method_is_405_in_the_error_shape(client: TestClient) -> None:
    response = client.delete(f"/users/{uuid.uuid4()}/notifications")
    assert (response.status_code, response.json()["error"]["code"]) == (405, "method_not_allowed")


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
