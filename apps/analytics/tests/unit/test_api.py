"""Subscriptions, deliveries and reports through TestClient, with the store, publisher and health faked."""

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from analytics.main import create_app
from analytics.settings import Settings
from contracts.orders import OrderCompleted
from contracts.telemetry import TelemetryEvent
from contracts.users import UserRegistered
from sidecart_kit.service import Fakes
from sidecart_kit.testing import FakeSidecarHealth, recorded_spans

from .conftest import DocumentStore, FakePublisher


@contextmanager
def _client(store: DocumentStore, publisher: FakePublisher, **settings: Any) -> Iterator[TestClient]:
    app = create_app(Settings(**settings), Fakes(store=store, sidecar_health=FakeSidecarHealth()), publisher=publisher)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


@pytest.fixture
def client(store: DocumentStore, publisher: FakePublisher) -> Iterator[TestClient]:
    with _client(store, publisher) as client:
        yield client


def _event(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "type": "product_view",
        "ts": datetime.now(UTC).isoformat(),
        "sku": "sku-1",
    }
    data.update(overrides)
    return data


def _entry(data: Any, entry_id: str | None = None) -> dict[str, Any]:
    """A bulk entry as daprd 1.18.2 sends it (captured from a real sidecar)."""
    event_id = data["id"] if isinstance(data, dict) and "id" in data else str(uuid.uuid4())
    return {
        "entryId": entry_id or str(uuid.uuid4()),
        "event": {
            "data": data,
            "datacontenttype": "application/json",
            "id": event_id,
            "pubsubname": "pubsub",
            "source": "ingest",
            "specversion": "1.0",
            "topic": "telemetry",
            "type": TelemetryEvent.TYPE,
        },
        "metadata": None,
        "contentType": "application/cloudevents+json",
    }


def _deliver(client: TestClient, entries: list[dict[str, Any]]) -> dict[str, str]:
    body = {"entries": entries, "id": str(uuid.uuid4()), "topic": "telemetry", "pubsubname": "pubsub"}
    response = client.post("/events/telemetry", json=body)
    assert response.status_code == 200, response.text
    statuses = response.json()["statuses"]
    assert [s["entryId"] for s in statuses] == [e["entryId"] for e in entries]
    return {s["entryId"]: s["status"] for s in statuses}


def _assert_error(response: Any, status: int, field: str | None = None) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["request_id"] == response.headers["x-request-id"]
    if field is not None:
        assert field in [detail["field"] for detail in body["error"]["details"]]


def test_subscription_document(client: TestClient) -> None:
    subscriptions = {s["topic"]: s for s in client.get("/dapr/subscribe").json()}
    assert set(subscriptions) == {"telemetry", "orders", "users", "telemetry-deadletter"}
    telemetry = subscriptions["telemetry"]
    assert telemetry["bulkSubscribe"] == {"enabled": True, "maxMessagesCount": 500, "maxAwaitDurationMs": 200}
    assert telemetry["deadLetterTopic"] == "telemetry-deadletter"
    assert telemetry["routes"]["rules"] == [
        {"match": 'event.type == "sidecart.telemetry.event.v1"', "path": "/events/telemetry"}
    ]
    assert telemetry["routes"]["default"] == "/events/unhandled"
    assert len(subscriptions["orders"]["routes"]["rules"]) == 2
    assert subscriptions["orders"]["deadLetterTopic"] == subscriptions["users"]["deadLetterTopic"] == "deadletter"
    # Sign-ups and order outcomes come in batches too, with the same settings as telemetry.
    assert (
        subscriptions["orders"]["bulkSubscribe"]
        == subscriptions["users"]["bulkSubscribe"]
        == telemetry["bulkSubscribe"]
    )
    assert "bulkSubscribe" not in subscriptions["telemetry-deadletter"]
    # An empty rule list is what daprd makes of no rules (pkg/runtime/pubsub/subscriptions.go, 1.18.2).
    assert subscriptions["telemetry-deadletter"]["routes"] == {"default": "/events/dead-letter"}


def test_bulk_delivery_answers_each_entry_and_counts_once(client: TestClient) -> None:
    view, cart = _event(sku="a"), _event(type="add_to_cart", sku="a")
    entries = [_entry(view), _entry(cart), _entry(view)]
    assert set(_deliver(client, entries).values()) == {"SUCCESS"}
    assert set(_deliver(client, [_entry(view), _entry(cart)]).values()) == {"SUCCESS"}  # redelivered
    summary = client.get("/reports/summary").json()
    assert summary["events_total"] == 2
    assert client.get("/reports/funnel").json() == {"product_views": 1, "add_to_carts": 1, "orders_completed": 0}
    assert client.get("/reports/top-products").json() == {"items": [{"sku": "a", "views": 1}]}


def test_a_malformed_entry_is_dropped_to_the_dead_letter_topic(client: TestClient, publisher: FakePublisher) -> None:
    good = _entry(_event())
    bad = _entry({"id": "nope", "type": "teleport"})
    statuses = _deliver(client, [good, bad, _entry("not json {")])
    assert statuses[good["entryId"]] == "SUCCESS"
    assert statuses[bad["entryId"]] == "DROP"  # daprd 1.18.2 moves a dropped bulk entry to the deadLetterTopic
    assert publisher.published == []


def test_a_malformed_entry_can_be_published_to_the_dead_letter_topic(
    store: DocumentStore, publisher: FakePublisher
) -> None:
    with _client(store, publisher, malformed_entry_action="publish") as client:
        bad = _entry({"id": "nope"})
        assert _deliver(client, [bad]) == {bad["entryId"]: "SUCCESS"}
        assert [(topic, event["id"]) for topic, event in publisher.published] == [
            ("telemetry-deadletter", bad["event"]["id"])
        ]
        publisher.available = False
        assert _deliver(client, [bad]) == {bad["entryId"]: "RETRY"}


def test_entries_whose_document_cannot_be_written_are_retried(client: TestClient, store: DocumentStore) -> None:
    store.available = False
    entry = _entry(_event())
    assert _deliver(client, [entry]) == {entry["entryId"]: "RETRY"}
    store.available = True
    assert _deliver(client, [entry]) == {entry["entryId"]: "SUCCESS"}


def test_unhandled_types_are_acknowledged_in_bulk_and_single(client: TestClient) -> None:
    entry = _entry(_event())
    response = client.post("/events/unhandled", json={"entries": [entry]})
    assert response.json() == {"statuses": [{"entryId": entry["entryId"], "status": "SUCCESS"}]}
    assert client.post("/events/unhandled", json={"id": "1", "type": "x.v2"}).json() == {"status": "SUCCESS"}


def test_dead_letters_are_listed_newest_first(client: TestClient) -> None:
    for number in range(3):
        event = {"id": f"dl-{number}", "type": TelemetryEvent.TYPE, "data": {"id": "x" * 500}}
        assert client.post("/events/dead-letter", content=json.dumps(event)).json() == {"status": "SUCCESS"}
    client.post("/events/dead-letter", content=json.dumps({"id": "dl-2", "type": "t"}))  # redelivered
    items = client.get("/admin/dead-letters").json()["items"]
    assert [item["id"] for item in items] == ["dl-2", "dl-1", "dl-0"]
    assert len(items[0]["excerpt"]) == 200


def test_a_single_delivery_the_store_cannot_take_is_answered_500(client: TestClient, store: DocumentStore) -> None:
    store.available = False
    response = client.post("/events/dead-letter", content=json.dumps({"id": "dl-1", "type": "t"}))
    assert (response.status_code, response.json()) == (500, {"status": "RETRY"})  # the sidecar redelivers it


def test_business_events_feed_the_reports(client: TestClient, publisher: FakePublisher) -> None:
    now = datetime.now(UTC)
    order = {
        "order_id": str(uuid.uuid4()),
        "user_id": str(uuid.uuid4()),
        "lines": [{"sku": "a", "quantity": 1, "unit_price_cents": 1250}],
        "total_cents": 1250,
        "currency": "EUR",
        "completed_at": now.isoformat(),
    }
    envelope = {"id": "o1", "type": OrderCompleted.TYPE, "source": "orders", "data": order}
    # Redelivered, then published again under another CloudEvent id: one completed order.
    for event in (envelope, envelope, {**envelope, "id": "o1-again"}):
        assert client.post("/events/order-completed", json=event).json() == {"status": "SUCCESS"}
    signup = {"user_id": str(uuid.uuid4()), "email": "a@b.c", "name": "A", "registered_at": now.isoformat()}
    client.post("/events/user-registered", json={"id": "u1", "type": "x", "data": signup})
    summary = client.get("/reports/summary").json()
    assert (summary["orders_completed"], summary["revenue_cents"], summary["signups_total"]) == (1, 1250, 1)
    assert summary["revenue_by_hour"][0]["revenue_cents"] == 1250
    assert summary["signups_by_day"] == [{"day": now.date().isoformat(), "signups": 1}]
    # A malformed one goes to the dead-letter topic and is acknowledged.
    assert client.post("/events/order-completed", json={"id": "o2", "data": {}}).json() == {"status": "SUCCESS"}
    assert [topic for topic, _ in publisher.published] == ["deadletter"]


def test_business_events_in_bulk_are_counted_once_each_and_answered_entry_by_entry(
    client: TestClient, publisher: FakePublisher
) -> None:
    now = datetime.now(UTC).isoformat()
    signups = [
        {
            "id": f"u{n}",
            "type": UserRegistered.TYPE,
            "source": "users",
            "data": {"user_id": str(uuid.uuid4()), "email": f"u{n}@b.c", "name": "U", "registered_at": now},
        }
        for n in range(3)
    ]
    entries = [{"entryId": f"e{n}", "event": event} for n, event in enumerate([*signups, signups[0]])]
    entries.append({"entryId": "bad", "event": {"id": "u9", "type": UserRegistered.TYPE, "data": {}}})
    response = client.post("/events/user-registered", json={"id": "b1", "topic": "users", "entries": entries})
    assert [(s["entryId"], s["status"]) for s in response.json()["statuses"]] == [
        ("e0", "SUCCESS"),
        ("e1", "SUCCESS"),
        ("e2", "SUCCESS"),
        ("e3", "SUCCESS"),
        ("bad", "SUCCESS"),
    ]
    assert [topic for topic, _ in publisher.published] == ["deadletter"]  # the malformed one, kept
    assert client.get("/reports/summary").json()["signups_total"] == 3
    again = client.post("/events/user-registered", json={"entries": entries[:2]})
    assert [s["status"] for s in again.json()["statuses"]] == ["SUCCESS", "SUCCESS"]
    assert client.get("/reports/summary").json()["signups_total"] == 3


def test_a_batch_is_a_span_in_the_trace_of_each_event_it_counts(client: TestClient) -> None:
    def traced(entry: dict[str, Any], trace_id: int) -> dict[str, Any]:
        entry["event"]["traceparent"] = f"00-{trace_id:032x}-{trace_id:016x}-01"
        return entry

    now = datetime.now(UTC).isoformat()
    signup = {
        "id": "u1",
        "type": UserRegistered.TYPE,
        "data": {"user_id": str(uuid.uuid4()), "email": "u1@b.c", "name": "U", "registered_at": now},
    }
    with recorded_spans() as spans:
        _deliver(client, [traced(_entry(_event()), 1), traced(_entry(_event()), 1), traced(_entry(_event()), 2)])
        signups = {"id": "b1", "topic": "users", "entries": [traced({"entryId": "e1", "event": signup}, 3)]}
        assert client.post("/events/user-registered", json=signups).status_code == 200

    batches = [span for span in spans.get_finished_spans() if span.name.startswith("events ")]
    assert sorted((span.name, span.context.trace_id) for span in batches) == [
        ("events /events/telemetry", 1),
        ("events /events/telemetry", 2),
        ("events /events/user-registered", 3),
    ]


def test_timeseries(client: TestClient) -> None:
    now = datetime.now(UTC).replace(second=30, microsecond=0)
    _deliver(client, [_entry(_event(type="search", sku=None, ts=now.isoformat())) for _ in range(3)])
    start, end = (now - timedelta(hours=1)).isoformat(), (now + timedelta(minutes=1)).isoformat()
    response = client.get("/reports/timeseries", params={"type": "search", "from": start, "to": end})
    body = response.json()
    assert body["type"] == "search"
    assert body["points"] == [{"minute": now.replace(second=0).isoformat(), "count": 3}]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"type": "click", "from": "2026-11-22T10:00:00Z", "to": "2026-11-22T11:00:00Z"}, "type"),
        ({"type": "search", "from": "2026-11-22T10:00:00", "to": "2026-11-22T11:00:00Z"}, "from"),
        ({"type": "search", "from": "yesterday", "to": "2026-11-22T11:00:00Z"}, "from"),
        ({"type": "search", "from": "2026-11-22T10:00:00Z"}, "to"),
        ({"type": "search", "from": "2026-11-22T11:00:00Z", "to": "2026-11-22T10:00:00Z"}, "to"),
        ({"type": "search", "from": "2026-11-21T10:00:00Z", "to": "2026-11-22T10:00:01Z"}, "to"),
    ],
)
def test_timeseries_validation(client: TestClient, params: dict[str, str], field: str) -> None:
    _assert_error(client.get("/reports/timeseries", params=params), 422, field)


@pytest.mark.parametrize("limit", ["0", "101", "ten"])
def test_top_products_limit_validation(client: TestClient, limit: str) -> None:
    _assert_error(client.get("/reports/top-products", params={"limit": limit}), 422, "limit")


def test_reports_answer_503_when_the_store_is_down(client: TestClient, store: DocumentStore) -> None:
    store.available = False
    _assert_error(client.get("/reports/summary"), 503)


def test_health_and_metrics(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ready"}
    assert "http_requests_total" in client.get("/metrics").text


def _metric(client: TestClient, name: str) -> float:
    line = next(line for line in client.get("/metrics").text.splitlines() if line.startswith(name + " "))
    return float(line.split()[1])


def test_the_lag_from_an_events_time_to_its_count_is_measured_once_per_counted_event(client: TestClient) -> None:
    minute_ago = _event(ts=(datetime.now(UTC) - timedelta(minutes=1)).isoformat())
    just_now = _event()
    _deliver(client, [_entry(minute_ago), _entry(just_now), _entry(just_now)])  # the second just_now: a duplicate

    assert _metric(client, "analytics_lag_seconds_count") == 2
    assert 60 <= _metric(client, "analytics_lag_seconds_sum") < 70
