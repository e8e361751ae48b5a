"""HTTP routes: the Dapr subscriptions and deliveries (bulk telemetry, business events, dead letters), reports,
health and metrics."""

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Depends, FastAPI, Query, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import AwareDatetime, BaseModel, ConfigDict, ValidationError

from analytics.domain import BusinessEvent, DeadLetter, Outcome
from analytics.errors import ApiError, error_response
from analytics.handlers import (
    Analytics,
    ConcurrencyConflictError,
    MessagePublisher,
    PublishFailedError,
    SidecarHealth,
    StoreUnavailableError,
    TelemetryEntry,
)
from analytics.observability import HttpMetrics
from analytics.settings import Settings
from contracts.api import ErrorDetail, ErrorResponse
from contracts.orders import OrderCancelled, OrderCompleted
from contracts.telemetry import TelemetryEvent, TelemetryType
from contracts.users import UserRegistered

log = structlog.get_logger("analytics.api")
router = APIRouter()

TELEMETRY_ROUTE = "/events/telemetry"
USER_REGISTERED_ROUTE = "/events/user-registered"
ORDER_COMPLETED_ROUTE = "/events/order-completed"
ORDER_CANCELLED_ROUTE = "/events/order-cancelled"
UNHANDLED_EVENT_ROUTE = "/events/unhandled"
DEAD_LETTER_ROUTE = "/events/dead-letter"
EXCERPT_CHARS = 200
MAX_TIMESERIES_SPAN = timedelta(hours=24)

BUSINESS_ROUTES: tuple[tuple[type[BusinessEvent], str], ...] = (
    (UserRegistered, USER_REGISTERED_ROUTE),
    (OrderCompleted, ORDER_COMPLETED_ROUTE),
    (OrderCancelled, ORDER_CANCELLED_ROUTE),
)


async def get_app_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_analytics(request: Request) -> Analytics:
    analytics: Analytics = request.app.state.analytics
    return analytics


async def get_publisher(request: Request) -> MessagePublisher:
    publisher: MessagePublisher = request.app.state.publisher
    return publisher


async def get_sidecar_health(request: Request) -> SidecarHealth:
    health: SidecarHealth = request.app.state.sidecar_health
    return health


async def get_metrics(request: Request) -> HttpMetrics:
    metrics: HttpMetrics = request.app.state.metrics
    return metrics


SettingsDep = Annotated[Settings, Depends(get_app_settings)]
AnalyticsDep = Annotated[Analytics, Depends(get_analytics)]
PublisherDep = Annotated[MessagePublisher, Depends(get_publisher)]
SidecarHealthDep = Annotated[SidecarHealth, Depends(get_sidecar_health)]
MetricsDep = Annotated[HttpMetrics, Depends(get_metrics)]


# --- Subscriptions (the contract with the sidecar) --------------------------------------------------------------


def _rule(event_type: str, path: str) -> dict[str, str]:
    return {"match": f'event.type == "{event_type}"', "path": path}


@router.get("/dapr/subscribe", tags=["dapr"])
async def subscriptions(settings: SettingsDep) -> list[dict[str, Any]]:
    """The topics this app subscribes to, routed by CloudEvent type (read by the sidecar at start)."""
    rules_by_topic: dict[str, list[dict[str, str]]] = {}
    for contract, path in BUSINESS_ROUTES:
        rules_by_topic.setdefault(contract.TOPIC, []).append(_rule(contract.TYPE, path))
    telemetry = {
        "pubsubname": settings.pubsub_name,
        "topic": TelemetryEvent.TOPIC,
        # Types this version does not know are acknowledged and logged (in the bulk format: the default route of a
        # bulk subscription receives bulk deliveries too).
        "routes": {"rules": [_rule(TelemetryEvent.TYPE, TELEMETRY_ROUTE)], "default": UNHANDLED_EVENT_ROUTE},
        "deadLetterTopic": settings.telemetry_dead_letter_topic,
        "bulkSubscribe": {
            "enabled": True,
            "maxMessagesCount": settings.bulk_max_messages,
            "maxAwaitDurationMs": settings.bulk_max_await_ms,
        },
    }
    business = [
        {
            "pubsubname": settings.pubsub_name,
            "topic": topic,
            "routes": {"rules": rules, "default": UNHANDLED_EVENT_ROUTE},
            "deadLetterTopic": settings.dead_letter_topic,
        }
        for topic, rules in rules_by_topic.items()
    ]
    dead_letters = {
        "pubsubname": settings.pubsub_name,
        "topic": settings.telemetry_dead_letter_topic,
        "routes": {"default": DEAD_LETTER_ROUTE},
    }
    return [telemetry, *business, dead_letters]


# --- Envelopes --------------------------------------------------------------------------------------------------


class CloudEvent(BaseModel):
    """The envelope the sidecar delivers; only what this app reads. Unknown attributes are ignored."""

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


def _as_object(raw: Any) -> Any:
    """A bulk entry's `event` is a JSON object; tolerate it arriving as a JSON string or base64 text."""
    if isinstance(raw, str):
        try:
            return json.loads(raw)
        except ValueError:
            try:
                return json.loads(base64.b64decode(raw, validate=True))
            except ValueError:
                return raw
    return raw


def _problems(exc: Exception) -> list[str] | str:
    """What was wrong with an event, without the values (they may be personal data)."""
    if isinstance(exc, ValidationError):
        return [
            f"{'.'.join(str(part) for part in error['loc']) or '<root>'}: {error['type']}"
            for error in exc.errors(include_input=False, include_url=False)
        ]
    return f"{type(exc).__name__}: {exc}"


def _dead_letter_envelope(raw: Any, fallback_id: str) -> dict[str, Any]:
    """The malformed message as a CloudEvent to publish on the dead-letter topic (kept as is when it is one)."""
    if isinstance(raw, dict) and raw.get("id") and raw.get("type"):
        return dict(raw)
    return {
        "specversion": "1.0",
        "id": fallback_id,
        "type": "sidecart.analytics.undecodable.v1",
        "source": "analytics",
        "datacontenttype": "application/json",
        "data": {"raw": raw if isinstance(raw, str | dict | list) else repr(raw)},
    }


# --- Telemetry (bulk) -------------------------------------------------------------------------------------------


class BulkEntry(BaseModel):
    model_config = ConfigDict(extra="ignore")

    entryId: str  # noqa: N815 - Dapr's field name
    event: Any = None
    contentType: str | None = None  # noqa: N815


class BulkDelivery(BaseModel):
    model_config = ConfigDict(extra="ignore")

    entries: list[BulkEntry]
    id: str | None = None
    topic: str | None = None


def _statuses(statuses: dict[str, str]) -> JSONResponse:
    return JSONResponse(
        {"statuses": [{"entryId": entry_id, "status": status} for entry_id, status in statuses.items()]}
    )


@router.post(TELEMETRY_ROUTE, tags=["dapr"])
async def on_telemetry(
    request: Request,
    analytics: AnalyticsDep,
    publisher: PublisherDep,
    settings: SettingsDep,
    metrics: MetricsDep,
) -> JSONResponse:
    """A bulk delivery of telemetry: each touched document is written once, then one status per entry.

    SUCCESS: counted, already counted, or older than the retention window; RETRY: its document could not be
    written; a malformed entry goes to the dead-letter topic (see `malformed_entry_action`).
    """
    try:
        delivery = BulkDelivery.model_validate_json(await request.body())
    except ValidationError as exc:
        log.error("bulk_delivery_unreadable", problems=_problems(exc))
        raise ApiError(400, "bad_request", "The body is not a Dapr bulk delivery.") from exc
    now = datetime.now(UTC)
    statuses: dict[str, str] = {}
    valid: list[TelemetryEntry] = []
    for entry in delivery.entries:
        statuses[entry.entryId] = "RETRY"  # keeps the order of the entries; every one is decided below
        raw = _as_object(entry.event)
        try:
            envelope = CloudEvent.model_validate(raw)
            event = TelemetryEvent.model_validate(envelope.payload(), context={"now": now})
        except (ValidationError, ValueError) as exc:
            statuses[entry.entryId] = await _malformed(raw, entry.entryId, exc, publisher, settings, metrics)
            continue
        valid.append(TelemetryEntry(entry.entryId, event))
    outcomes = await analytics.fold_telemetry(valid)
    for entry_id, outcome in outcomes.items():
        statuses[entry_id] = "RETRY" if outcome is None else "SUCCESS"
        metrics.events.labels(TELEMETRY_ROUTE, "retry" if outcome is None else outcome.value).inc()
    log.info(
        "telemetry_delivery",
        entries=len(delivery.entries),
        counted=sum(outcome is Outcome.COUNTED for outcome in outcomes.values()),
        duplicates=sum(outcome is Outcome.DUPLICATE for outcome in outcomes.values()),
        expired=sum(outcome is Outcome.EXPIRED for outcome in outcomes.values()),
        retry=sum(status == "RETRY" for status in statuses.values()),
    )
    return _statuses(statuses)


async def _malformed(
    raw: Any,
    entry_id: str,
    exc: Exception,
    publisher: MessagePublisher,
    settings: Settings,
    metrics: HttpMetrics,
) -> str:
    event_id = raw.get("id") if isinstance(raw, dict) else None
    log.error("telemetry_entry_malformed", entry_id=entry_id, event_id=event_id, problems=_problems(exc))
    if settings.malformed_entry_action != "publish":
        metrics.events.labels(TELEMETRY_ROUTE, settings.malformed_entry_action.lower()).inc()
        return settings.malformed_entry_action
    try:
        await publisher.publish(settings.telemetry_dead_letter_topic, _dead_letter_envelope(raw, entry_id))
    except PublishFailedError as failure:
        log.warning("dead_letter_not_published", entry_id=entry_id, error=str(failure))
        metrics.events.labels(TELEMETRY_ROUTE, "retry").inc()
        return "RETRY"
    metrics.events.labels(TELEMETRY_ROUTE, "dead_lettered").inc()
    return "SUCCESS"


# --- Business events (one per delivery) -------------------------------------------------------------------------


def _status(outcome: str, status_code: int = 200) -> JSONResponse:
    return JSONResponse({"status": outcome}, status_code=status_code)


async def _business_delivery(
    request: Request,
    analytics: Analytics,
    publisher: MessagePublisher,
    settings: Settings,
    metrics: HttpMetrics,
    contract: type[BusinessEvent],
    route: str,
) -> JSONResponse:
    """SUCCESS once counted (or counted before, or out of retention); a malformed event is published to the
    dead-letter topic and acknowledged; RETRY (non-2xx) when the store fails."""
    raw: Any = None
    try:
        raw = json.loads(await request.body())
        envelope = CloudEvent.model_validate(raw)
        if not envelope.id:
            raise ValueError("the CloudEvent has no id")
        data = contract.model_validate(envelope.payload())
    except (ValidationError, ValueError) as exc:
        log.error("event_malformed", route=route, problems=_problems(exc))
        try:
            await publisher.publish(settings.dead_letter_topic, _dead_letter_envelope(raw, "unknown"))
        except PublishFailedError as failure:
            log.warning("dead_letter_not_published", error=str(failure))
            return _status("RETRY", 500)
        metrics.events.labels(route, "dead_lettered").inc()
        return _status("SUCCESS")
    try:
        outcome = await analytics.fold_business(envelope.id, data)
    except (StoreUnavailableError, ConcurrencyConflictError) as exc:
        log.warning("event_retry", route=route, event_id=envelope.id, error=str(exc))
        metrics.events.labels(route, "retry").inc()
        return _status("RETRY", 500)  # any non-2xx makes the sidecar redeliver; the body says why
    log.info("event_handled", route=route, event_id=envelope.id, outcome=outcome.value)
    metrics.events.labels(route, outcome.value).inc()
    return _status("SUCCESS")


@router.post(USER_REGISTERED_ROUTE, tags=["dapr"])
async def on_user_registered(
    request: Request, analytics: AnalyticsDep, publisher: PublisherDep, settings: SettingsDep, metrics: MetricsDep
) -> JSONResponse:
    """Delivery of `user.registered`: one sign-up, once per event."""
    return await _business_delivery(
        request, analytics, publisher, settings, metrics, UserRegistered, USER_REGISTERED_ROUTE
    )


@router.post(ORDER_COMPLETED_ROUTE, tags=["dapr"])
async def on_order_completed(
    request: Request, analytics: AnalyticsDep, publisher: PublisherDep, settings: SettingsDep, metrics: MetricsDep
) -> JSONResponse:
    """Delivery of `order.completed`: one completed order and its revenue, once per event."""
    return await _business_delivery(
        request, analytics, publisher, settings, metrics, OrderCompleted, ORDER_COMPLETED_ROUTE
    )


@router.post(ORDER_CANCELLED_ROUTE, tags=["dapr"])
async def on_order_cancelled(
    request: Request, analytics: AnalyticsDep, publisher: PublisherDep, settings: SettingsDep, metrics: MetricsDep
) -> JSONResponse:
    """Delivery of `order.cancelled`: one cancelled order, once per event."""
    return await _business_delivery(
        request, analytics, publisher, settings, metrics, OrderCancelled, ORDER_CANCELLED_ROUTE
    )


@router.post(UNHANDLED_EVENT_ROUTE, tags=["dapr"])
async def on_unhandled_event(request: Request, metrics: MetricsDep) -> JSONResponse:
    """An event type this version does not handle: acknowledged and logged (single or bulk delivery)."""
    try:
        body: Any = json.loads(await request.body())
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("entries"), list):
        entries = [entry for entry in body["entries"] if isinstance(entry, dict)]
        for entry in entries:
            event = _as_object(entry.get("event"))
            attributes = event if isinstance(event, dict) else {}
            log.warning("event_type_not_handled", event_id=attributes.get("id"), event_type=attributes.get("type"))
        metrics.events.labels(UNHANDLED_EVENT_ROUTE, "ignored").inc(len(entries))
        return _statuses({str(entry.get("entryId")): "SUCCESS" for entry in entries})
    attributes = body if isinstance(body, dict) else {}
    log.warning(
        "event_type_not_handled",
        event_id=attributes.get("id"),
        event_type=attributes.get("type"),
        topic=attributes.get("topic"),
    )
    metrics.events.labels(UNHANDLED_EVENT_ROUTE, "ignored").inc()
    return _status("SUCCESS")


@router.post(DEAD_LETTER_ROUTE, tags=["dapr"])
async def on_dead_letter(request: Request, analytics: AnalyticsDep, metrics: MetricsDep) -> JSONResponse:
    """A message that could not be processed: kept (id, type, when, an excerpt) in a bounded list."""
    raw_body = await request.body()
    try:
        body: Any = json.loads(raw_body)
    except ValueError:
        body = None
    attributes = body if isinstance(body, dict) else {}
    data = attributes.get("data", attributes.get("data_base64"))
    excerpt = raw_body.decode(errors="replace") if data is None else json.dumps(data, default=str)
    letter = DeadLetter(
        id=str(attributes.get("id") or "unknown"),
        type=str(attributes.get("type") or "unknown"),
        received_at=datetime.now(UTC).isoformat(),
        excerpt=excerpt[:EXCERPT_CHARS],
    )
    try:
        added = await analytics.record_dead_letter(letter)
    except (StoreUnavailableError, ConcurrencyConflictError) as exc:
        log.warning("dead_letter_retry", event_id=letter.id, error=str(exc))
        return _status("RETRY", 500)
    log.warning("dead_letter_recorded", event_id=letter.id, event_type=letter.type, new=added)
    metrics.events.labels(DEAD_LETTER_ROUTE, "recorded" if added else "duplicate").inc()
    return _status("SUCCESS")


# --- Reports ----------------------------------------------------------------------------------------------------

_REPORT_ERRORS: dict[int | str, dict[str, object]] = {
    503: {"model": ErrorResponse, "description": "The read models cannot be read right now"}
}
_QUERY_ERRORS: dict[int | str, dict[str, object]] = {
    422: {"model": ErrorResponse, "description": "A query parameter is invalid"},
    **_REPORT_ERRORS,
}


class RevenueHour(BaseModel):
    hour: datetime
    revenue_cents: int


class SignupDay(BaseModel):
    day: str
    signups: int


class EventsByType(BaseModel):
    page_view: int
    product_view: int
    search: int
    add_to_cart: int


class Summary(BaseModel):
    events_total: int
    events_by_type: EventsByType
    signups_total: int
    orders_completed: int
    orders_cancelled: int
    revenue_cents: int
    revenue_by_hour: list[RevenueHour]
    signups_by_day: list[SignupDay]


class ProductViews(BaseModel):
    sku: str
    views: int


class TopProducts(BaseModel):
    items: list[ProductViews]


class Funnel(BaseModel):
    product_views: int
    add_to_carts: int
    orders_completed: int


class MinuteCount(BaseModel):
    minute: datetime
    count: int


class DeadLetterView(BaseModel):
    id: str
    type: str
    received_at: str
    excerpt: str


class DeadLetterList(BaseModel):
    items: list[DeadLetterView]


@router.get("/reports/summary", tags=["reports"], response_model=Summary, responses=_REPORT_ERRORS)
async def report_summary(analytics: AnalyticsDep) -> Summary:
    """Totals over the retention window: telemetry by type, sign-ups, orders and revenue."""
    return Summary.model_validate(await analytics.summary())


@router.get("/reports/top-products", tags=["reports"], response_model=TopProducts, responses=_QUERY_ERRORS)
async def report_top_products(analytics: AnalyticsDep, limit: Annotated[int, Query(ge=1, le=100)] = 10) -> TopProducts:
    """The most viewed products: views descending, then sku."""
    return TopProducts.model_validate({"items": await analytics.top_products(limit)})


@router.get("/reports/funnel", tags=["reports"], response_model=Funnel, responses=_REPORT_ERRORS)
async def report_funnel(analytics: AnalyticsDep) -> Funnel:
    """Product views, add-to-carts and completed orders over the retention window."""
    return Funnel.model_validate(await analytics.funnel())


@router.get("/reports/timeseries", tags=["reports"], responses=_QUERY_ERRORS)
async def report_timeseries(
    analytics: AnalyticsDep,
    event_type: Annotated[TelemetryType, Query(alias="type")],
    start: Annotated[AwareDatetime, Query(alias="from")],
    end: Annotated[AwareDatetime, Query(alias="to")],
) -> dict[str, Any]:
    """Events of one type per minute (non-zero minutes, ascending) for minutes starting in [from, to)."""
    if start >= end:
        raise ApiError(
            422, "validation_error", "The request is invalid.", [ErrorDetail(field="to", reason="must be after 'from'")]
        )
    if end - start > MAX_TIMESERIES_SPAN:
        raise ApiError(
            422,
            "validation_error",
            "The request is invalid.",
            [ErrorDetail(field="to", reason="at most 24 hours after 'from'")],
        )
    points = await analytics.timeseries(event_type, start, end)
    return {"type": event_type, "from": start.isoformat(), "to": end.isoformat(), "points": points}


@router.get("/admin/dead-letters", tags=["admin"], response_model=DeadLetterList, responses=_REPORT_ERRORS)
async def list_dead_letters(analytics: AnalyticsDep) -> DeadLetterList:
    """The messages recently moved to the telemetry dead-letter topic, newest first."""
    return DeadLetterList.model_validate({"items": await analytics.dead_letters()})


# --- Health and metrics ----------------------------------------------------------------------------------------


@router.get("/healthz", tags=["health"])
async def healthz() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


@router.get("/readyz", tags=["health"], responses={503: {"description": "The sidecar is not ready"}})
async def readyz(health: SidecarHealthDep, request: Request) -> JSONResponse:
    """Readiness: this app's sidecar is up and its components are ready."""
    if await health.is_ready():
        return JSONResponse({"status": "ready"})
    return error_response(503, "not_ready", "The Dapr sidecar is not ready.", request.state.request_id)


@router.get("/metrics", include_in_schema=False)
async def metrics(http_metrics: MetricsDep) -> Response:
    """Prometheus metrics."""
    return Response(generate_latest(http_metrics.registry), media_type=CONTENT_TYPE_LATEST)


async def _on_store_unavailable(request: Request, exc: Exception) -> JSONResponse:
    log.warning("store_unavailable", error=str(exc))
    return error_response(
        503,
        "store_unavailable",
        "Analytics cannot be read right now.",
        request.state.request_id,
        headers={"retry-after": "2"},
    )


def install_domain_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(StoreUnavailableError, _on_store_unavailable)
