"""The HTTP contract with the sidecar (subscription, deliveries) and with the order saga, via TestClient."""

import base64
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from contracts.users import UserRegistered
from payments.main import create_app
from payments.settings import Settings
from sidecart_kit.events import BulkSettings, subscriptions_by_topic
from sidecart_kit.service import Fakes
from sidecart_kit.testing import FakeSidecarHealth, FakeStateStore, assert_probes_follow_the_sidecar


@pytest.fixture
def client(store: FakeStateStore, sidecar_health: FakeSidecarHealth) -> Iterator[TestClient]:
    settings = Settings(pubsub_name="bus", dead_letter_topic="poison", starting_credit_cents=10_000)
    app = create_app(settings, Fakes(store=store, sidecar_health=sidecar_health))
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


@pytest.fixture
def user_id() -> str:
    return str(uuid.uuid4())


def _cloud_event(user_id: str, event_id: str | None = None, **overrides: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "specversion": "1.0",
        "id": event_id or f"evt-{uuid.uuid4()}",
        "source": "users",
        "type": UserRegistered.TYPE,
        "datacontenttype": "application/json",
        "topic": "users",
        "pubsubname": "bus",
        "data": {
            "user_id": user_id,
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


def _bulk(*events: dict[str, Any]) -> bytes:
    entries = [{"entryId": str(n), "event": event} for n, event in enumerate(events)]
    return json.dumps({"id": "b1", "topic": "users", "entries": entries}).encode()


def _charge(client: TestClient, user_id: str, order_id: str, amount_cents: int = 2500, **extra: Any) -> Any:
    body = {"order_id": order_id, "user_id": user_id, "amount_cents": amount_cents, "currency": "EUR", **extra}
    return client.post("/charges", json=body)


def _error(response: Any) -> dict[str, Any]:
    error: dict[str, Any] = response.json()["error"]
    return error


# --- subscription and deliveries -------------------------------------------------------------------------------


def test_subscription_routes_by_type_with_a_default_and_a_dead_letter_topic(client: TestClient) -> None:
    # The Dapr format of a subscription is the kit's (and its tests'); what payments subscribes to is its own.
    expected = subscriptions_by_topic(
        "bus",
        [(UserRegistered, "/events/user-registered")],
        default_route="/events/unhandled",
        dead_letter_topic="poison",
        bulk=BulkSettings(max_messages=100, max_await_ms=50),  # delivered in batches
    )
    assert client.get("/dapr/subscribe").json() == [subscription.to_dapr() for subscription in expected]


def test_a_bulk_delivery_grants_each_new_user_once_and_answers_each_entry(client: TestClient) -> None:
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    event = _cloud_event(first, "evt-1")
    response = _deliver(client, _bulk(event, _cloud_event(second), event, {"id": "evt-x", "data": {}}))
    assert response.json() == {
        "statuses": [
            {"entryId": "0", "status": "SUCCESS"},
            {"entryId": "1", "status": "SUCCESS"},
            {"entryId": "2", "status": "SUCCESS"},  # the same event again: done already
            {"entryId": "3", "status": "DROP"},
        ]
    }
    for user_id in (first, second):
        assert client.get(f"/wallets/{user_id}").json()["credits_granted_cents"] == 10_000


def test_a_registered_user_gets_the_starting_credit_once(client: TestClient, user_id: str) -> None:
    event = _cloud_event(user_id, "evt-1")
    for delivery in (event, event, _cloud_event(user_id, "evt-2")):
        response = _deliver(client, delivery)
        assert (response.status_code, response.json()) == (200, {"status": "SUCCESS"})
    wallet = client.get(f"/wallets/{user_id}").json()
    assert {
        key: wallet[key] for key in ("user_id", "balance_cents", "currency", "credits_granted_cents", "captured_cents")
    } == {
        "user_id": user_id,
        "balance_cents": 10_000,
        "currency": "EUR",
        "credits_granted_cents": 10_000,
        "captured_cents": 0,
    }
    assert [(entry["kind"], entry["order_id"], entry["amount_cents"]) for entry in wallet["entries"]] == [
        ("credit", None, 10_000)
    ]


def test_data_sent_as_base64_is_understood(client: TestClient, user_id: str) -> None:
    event = _cloud_event(user_id)
    data = event.pop("data")
    event["data_base64"] = base64.b64encode(json.dumps(data).encode()).decode()
    assert _deliver(client, event).json() == {"status": "SUCCESS"}
    assert client.get(f"/wallets/{user_id}").status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        json.dumps({"type": UserRegistered.TYPE}).encode(),  # no id
        json.dumps(_cloud_event("not-a-uuid")).encode(),
        json.dumps(_cloud_event(str(uuid.uuid4()), data="{broken")).encode(),
    ],
)
def test_a_malformed_event_is_dropped(client: TestClient, body: bytes) -> None:
    assert _deliver(client, body).json() == {"status": "DROP"}


def test_a_store_outage_asks_for_redelivery(client: TestClient, store: Any, user_id: str) -> None:
    store.available = False
    response = _deliver(client, _cloud_event(user_id))
    assert (response.status_code, response.json()) == (500, {"status": "RETRY"})


def test_unhandled_event_type_is_acknowledged(client: TestClient, store: Any, user_id: str) -> None:
    response = client.post("/events/unhandled", json=_cloud_event(user_id, type="sidecart.user.registered.v2"))
    assert (response.status_code, response.json()) == (200, {"status": "SUCCESS"})
    assert store.documents == {}


# --- wallets, charges and refunds ------------------------------------------------------------------------------


def test_no_wallet_before_registration_is_404(client: TestClient, user_id: str) -> None:
    response = client.get(f"/wallets/{user_id}")
    assert (response.status_code, _error(response)["code"]) == (404, "wallet_not_found")


def test_a_charge_is_captured_once(client: TestClient, user_id: str) -> None:
    _deliver(client, _cloud_event(user_id))
    order_id = str(uuid.uuid4())
    response = _charge(client, user_id, order_id)
    body = {"order_id": order_id, "status": "captured", "amount_cents": 2500, "balance_cents": 7500}
    assert (response.status_code, response.json()) == (200, body)
    assert _charge(client, user_id, order_id).json() == body
    wallet = client.get(f"/wallets/{user_id}").json()
    assert (wallet["balance_cents"], wallet["captured_cents"]) == (7500, 2500)
    assert [(entry["kind"], entry["order_id"]) for entry in wallet["entries"]] == [
        ("charge", order_id),
        ("credit", None),
    ]


def test_insufficient_funds_is_402_and_stays_so(client: TestClient, user_id: str) -> None:
    _deliver(client, _cloud_event(user_id))
    order_id = str(uuid.uuid4())
    response = _charge(client, user_id, order_id, 10_001)
    assert (response.status_code, _error(response)["code"]) == (402, "insufficient_funds")
    assert _error(response)["details"] == [{"field": "amount_cents", "reason": "balance 10000 < amount 10001"}]
    _deliver(client, _cloud_event(user_id))  # a redelivered sign-up changes nothing either
    again = _charge(client, user_id, order_id, 10_001)
    assert (again.status_code, _error(again)["details"]) == (402, _error(response)["details"])


def test_a_charge_without_a_wallet_is_402(client: TestClient, user_id: str) -> None:
    response = _charge(client, user_id, str(uuid.uuid4()))
    assert (response.status_code, _error(response)["code"]) == (402, "insufficient_funds")


def test_refund_gives_back_once_then_refuses_the_charge(client: TestClient, user_id: str) -> None:
    _deliver(client, _cloud_event(user_id))
    order_id = str(uuid.uuid4())
    _charge(client, user_id, order_id)
    for _ in range(2):
        response = client.post(f"/charges/{order_id}/refund")
        assert (response.status_code, response.json()) == (200, {"order_id": order_id, "status": "refunded"})
    assert client.get(f"/wallets/{user_id}").json()["balance_cents"] == 10_000
    late = _charge(client, user_id, order_id)
    assert (late.status_code, _error(late)["code"]) == (409, "charge_voided")


def test_a_refund_of_an_unknown_order_voids_it(client: TestClient, user_id: str) -> None:
    _deliver(client, _cloud_event(user_id))
    order_id = str(uuid.uuid4())
    response = client.post(f"/charges/{order_id}/refund")
    assert (response.status_code, response.json()) == (200, {"order_id": order_id, "status": "voided"})
    late = _charge(client, user_id, order_id)
    assert (late.status_code, _error(late)["code"]) == (409, "charge_voided")
    assert client.get(f"/wallets/{user_id}").json()["balance_cents"] == 10_000


def test_the_same_order_for_another_amount_is_409(client: TestClient, user_id: str) -> None:
    _deliver(client, _cloud_event(user_id))
    order_id = str(uuid.uuid4())
    _charge(client, user_id, order_id)
    response = _charge(client, user_id, order_id, 1)
    assert (response.status_code, _error(response)["code"]) == (409, "charge_mismatch")


def test_another_currency_is_422(client: TestClient, user_id: str) -> None:
    response = _charge(client, user_id, str(uuid.uuid4()), currency="USD")
    assert (response.status_code, _error(response)["code"]) == (422, "currency_mismatch")


@pytest.mark.parametrize(
    "body",
    [
        {"order_id": "nope", "user_id": str(uuid.uuid4()), "amount_cents": 1, "currency": "EUR"},
        {"order_id": str(uuid.uuid4()), "user_id": "nope", "amount_cents": 1, "currency": "EUR"},
        {"order_id": str(uuid.uuid4()), "user_id": str(uuid.uuid4()), "amount_cents": -1, "currency": "EUR"},
        {"order_id": str(uuid.uuid4()), "user_id": str(uuid.uuid4()), "amount_cents": 1, "currency": "euro"},
        {"order_id": str(uuid.uuid4()), "user_id": str(uuid.uuid4())},
    ],
)
def test_invalid_charges_are_422(client: TestClient, body: Any) -> None:
    response = client.post("/charges", json=body)
    assert (response.status_code, _error(response)["code"]) == (422, "validation_error")


def test_a_store_outage_is_503_with_retry_after(client: TestClient, store: Any, user_id: str) -> None:
    store.available = False
    for response in (_charge(client, user_id, str(uuid.uuid4())), client.post(f"/charges/{uuid.uuid4()}/refund")):
        assert (response.status_code, _error(response)["code"]) == (503, "unavailable")
        assert response.headers["retry-after"] == "1"


def test_outcomes_are_counted(client: TestClient, user_id: str) -> None:
    _deliver(client, _cloud_event(user_id))
    _charge(client, user_id, str(uuid.uuid4()))
    _charge(client, user_id, str(uuid.uuid4()), 1_000_000)
    client.post(f"/charges/{uuid.uuid4()}/refund")
    text = client.get("/metrics").text
    assert 'payments_operations_total{operation="charge",outcome="captured"} 1.0' in text
    assert 'payments_operations_total{operation="charge",outcome="insufficient_funds"} 1.0' in text
    assert 'payments_operations_total{operation="refund",outcome="voided"} 1.0' in text
    assert 'payments_events_total{outcome="credited",route="/events/user-registered"} 1.0' in text


# --- health and errors -----------------------------------------------------------------------------------------


def test_probes_follow_the_sidecar(client: TestClient, sidecar_health: FakeSidecarHealth) -> None:
    assert_probes_follow_the_sidecar(client, sidecar_health)


def test_errors_carry_the_request_id(client: TestClient) -> None:
    response = client.get(f"/wallets/{uuid.uuid4()}", headers={"X-Request-ID": "req-1"})
    assert (_error(response)["request_id"], response.headers["x-request-id"]) == ("req-1", "req-1")


def test_unexpected_exception_is_500_internal_error(client: TestClient, store: Any, user_id: str) -> None:
    store.documents[f"wallet:{user_id}"] = ("corrupt", 1)
    response = client.get(f"/wallets/{user_id}")
    assert (response.status_code, _error(response)["code"]) == (500, "internal_error")
