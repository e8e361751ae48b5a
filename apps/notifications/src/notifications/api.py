"""HTTP routes: the Dapr subscription and event deliveries, the notices of a user, health and metrics."""

import base64
import json
from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

import structlog
from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from contracts.orders import OrderCancelled, OrderCompleted
from contracts.users import UserRegistered
from notifications.domain import NotifiableEvent
from notifications.errors import error_response
from notifications.handlers import (
    ConcurrencyConflictError,
    InboxRepository,
    Limits,
    Notifications,
    RecordNotice,
    RetryPolicy,
    SidecarHealth,
    StoreUnavailableError,
)
from notifications.observability import HttpMetrics
from notifications.settings import Settings

log = structlog.get_logger("notifications.api")
router = APIRouter()

USER_REGISTERED_ROUTE = "/events/user-registered"
ORDER_COMPLETED_ROUTE = "/events/order-completed"
ORDER_CANCELLED_ROUTE = "/events/order-cancelled"
UNHANDLED_EVENT_ROUTE = "/events/unhandled"

# Each event type this version turns into a notice, and the route its deliveries arrive at. The subscription
# document is built from this table: one subscription per topic, one routing rule per type.
DELIVERY_ROUTES: tuple[tuple[type[NotifiableEvent], str], ...] = (
    (UserRegistered, USER_REGISTERED_ROUTE),
    (OrderCompleted, ORDER_COMPLETED_ROUTE),
    (OrderCancelled, ORDER_CANCELLED_ROUTE),
)


async def get_app_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_repository(request: Request) -> InboxRepository:
    repository: InboxRepository = request.app.state.repository
    return repository


async def get_sidecar_health(request: Request) -> SidecarHealth:
    health: SidecarHealth = request.app.state.sidecar_health
    return health


async def get_metrics(request: Request) -> HttpMetrics:
    metrics: HttpMetrics = request.app.state.metrics
    return metrics


SettingsDep = Annotated[Settings, Depends(get_app_settings)]
RepositoryDep = Annotated[InboxRepository, Depends(get_repository)]
SidecarHealthDep = Annotated[SidecarHealth, Depends(get_sidecar_health)]
MetricsDep = Annotated[HttpMetrics, Depends(get_metrics)]


async def get_notifications(repository: RepositoryDep, settings: SettingsDep) -> Notifications:
    return Notifications(
        repository,
        limits=Limits(settings.max_notices_per_user, settings.max_remembered_events_per_user),
        retry=RetryPolicy(settings.save_attempts, settings.save_backoff_seconds, settings.save_backoff_max_seconds),
    )


NotificationsDep = Annotated[Notifications, Depends(get_notifications)]


# --- Subscriptions and deliveries (the contract with the sidecar) -----------------------------------------------


@router.get("/dapr/subscribe", tags=["dapr"])
async def subscriptions(settings: SettingsDep) -> list[dict[str, Any]]:
    """The topics this app subscribes to, routed by CloudEvent type (read by the sidecar at start)."""
    rules_by_topic: dict[str, list[dict[str, str]]] = {}
    for contract, path in DELIVERY_ROUTES:
        rule = {"match": f'event.type == "{contract.TYPE}"', "path": path}
        rules_by_topic.setdefault(contract.TOPIC, []).append(rule)
    return [
        {
            "pubsubname": settings.pubsub_name,
            "topic": topic,
            "routes": {
                "rules": rules,
                # Types this version does not know (a future v2, say) are acknowledged and logged, not lost silently.
                "default": UNHANDLED_EVENT_ROUTE,
            },
            "deadLetterTopic": settings.dead_letter_topic,
        }
        for topic, rules in rules_by_topic.items()
    ]


class CloudEvent(BaseModel):
    """The envelope the sidecar delivers; only what this app reads. Unknown attributes are ignored."""

    model_config = ConfigDict(extra="ignore")

    id: str = Field(min_length=1)
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


def _status(outcome: str, status_code: int = 200) -> JSONResponse:
    return JSONResponse({"status": outcome}, status_code=status_code)


def _problems(exc: Exception) -> list[str] | str:
    """What was wrong with an event, without the values (they may be personal data)."""
    if isinstance(exc, ValidationError):
        return [
            f"{'.'.join(str(part) for part in error['loc']) or '<root>'}: {error['type']}"
            for error in exc.errors(include_input=False, include_url=False)
        ]
    return f"{type(exc).__name__}: {exc}"


def _drop(metrics: HttpMetrics, route: str, exc: Exception, event_id: str | None) -> JSONResponse:
    # Redelivery cannot fix a malformed event: drop it, loudly.
    log.error("event_dropped_malformed", route=route, event_id=event_id, problems=_problems(exc))
    metrics.events.labels(route, "dropped").inc()
    return _status("DROP")


async def _record_delivery(
    request: Request,
    notifications: Notifications,
    metrics: HttpMetrics,
    contract: type[NotifiableEvent],
    route: str,
) -> JSONResponse:
    """One path for every event type: read the envelope and its data, record the notice once, answer the sidecar.

    SUCCESS once recorded (or recorded before), DROP when the event is malformed, RETRY when the store fails.
    """
    try:
        event = CloudEvent.model_validate_json(await request.body())
    except ValidationError as exc:
        return _drop(metrics, route, exc, event_id=None)
    try:
        data = contract.model_validate(event.payload())
    except (ValidationError, ValueError) as exc:
        return _drop(metrics, route, exc, event_id=event.id)
    log_context = {"event_id": event.id, "event_type": event.type, "user_id": str(data.user_id)}
    try:
        outcome = await notifications.record(RecordNotice(event_id=event.id, event=data))
    except (StoreUnavailableError, ConcurrencyConflictError) as exc:
        log.warning("event_retry", error=str(exc), **log_context)
        metrics.events.labels(route, "retry").inc()
        return _status("RETRY", 500)  # any non-2xx makes the sidecar redeliver; the body says why
    log.info("event_handled", outcome=outcome.value, **log_context)
    metrics.events.labels(route, outcome.value).inc()
    return _status("SUCCESS")


@router.post(USER_REGISTERED_ROUTE, tags=["dapr"])
async def on_user_registered(request: Request, notifications: NotificationsDep, metrics: MetricsDep) -> JSONResponse:
    """Delivery of `user.registered`: welcome the new user, once per event."""
    return await _record_delivery(request, notifications, metrics, UserRegistered, USER_REGISTERED_ROUTE)


@router.post(ORDER_COMPLETED_ROUTE, tags=["dapr"])
async def on_order_completed(request: Request, notifications: NotificationsDep, metrics: MetricsDep) -> JSONResponse:
    """Delivery of `order.completed`: tell the buyer their order is confirmed, once per event."""
    return await _record_delivery(request, notifications, metrics, OrderCompleted, ORDER_COMPLETED_ROUTE)


@router.post(ORDER_CANCELLED_ROUTE, tags=["dapr"])
async def on_order_cancelled(request: Request, notifications: NotificationsDep, metrics: MetricsDep) -> JSONResponse:
    """Delivery of `order.cancelled`: tell the buyer their order was cancelled and why, once per event."""
    return await _record_delivery(request, notifications, metrics, OrderCancelled, ORDER_CANCELLED_ROUTE)


@router.post(UNHANDLED_EVENT_ROUTE, tags=["dapr"])
async def on_unhandled_event(request: Request, metrics: MetricsDep) -> JSONResponse:
    """Delivery of an event type this version does not handle: acknowledged and logged."""
    raw = await request.body()
    try:
        envelope: Any = json.loads(raw)
    except ValueError:
        envelope = None
    attributes = envelope if isinstance(envelope, dict) else {}
    log.warning(
        "event_type_not_handled",
        event_id=attributes.get("id"),
        event_type=attributes.get("type"),
        topic=attributes.get("topic"),
        source=attributes.get("source"),
    )
    metrics.events.labels(UNHANDLED_EVENT_ROUTE, "ignored").inc()
    return _status("SUCCESS")


# --- Queries ---------------------------------------------------------------------------------------------------


class NoticeView(BaseModel):
    id: str
    event_id: str
    kind: str
    title: str
    message: str
    created_at: datetime
    order_id: UUID | None = None


class NoticeList(BaseModel):
    items: list[NoticeView]


@router.get("/users/{user_id}/notifications", tags=["notifications"], response_model=NoticeList)
async def list_notifications(user_id: UUID, notifications: NotificationsDep) -> NoticeList:
    """A user's notices, newest first (an empty list for a user without any)."""
    notices = await notifications.list_notices(user_id)
    return NoticeList(items=[NoticeView(**notice.to_document()) for notice in notices])


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
        "Notifications cannot be read right now.",
        request.state.request_id,
        headers={"retry-after": "2"},
    )


def install_domain_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(StoreUnavailableError, _on_store_unavailable)
