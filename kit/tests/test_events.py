"""Subscriptions as the sidecar reads them, and envelopes as it delivers them."""

import base64
import json
import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, ClassVar

import pytest
from fastapi import APIRouter, FastAPI
from fastapi.responses import JSONResponse
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from contracts.events import Event
from contracts.orders import OrderCancelled, OrderCompleted
from contracts.users import UserRegistered
from sidecart_kit.errors import ApiError
from sidecart_kit.events import (
    BulkDelivery,
    BulkSettings,
    CloudEvent,
    DeliveryStatus,
    EventDeliveries,
    EventRoutes,
    SubscriberSettings,
    Subscription,
    bulk_answer,
    delivery_answer,
    delivery_counter,
    envelope_of,
    problems,
    subscriptions_by_topic,
)
from sidecart_kit.logs import configure_logging
from sidecart_kit.state import StoreUnavailableError
from sidecart_kit.testing import recorded_spans


def test_a_subscription_routes_by_event_type_with_a_default_and_dead_letters() -> None:
    declared = Subscription(
        pubsub="pubsub",
        topic="orders",
        routes_by_type={"sidecart.order.completed.v1": "/events/order-completed"},
        default_route="/events/unhandled",
        dead_letter_topic="deadletter",
    ).to_dapr()

    assert declared == {
        "pubsubname": "pubsub",
        "topic": "orders",
        "routes": {
            "rules": [{"match": 'event.type == "sidecart.order.completed.v1"', "path": "/events/order-completed"}],
            "default": "/events/unhandled",
        },
        "deadLetterTopic": "deadletter",
    }


def test_a_bulk_subscription() -> None:
    declared = Subscription("pubsub", "telemetry", bulk=BulkSettings(max_messages=500, max_await_ms=200)).to_dapr()
    assert declared["bulkSubscribe"] == {"enabled": True, "maxMessagesCount": 500, "maxAwaitDurationMs": 200}
    assert "deadLetterTopic" not in declared


@pytest.mark.parametrize(
    "envelope",
    [
        {"id": "1", "data": {"a": 1}},
        {"id": "1", "data": '{"a": 1}'},
        {"id": "1", "data_base64": base64.b64encode(b'{"a": 1}').decode()},
    ],
)
def test_the_payload_whatever_the_encoding(envelope: dict[str, object]) -> None:
    assert CloudEvent.model_validate(envelope | {"unknown": "ignored"}).payload() == {"a": 1}


def test_bulk_entries_as_objects_strings_or_base64() -> None:
    event = {"id": "e1", "type": "t", "data": {"a": 1}}
    delivery = BulkDelivery.model_validate(
        {
            "entries": [
                {"entryId": "1", "event": event},
                {"entryId": "2", "event": json.dumps(event)},
                {"entryId": "3", "event": base64.b64encode(json.dumps(event).encode()).decode()},
                {"entryId": "4", "event": "not an event"},
            ]
        }
    )
    assert [entry.envelope() for entry in delivery.entries] == [event, event, event, "not an event"]


def test_bulk_answer_has_one_status_per_entry() -> None:
    answer = bulk_answer({"1": DeliveryStatus.SUCCESS, "2": DeliveryStatus.RETRY})
    assert json.loads(bytes(answer.body)) == {
        "statuses": [{"entryId": "1", "status": "SUCCESS"}, {"entryId": "2", "status": "RETRY"}]
    }


def test_a_retry_is_answered_500_so_the_sidecar_redelivers() -> None:
    assert delivery_answer(DeliveryStatus.RETRY).status_code == 500
    assert delivery_answer(DeliveryStatus.SUCCESS).status_code == 200
    assert json.loads(bytes(delivery_answer(DeliveryStatus.DROP).body)) == {"status": "DROP"}


def test_problems_name_the_fields_not_the_values() -> None:
    with pytest.raises(ValidationError) as raised:
        CloudEvent.model_validate({"id": ["not", "a", "string"], "type": "t"})
    assert problems(raised.value) == ["id: string_type"]
    assert problems(ValueError("bad base64")) == "ValueError: bad base64"


def test_a_subscription_with_only_a_default_route_has_no_rules() -> None:
    declared = Subscription("pubsub", "telemetry-deadletter", default_route="/events/dead-letter").to_dapr()
    assert declared["routes"] == {"default": "/events/dead-letter"}


def test_a_route_table_gives_one_subscription_per_topic_and_one_rule_per_type() -> None:
    routes: list[tuple[type[Event], str]] = [
        (UserRegistered, "/events/user-registered"),
        (OrderCompleted, "/events/order-completed"),
        (OrderCancelled, "/events/order-cancelled"),
    ]
    declared = subscriptions_by_topic(
        "pubsub", routes, default_route="/events/unhandled", dead_letter_topic="deadletter"
    )
    assert declared == [
        Subscription(
            "pubsub",
            UserRegistered.TOPIC,
            {UserRegistered.TYPE: "/events/user-registered"},
            default_route="/events/unhandled",
            dead_letter_topic="deadletter",
        ),
        Subscription(
            "pubsub",
            OrderCompleted.TOPIC,
            {OrderCompleted.TYPE: "/events/order-completed", OrderCancelled.TYPE: "/events/order-cancelled"},
            default_route="/events/unhandled",
            dead_letter_topic="deadletter",
        ),
    ]


class Handled(StrEnum):
    DONE = "done"


class Noted(UserRegistered):
    """UserRegistered's shape without a fact key: each CloudEvent id names its own fact."""

    FACT_KEY: ClassVar[tuple[str, ...]] = ()


class EventsSeen:
    """A use case that records the ids it was handed, or fails like a store that is down."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.available = True

    async def handle(self, event_id: str, data: UserRegistered) -> Handled:
        if not self.available:
            raise StoreUnavailableError("store down")
        self.ids.append(event_id)
        return Handled.DONE


def _registered(event_id: str = "e1") -> bytes:
    data = UserRegistered(user_id=uuid.uuid4(), email="ada@example.com", name="Ada", registered_at=datetime.now(UTC))
    return json.dumps({"id": event_id, "type": UserRegistered.TYPE, "data": data.model_dump(mode="json")}).encode()


def _status(answer: JSONResponse) -> tuple[int, str]:
    status: str = json.loads(bytes(answer.body))["status"]
    return answer.status_code, status


def _counts(registry: CollectorRegistry) -> dict[tuple[str, str], float]:
    return {
        (sample.labels["route"], sample.labels["outcome"]): sample.value
        for metric in registry.collect()
        for sample in metric.samples
        if sample.name == "svc_events_total"
    }


async def test_a_delivered_event_is_handled_with_its_id_and_counted_by_outcome() -> None:
    registry, seen = CollectorRegistry(), EventsSeen()
    deliveries = EventDeliveries(delivery_counter("svc", registry))
    answer = await deliveries.answer("/events/r", Noted, _registered("e1"), seen.handle)
    assert _status(answer) == (200, "SUCCESS")
    assert seen.ids == ["e1"]
    assert _counts(registry) == {("/events/r", "done"): 1.0}


async def test_a_fact_published_twice_under_two_event_ids_is_handled_under_one_id() -> None:
    seen = EventsSeen()
    deliveries = EventDeliveries(delivery_counter("svc", CollectorRegistry()))
    first = json.loads(_registered("e1"))
    again = {**first, "id": "e2"}  # a second publication: Dapr's outbox gives each its own CloudEvent id
    await deliveries.answer("/events/r", UserRegistered, json.dumps(first).encode(), seen.handle)
    await deliveries.answer("/events/r", UserRegistered, _bulk(("1", again)), seen.handle)
    assert seen.ids == [f"{UserRegistered.TYPE}:{first['data']['user_id']}"] * 2


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        json.dumps({"type": UserRegistered.TYPE, "data": {}}).encode(),  # no id: redeliveries look alike
        json.dumps({"id": "e1", "type": UserRegistered.TYPE, "data": {"user_id": "not a uuid"}}).encode(),
        json.dumps({"id": "e1", "type": UserRegistered.TYPE, "data_base64": "%%%"}).encode(),
    ],
)
async def test_a_malformed_event_is_dropped_and_never_handled(body: bytes) -> None:
    registry, seen = CollectorRegistry(), EventsSeen()
    deliveries = EventDeliveries(delivery_counter("svc", registry))
    assert _status(await deliveries.answer("/events/r", Noted, body, seen.handle)) == (200, "DROP")
    assert seen.ids == []
    assert _counts(registry) == {("/events/r", "dropped"): 1.0}


async def test_an_event_is_retried_while_the_store_is_down() -> None:
    registry, seen = CollectorRegistry(), EventsSeen()
    deliveries = EventDeliveries(delivery_counter("svc", registry))
    seen.available = False
    assert _status(await deliveries.answer("/events/r", Noted, _registered(), seen.handle)) == (500, "RETRY")
    assert _counts(registry) == {("/events/r", "retry"): 1.0}


def test_an_unhandled_event_is_acknowledged_and_counted() -> None:
    registry = CollectorRegistry()
    deliveries = EventDeliveries(delivery_counter("svc", registry))
    assert deliveries.ignore("/events/unhandled", envelope_of(b'{"id": "e1", "type": "v2"}')) is DeliveryStatus.SUCCESS
    assert deliveries.ignore("/events/unhandled", envelope_of(b"not json")) is DeliveryStatus.SUCCESS
    assert _counts(registry) == {("/events/unhandled", "ignored"): 2.0}


def test_event_routes_declare_each_subscription_beside_its_route() -> None:
    router = APIRouter()
    events = EventRoutes(router, more=lambda settings: [Subscription(settings.pubsub_name, "audit")])
    delivered: list[str] = []

    @events.subscribe(OrderCompleted, "/events/order-completed")
    async def on_order_completed() -> dict[str, str]:
        delivered.append("order-completed")
        return {"status": "SUCCESS"}

    app = FastAPI()
    app.include_router(router)
    app.state.settings = SubscriberSettings(pubsub_name="bus", dead_letter_topic="poison")
    app.state.deliveries = EventDeliveries(delivery_counter("demo", CollectorRegistry()))
    client = TestClient(app)

    assert client.get("/dapr/subscribe").json() == [
        {
            "pubsubname": "bus",
            "topic": OrderCompleted.TOPIC,
            "routes": {
                "rules": [{"match": f'event.type == "{OrderCompleted.TYPE}"', "path": "/events/order-completed"}],
                "default": "/events/unhandled",
            },
            "deadLetterTopic": "poison",
        },
        {"pubsubname": "bus", "topic": "audit", "routes": {}},
    ]
    assert client.post("/events/order-completed").json() == {"status": "SUCCESS"}
    assert delivered == ["order-completed"]
    unhandled = client.post("/events/unhandled", json={"id": "e-1", "type": "sidecart.order.completed.v2"})
    assert (unhandled.status_code, unhandled.json()) == (200, {"status": "SUCCESS"})


def _bulk(*entries: tuple[str, object]) -> bytes:
    return json.dumps(
        {"id": "b1", "topic": "users", "entries": [{"entryId": i, "event": e} for i, e in entries]}
    ).encode()


async def test_a_bulk_delivery_is_answered_entry_by_entry_and_a_single_one_as_before() -> None:
    registry, seen = CollectorRegistry(), EventsSeen()
    deliveries = EventDeliveries(delivery_counter("svc", registry))
    body = _bulk(
        ("1", json.loads(_registered("e1"))),
        ("2", _registered("e2").decode()),  # an entry's event as a JSON string
        ("3", {"type": UserRegistered.TYPE, "data": {}}),  # no id
        ("4", {"id": "e4", "type": UserRegistered.TYPE, "data": {"user_id": "not a uuid"}}),
    )
    answer = await deliveries.answer("/events/r", Noted, body, seen.handle)
    assert (answer.status_code, json.loads(bytes(answer.body))) == (
        200,
        {
            "statuses": [
                {"entryId": "1", "status": "SUCCESS"},
                {"entryId": "2", "status": "SUCCESS"},
                {"entryId": "3", "status": "DROP"},
                {"entryId": "4", "status": "DROP"},
            ]
        },
    )
    assert sorted(seen.ids) == ["e1", "e2"]
    single = await deliveries.answer("/events/r", Noted, _registered("e5"), seen.handle)
    assert (single.status_code, json.loads(bytes(single.body))) == (200, {"status": "SUCCESS"})
    assert _counts(registry) == {("/events/r", "done"): 3.0, ("/events/r", "dropped"): 2.0}


async def test_a_bulk_delivery_is_a_span_in_the_trace_of_each_event_it_carries() -> None:
    deliveries, seen = EventDeliveries(delivery_counter("svc", CollectorRegistry())), EventsSeen()
    traced = [{**json.loads(_registered(f"e{n}")), "traceparent": f"00-{n + 1:032x}-{n + 1:016x}-01"} for n in range(2)]
    with recorded_spans() as spans:
        await deliveries.answer("/events/r", Noted, _bulk(("1", traced[0]), ("2", traced[1])), seen.handle)

    assert sorted(seen.ids) == ["e0", "e1"]
    assert sorted((span.name, span.context.trace_id) for span in spans.get_finished_spans()) == [
        ("events /events/r", 1),
        ("events /events/r", 2),
    ]


async def test_a_bulk_delivery_is_logged_in_one_line_and_each_event_only_at_debug(
    capsys: pytest.CaptureFixture[str],
) -> None:
    deliveries = EventDeliveries(delivery_counter("svc", CollectorRegistry()))
    body = _bulk(*((str(n), json.loads(_registered(f"e{n}"))) for n in range(3)), ("3", {"id": "e3", "data": {}}))

    def logged() -> list[dict[str, Any]]:
        return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]

    configure_logging("INFO", "kit-test")  # to the stdout pytest swaps per test
    await deliveries.answer("/events/r", Noted, body, EventsSeen().handle)
    assert [(line["event"], line.get("outcomes")) for line in logged()] == [
        ("event_dropped_malformed", None),
        ("events_handled", {"done": 3, "dropped": 1}),
    ]
    configure_logging("DEBUG", "kit-test")
    await deliveries.answer("/events/r", Noted, body, EventsSeen().handle)
    assert sorted(str(line["event"]) for line in logged()) == [
        "event_dropped_malformed",
        *["event_handled"] * 3,
        "events_handled",
    ]
    configure_logging("INFO", "kit-test")


async def test_entries_of_a_bulk_delivery_are_retried_while_the_store_is_down_and_a_single_one_answered_500() -> None:
    seen = EventsSeen()
    seen.available = False
    deliveries = EventDeliveries(delivery_counter("svc", CollectorRegistry()))
    answer = await deliveries.answer("/events/r", Noted, _bulk(("1", json.loads(_registered()))), seen.handle)
    assert json.loads(bytes(answer.body)) == {"statuses": [{"entryId": "1", "status": "RETRY"}]}
    assert (await deliveries.answer("/events/r", Noted, _registered(), seen.handle)).status_code == 500


async def test_a_bulk_delivery_without_entry_ids_is_refused_whole() -> None:
    deliveries = EventDeliveries(delivery_counter("svc", CollectorRegistry()))
    body = json.dumps({"entries": [{"event": json.loads(_registered())}]}).encode()
    with pytest.raises(ApiError) as raised:
        await deliveries.answer("/events/r", Noted, body, EventsSeen().handle)
    assert raised.value.status == 400


def test_bulk_event_routes_subscribe_in_bulk_and_acknowledge_unhandled_entries() -> None:
    router = APIRouter()
    events = EventRoutes(router, bulk=True)
    events.subscribe(UserRegistered, "/events/user-registered")(lambda: None)
    app = FastAPI()
    app.include_router(router)
    app.state.settings = SubscriberSettings(bulk_max_messages=100, bulk_max_await_ms=50)
    registry = CollectorRegistry()
    app.state.deliveries = EventDeliveries(delivery_counter("svc", registry))
    client = TestClient(app)

    (declared,) = client.get("/dapr/subscribe").json()
    assert declared["bulkSubscribe"] == {"enabled": True, "maxMessagesCount": 100, "maxAwaitDurationMs": 50}
    unhandled = client.post("/events/unhandled", content=_bulk(("a", {"id": "e-1", "type": "v2"}), ("b", "junk")))
    assert unhandled.json() == {
        "statuses": [{"entryId": "a", "status": "SUCCESS"}, {"entryId": "b", "status": "SUCCESS"}]
    }
    assert _counts(registry) == {("/events/unhandled", "ignored"): 2.0}
