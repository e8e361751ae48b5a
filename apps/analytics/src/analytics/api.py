"""HTTP routes: the Dapr subscriptions and deliveries (bulk telemetry, business events, dead letters) and reports
(the kit's probe_routes serve /healthz and /readyz)."""

from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import AwareDatetime, BaseModel

from analytics.domain import BusinessEvent
from analytics.handlers import Analytics, Deliveries
from analytics.settings import Settings
from contracts.api import ErrorDetail, ErrorResponse
from contracts.orders import OrderCancelled, OrderCompleted
from contracts.telemetry import TelemetryEvent, TelemetryType
from contracts.users import UserRegistered
from sidecart_kit.errors import ApiError
from sidecart_kit.events import (
    UNHANDLED_EVENT_ROUTE,
    BulkSettings,
    EventRoutes,
    Subscription,
    bulk_answer,
    delivery_answer,
    envelope_of,
    is_bulk_delivery,
    read_bulk_delivery,
)
from sidecart_kit.logs import get_logger
from sidecart_kit.service import Service, from_app_state

log = get_logger(__name__)
router = APIRouter()

TELEMETRY_ROUTE = "/events/telemetry"
USER_REGISTERED_ROUTE = "/events/user-registered"
ORDER_COMPLETED_ROUTE = "/events/order-completed"
ORDER_CANCELLED_ROUTE = "/events/order-cancelled"
DEAD_LETTER_ROUTE = "/events/dead-letter"
MAX_TIMESERIES_SPAN = timedelta(hours=24)

SERVICE = Service(
    "analytics",
    "CQRS read models folded exactly once from telemetry, order and user events.",
    routers=[router],
)


AnalyticsDep = Annotated[Analytics, Depends(from_app_state("analytics"))]
DeliveriesDep = Annotated[Deliveries, Depends(from_app_state("deliveries"))]


# --- Subscriptions (the contract with the sidecar) --------------------------------------------------------------


def _telemetry_and_dead_letters(settings: Settings) -> list[Subscription]:
    """Beside the business events: telemetry in bulk, and the telemetry dead letters (kept for inspection)."""
    telemetry = Subscription(
        pubsub=settings.pubsub_name,
        topic=TelemetryEvent.TOPIC,
        routes_by_type={TelemetryEvent.TYPE: TELEMETRY_ROUTE},
        default_route=UNHANDLED_EVENT_ROUTE,
        dead_letter_topic=settings.telemetry_dead_letter_topic,
        bulk=BulkSettings(max_messages=settings.bulk_max_messages, max_await_ms=settings.bulk_max_await_ms),
    )
    dead_letters = Subscription(
        pubsub=settings.pubsub_name, topic=settings.telemetry_dead_letter_topic, default_route=DEAD_LETTER_ROUTE
    )
    return [telemetry, dead_letters]


# Types this version does not know are acknowledged and logged here, in the bulk format on the telemetry topic too
# (the default route of a bulk subscription receives bulk deliveries): so the unhandled route is the app's own.
# Sign-ups and order outcomes come in batches too (bulk subscribe): one write per touched hour document per batch.
events = EventRoutes(router, more=_telemetry_and_dead_letters, answer_unhandled=False, bulk=True)


# --- Deliveries -------------------------------------------------------------------------------------------------


@router.post(TELEMETRY_ROUTE, tags=["dapr"])
async def on_telemetry(request: Request, deliveries: DeliveriesDep) -> JSONResponse:
    """A bulk delivery of telemetry: each touched document is written once, then one status per entry.

    SUCCESS: counted, already counted, or older than the retention window; RETRY: its document could not be
    written; a malformed entry goes to the dead-letter topic (see `malformed_entry_action`).
    """
    delivery = read_bulk_delivery(envelope_of(await request.body()), TELEMETRY_ROUTE)
    return bulk_answer(await deliveries.telemetry(TELEMETRY_ROUTE, delivery))


async def _business(
    route: str, contract: type[BusinessEvent], request: Request, deliveries: Deliveries
) -> JSONResponse:
    body = await request.body()
    envelope = envelope_of(body)
    if not is_bulk_delivery(envelope):
        return delivery_answer(await deliveries.business(route, contract, body))
    return bulk_answer(await deliveries.business_bulk(route, contract, read_bulk_delivery(envelope, route)))


@events.subscribe(UserRegistered, USER_REGISTERED_ROUTE)
async def on_user_registered(request: Request, deliveries: DeliveriesDep) -> JSONResponse:
    """Delivery of `user.registered` (in bulk, or one): sign-ups, once per event."""
    return await _business(USER_REGISTERED_ROUTE, UserRegistered, request, deliveries)


@events.subscribe(OrderCompleted, ORDER_COMPLETED_ROUTE)
async def on_order_completed(request: Request, deliveries: DeliveriesDep) -> JSONResponse:
    """Delivery of `order.completed` (in bulk, or one): completed orders and their revenue, once per event."""
    return await _business(ORDER_COMPLETED_ROUTE, OrderCompleted, request, deliveries)


@events.subscribe(OrderCancelled, ORDER_CANCELLED_ROUTE)
async def on_order_cancelled(request: Request, deliveries: DeliveriesDep) -> JSONResponse:
    """Delivery of `order.cancelled` (in bulk, or one): cancelled orders, once per event."""
    return await _business(ORDER_CANCELLED_ROUTE, OrderCancelled, request, deliveries)


@router.post(UNHANDLED_EVENT_ROUTE, tags=["dapr"])
async def on_unhandled_event(request: Request, deliveries: DeliveriesDep) -> JSONResponse:
    """An event type this version does not handle: acknowledged and logged (single or bulk delivery)."""
    body = envelope_of(await request.body())
    if is_bulk_delivery(body):
        return bulk_answer(deliveries.ignore_bulk(UNHANDLED_EVENT_ROUTE, body["entries"]))
    return delivery_answer(deliveries.ignore(UNHANDLED_EVENT_ROUTE, body))


@router.post(DEAD_LETTER_ROUTE, tags=["dapr"])
async def on_dead_letter(request: Request, deliveries: DeliveriesDep) -> JSONResponse:
    """A message that could not be processed: kept (id, type, when, an excerpt) in a bounded list."""
    return delivery_answer(await deliveries.dead_letter(DEAD_LETTER_ROUTE, await request.body()))


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
    """Totals over the retention window: telemetry by type, sign-ups, orders and revenue (as of at most a second
    ago, ANALYTICS_REPORT_MAX_AGE_SECONDS)."""
    return Summary.model_validate(await analytics.summary())


@router.get("/reports/top-products", tags=["reports"], response_model=TopProducts, responses=_QUERY_ERRORS)
async def report_top_products(analytics: AnalyticsDep, limit: Annotated[int, Query(ge=1, le=100)] = 10) -> TopProducts:
    """The most viewed products: views descending, then sku (as of at most a second ago)."""
    return TopProducts.model_validate({"items": await analytics.top_products(limit)})


@router.get("/reports/funnel", tags=["reports"], response_model=Funnel, responses=_REPORT_ERRORS)
async def report_funnel(analytics: AnalyticsDep) -> Funnel:
    """Product views, add-to-carts and completed orders over the retention window (as of at most a second ago)."""
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
