"""Pub/sub as an app sees it through its sidecar: the settings of a publisher and a subscriber, subscriptions
declared beside their handlers, the CloudEvent envelopes and bulk deliveries the sidecar sends, and the answers it
expects."""

import asyncio
import base64
import json
import logging
from collections import Counter as Tally
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry, Counter
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from contracts.events import Event
from sidecart_kit.errors import ApiError
from sidecart_kit.logs import get_logger
from sidecart_kit.service import from_app_state
from sidecart_kit.sidecar import ServiceSettings
from sidecart_kit.state import StoreUnavailableError
from sidecart_kit.tracing import event_traceparent, spans_in_event_traces

log = get_logger(__name__)
EventData = TypeVar("EventData", bound=Event)
Route = TypeVar("Route", bound=Callable[..., Any])

UNHANDLED_EVENT_ROUTE = "/events/unhandled"


class PubSubSettings(ServiceSettings):
    """The settings of a service that publishes or subscribes: the name of its pub/sub component."""

    pubsub_name: str = "pubsub"


class SubscriberSettings(PubSubSettings):
    """The settings of a service that subscribes: where a delivery the sidecar gave up on goes, and how bulk
    subscriptions batch (at most this many events, waiting at most this long for a batch to fill)."""

    dead_letter_topic: str = "deadletter"
    bulk_max_messages: int = Field(default=100, ge=1)
    bulk_max_await_ms: int = Field(default=50, ge=1)


class DeliveryStatus(StrEnum):
    """What the sidecar does next with a delivered event."""

    SUCCESS = "SUCCESS"  # done (or nothing to do): acknowledged
    RETRY = "RETRY"  # not done: delivered again (then dead-lettered, per the resiliency policy)
    DROP = "DROP"  # never doable: acknowledged and logged by the sidecar as dropped


def delivery_answer(status: DeliveryStatus) -> JSONResponse:
    """The answer to one delivered event: its status, with 200, or 500 for RETRY (any non-2xx makes the sidecar
    redeliver as well; the body says why)."""
    return JSONResponse({"status": status.value}, status_code=500 if status is DeliveryStatus.RETRY else 200)


def log_unhandled_event(envelope: Any) -> None:
    """An event of a type this version does not handle (a newer version's, say): acknowledged, and said so."""
    attributes = envelope if isinstance(envelope, dict) else {}
    log.warning(
        "event_type_not_handled",
        event_id=attributes.get("id"),
        event_type=attributes.get("type"),
        topic=attributes.get("topic"),
        source=attributes.get("source"),
    )


def problems(exc: Exception) -> list[str] | str:
    """What was wrong with an event or envelope, without the values (they may be personal data)."""
    if isinstance(exc, ValidationError):
        return [
            f"{'.'.join(str(part) for part in error['loc']) or '<root>'}: {error['type']}"
            for error in exc.errors(include_input=False, include_url=False)
        ]
    return f"{type(exc).__name__}: {exc}"


def bulk_answer(statuses: dict[str, DeliveryStatus]) -> JSONResponse:
    """The answer to a bulk delivery: one status per entry id."""
    return JSONResponse(
        {"statuses": [{"entryId": entry_id, "status": status.value} for entry_id, status in statuses.items()]}
    )


@dataclass(frozen=True)
class BulkSettings:
    max_messages: int = 100
    max_await_ms: int = 1000


@dataclass(frozen=True)
class Subscription:
    """One topic an app subscribes to (the sidecar reads them from GET /dapr/subscribe at start), routed by
    CloudEvent type; types without a rule go to `default_route`, so a newer version's events are seen, not lost."""

    pubsub: str
    topic: str
    routes_by_type: dict[str, str] = field(default_factory=dict)
    default_route: str | None = None
    dead_letter_topic: str | None = None
    bulk: BulkSettings | None = None

    def to_dapr(self) -> dict[str, Any]:
        routes: dict[str, Any] = {}
        if self.routes_by_type:
            routes["rules"] = [
                {"match": f'event.type == "{event_type}"', "path": path}
                for event_type, path in self.routes_by_type.items()
            ]
        if self.default_route is not None:
            routes["default"] = self.default_route
        declared: dict[str, Any] = {"pubsubname": self.pubsub, "topic": self.topic, "routes": routes}
        if self.dead_letter_topic is not None:
            declared["deadLetterTopic"] = self.dead_letter_topic
        if self.bulk is not None:
            declared["bulkSubscribe"] = {
                "enabled": True,
                "maxMessagesCount": self.bulk.max_messages,
                "maxAwaitDurationMs": self.bulk.max_await_ms,
            }
        return declared


def subscriptions_by_topic(
    pubsub: str,
    routes: Iterable[tuple[type[Event], str]],
    *,
    default_route: str | None = None,
    dead_letter_topic: str | None = None,
    bulk: BulkSettings | None = None,
) -> list[Subscription]:
    """The subscriptions of a route table (each event contract and the route its deliveries arrive at): one per
    topic, in the table's order, with one routing rule per event type and the same default route, dead-letter
    topic and bulk settings for every topic."""
    routes_by_topic: dict[str, dict[str, str]] = {}
    for contract, path in routes:
        routes_by_topic.setdefault(contract.TOPIC, {})[contract.TYPE] = path
    return [
        Subscription(
            pubsub=pubsub,
            topic=topic,
            routes_by_type=routes_by_type,
            default_route=default_route,
            dead_letter_topic=dead_letter_topic,
            bulk=bulk,
        )
        for topic, routes_by_type in routes_by_topic.items()
    ]


class EventRoutes:
    """An app's subscriptions, each declared beside the route its deliveries arrive at
    (`@events.subscribe(UserRegistered, "/events/user-registered")` on the route), and what comes with them on
    `router`: GET /dapr/subscribe, the subscriptions of those routes (subscriptions_by_topic, on the app's
    settings.pubsub_name, dead-lettered to its settings.dead_letter_topic: a SubscriberSettings) and `more`
    subscriptions of the app's own, each read from its settings; and, unless the app answers it itself
    (`answer_unhandled=False`), POST /events/unhandled, where its topics' other event types (a future v2, say) are
    acknowledged and logged by app.state.deliveries (an EventDeliveries), not lost silently.

    With `bulk`, the sidecar delivers those routes' events in batches (bulk subscribe, sized by the settings'
    bulk_max_messages and bulk_max_await_ms): a busy topic costs one HTTP exchange per batch instead of one per
    event. Their routes answer with EventDeliveries.answer, which takes either shape."""

    def __init__(
        self,
        router: APIRouter,
        *,
        more: Callable[[Any], Iterable[Subscription]] = lambda settings: (),
        answer_unhandled: bool = True,
        bulk: bool = False,
    ) -> None:
        self._router = router
        self.bulk = bulk
        self.routes: list[tuple[type[Event], str]] = []
        settings_dep = Annotated[SubscriberSettings, Depends(from_app_state("settings"))]

        @router.get("/dapr/subscribe", tags=["dapr"])
        async def subscriptions(settings: settings_dep) -> list[dict[str, Any]]:
            """The topics this app subscribes to, routed by CloudEvent type (read by the sidecar at start)."""
            return [subscription.to_dapr() for subscription in self.declared(settings, more(settings))]

        if not answer_unhandled:
            return
        deliveries_dep = Annotated[EventDeliveries, Depends(from_app_state("deliveries"))]

        @router.post(UNHANDLED_EVENT_ROUTE, tags=["dapr"])
        async def on_unhandled_event(request: Request, deliveries: deliveries_dep) -> JSONResponse:
            """Delivery of an event type this version does not handle (single or bulk): acknowledged and logged."""
            envelope = envelope_of(await request.body())
            if is_bulk_delivery(envelope):
                return bulk_answer(deliveries.ignore_bulk(UNHANDLED_EVENT_ROUTE, envelope["entries"]))
            return delivery_answer(deliveries.ignore(UNHANDLED_EVENT_ROUTE, envelope))

    def subscribe(self, contract: type[Event], path: str) -> Callable[[Route], Route]:
        """Subscribes to `contract`'s events, delivered to the decorated route at POST `path`."""
        self.routes.append((contract, path))
        return self._router.post(path, tags=["dapr"])

    def declared(self, settings: SubscriberSettings, more: Iterable[Subscription] = ()) -> list[Subscription]:
        by_topic = subscriptions_by_topic(
            settings.pubsub_name,
            self.routes,
            default_route=UNHANDLED_EVENT_ROUTE,
            dead_letter_topic=settings.dead_letter_topic,
            bulk=BulkSettings(settings.bulk_max_messages, settings.bulk_max_await_ms) if self.bulk else None,
        )
        return [*by_topic, *more]


class CloudEvent(BaseModel):
    """The envelope the sidecar delivers; only what apps read. Unknown attributes are ignored (tolerant reader)."""

    model_config = ConfigDict(extra="ignore")

    id: str = ""
    type: str = ""
    source: str = ""
    data: Any = None
    data_base64: str | None = None

    def payload(self) -> Any:
        """The event data, whether the sidecar sent it as JSON, as a JSON string or base64-encoded."""
        if self.data is None and self.data_base64 is not None:
            return json.loads(base64.b64decode(self.data_base64, validate=True))
        if isinstance(self.data, str | bytes):
            return json.loads(self.data)
        return self.data


class IdentifiedCloudEvent(CloudEvent):
    # Without an id a delivery cannot be told from its redeliveries: such an event is malformed.
    id: str = Field(min_length=1)


def is_bulk_delivery(envelope: Any) -> bool:
    """Whether a delivery's JSON is a bulk delivery (entries) rather than one CloudEvent."""
    return isinstance(envelope, dict) and isinstance(envelope.get("entries"), list)


def read_bulk_delivery(envelope: Any, route: str) -> "BulkDelivery":
    """A bulk delivery's JSON as a BulkDelivery; ApiError 400 when it is not one (no entry can be named in the
    answer, so the sidecar is told the whole delivery failed)."""
    try:
        return BulkDelivery.model_validate(envelope)
    except ValidationError as exc:
        log.error("bulk_delivery_unreadable", route=route, problems=problems(exc))
        raise ApiError(400, "bad_request", "The body is not a Dapr bulk delivery.") from exc


def envelope_of(body: bytes) -> Any:
    """A delivery's JSON, or None when it is not JSON (an event nobody handles is acknowledged all the same)."""
    try:
        return json.loads(body)
    except ValueError:
        return None


def delivery_counter(
    service: str, registry: CollectorRegistry, description: str = "Events delivered by the sidecar, by how they ended."
) -> Counter:
    """`<service>_events_total` by route and outcome: how the events the sidecar delivered ended."""
    return Counter(f"{service}_events_total", description, ["route", "outcome"], registry=registry)


class EventDeliveries:
    """What the sidecar is answered for each delivered event, each ending logged and counted in `events` (a
    delivery_counter): SUCCESS once handled (or handled before), DROP when the event is malformed (redelivery
    cannot fix it), RETRY when the store fails."""

    def __init__(self, events: Counter) -> None:
        self._events = events

    def count(self, route: str, outcome: str, amount: int = 1) -> None:
        self._events.labels(route, outcome).inc(amount)

    async def answer(
        self,
        route: str,
        contract: type[EventData],
        body: bytes,
        handle: Callable[[str, EventData], Awaitable[StrEnum]],
        *,
        log_context: Callable[[EventData], Mapping[str, str]] = lambda data: {},
    ) -> JSONResponse:
        """The answer to a delivery of `contract` events in either shape the sidecar sends, one CloudEvent or a
        bulk delivery (its entries handled at once, one status each). Each event's envelope and `contract` data
        are read and handed to `handle` with the id of the fact it states (`Event.fact_id()`, else its CloudEvent
        id: `handle` must do its work once per id, so a fact published twice is handled once); each outcome is
        logged with `log_context` of the data and counted. Malformed: DROP; the store down: RETRY. A bulk
        delivery's handling is also a span in the trace of each event it carries (spans_in_event_traces)."""
        envelope = envelope_of(body)
        if not is_bulk_delivery(envelope):
            status, outcome = await self._handle(route, contract, envelope, handle, log_context, log_handled=True)
            self.count(route, outcome)
            return delivery_answer(status)
        delivery = read_bulk_delivery(envelope, route)
        log_each = logging.getLogger(__name__).isEnabledFor(logging.DEBUG)
        envelopes = [entry.envelope() for entry in delivery.entries]
        with spans_in_event_traces(f"events {route}", map(event_traceparent, envelopes)):
            results = await asyncio.gather(
                *(
                    self._handle(route, contract, envelope, handle, log_context, log_handled=log_each)
                    for envelope in envelopes
                )
            )
        self.tally(route, [outcome for _, outcome in results])
        return bulk_answer(
            {entry.entryId: status for entry, (status, _) in zip(delivery.entries, results, strict=True)}
        )

    def tally(self, route: str, outcomes: Iterable[str]) -> None:
        """A bulk delivery's outcomes, counted and logged in one line. Each handled event gets its own line only at
        DEBUG (retries and drops always do): at thousands of events a second, a line each took an eighth of the
        subscriber's CPU."""
        tally = Tally(outcomes)
        for outcome, amount in tally.items():
            self.count(route, outcome, amount)
        log.info("events_handled", route=route, outcomes=dict(tally))

    async def _handle(
        self,
        route: str,
        contract: type[EventData],
        envelope: Any,
        handle: Callable[[str, EventData], Awaitable[StrEnum]],
        log_context: Callable[[EventData], Mapping[str, str]],
        *,
        log_handled: bool,
    ) -> tuple[DeliveryStatus, str]:
        """The event's status for the sidecar, and its outcome as counted."""
        try:
            event = IdentifiedCloudEvent.model_validate(envelope)
        except ValidationError as exc:
            return self._drop(route, exc, event_id=None), "dropped"
        try:
            data = contract.model_validate(event.payload())
        except ValueError as exc:  # pydantic's ValidationError is a ValueError, as are undecodable payloads
            return self._drop(route, exc, event_id=event.id), "dropped"
        try:
            outcome = await handle(data.fact_id() or event.id, data)
        except StoreUnavailableError as exc:  # ContentionError included
            log.warning("event_retry", error=str(exc), **self._context(event, data, log_context))
            return DeliveryStatus.RETRY, "retry"
        if log_handled:
            log.info("event_handled", outcome=outcome.value, **self._context(event, data, log_context))
        return DeliveryStatus.SUCCESS, outcome.value

    @staticmethod
    def _context(
        event: "IdentifiedCloudEvent", data: EventData, log_context: Callable[[EventData], Mapping[str, str]]
    ) -> dict[str, str]:
        return {"event_id": event.id, "event_type": event.type, **log_context(data)}

    def _drop(self, route: str, exc: Exception, event_id: str | None) -> DeliveryStatus:
        log.error("event_dropped_malformed", route=route, event_id=event_id, problems=problems(exc))
        return DeliveryStatus.DROP

    def ignore(self, route: str, envelope: Any) -> DeliveryStatus:
        """An event type this version does not handle (a future v2, say): acknowledged and logged, not lost
        silently."""
        log_unhandled_event(envelope)
        self.count(route, "ignored")
        return DeliveryStatus.SUCCESS

    def ignore_bulk(self, route: str, entries: list[Any]) -> dict[str, DeliveryStatus]:
        """Events of a type this version does not handle, delivered in bulk (the default route of a bulk
        subscription receives bulk deliveries too): each acknowledged and logged."""
        entries = [entry for entry in entries if isinstance(entry, dict)]
        for entry in entries:
            log_unhandled_event(BulkEntry(entryId=str(entry.get("entryId")), event=entry.get("event")).envelope())
        self.count(route, "ignored", len(entries))
        return {str(entry.get("entryId")): DeliveryStatus.SUCCESS for entry in entries}


class BulkEntry(BaseModel):
    model_config = ConfigDict(extra="ignore")

    entryId: str  # noqa: N815 - Dapr's field name
    event: Any = None
    contentType: str | None = None  # noqa: N815 - Dapr's field name

    def envelope(self) -> Any:
        """The entry's CloudEvent as a JSON object (tolerating one sent as a JSON string or base64 text)."""
        raw = self.event
        if not isinstance(raw, str):
            return raw
        try:
            return json.loads(raw)
        except ValueError:
            try:
                return json.loads(base64.b64decode(raw, validate=True))
            except ValueError:
                return raw


class BulkDelivery(BaseModel):
    model_config = ConfigDict(extra="ignore")

    entries: list[BulkEntry]
    id: str | None = None
    topic: str | None = None
