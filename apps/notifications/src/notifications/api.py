"""HTTP routes: the Dapr subscription and event deliveries, the notices of a user (the kit's probe_routes serve
/healthz and /readyz)."""

from datetime import datetime
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from contracts.orders import OrderCancelled, OrderCompleted
from contracts.users import UserRegistered
from notifications.domain import NotifiableEvent
from notifications.handlers import Notifications, Outcome, RecordNotice
from sidecart_kit.events import EventDeliveries, EventRoutes
from sidecart_kit.service import Service, from_app_state

router = APIRouter()
# Each event type this version turns into a notice is subscribed to beside its route, delivered in batches: one HTTP
# exchange per batch costs less than one per event.
events = EventRoutes(router, bulk=True)

USER_REGISTERED_ROUTE = "/events/user-registered"
ORDER_COMPLETED_ROUTE = "/events/order-completed"
ORDER_CANCELLED_ROUTE = "/events/order-cancelled"

SERVICE = Service(
    "notifications",
    "Reacts to events once each and keeps each user's notices.",
    routers=[router],
)


NotificationsDep = Annotated[Notifications, Depends(from_app_state("notifications"))]
DeliveriesDep = Annotated[EventDeliveries, Depends(from_app_state("deliveries"))]


# --- Subscriptions and deliveries (the contract with the sidecar) -----------------------------------------------


async def _record_notice(
    route: str,
    contract: type[NotifiableEvent],
    request: Request,
    notifications: Notifications,
    deliveries: EventDeliveries,
) -> JSONResponse:
    async def record(event_id: str, event: NotifiableEvent) -> Outcome:
        return await notifications.record(RecordNotice(event_id=event_id, event=event))

    body = await request.body()
    return await deliveries.answer(
        route, contract, body, record, log_context=lambda event: {"user_id": str(event.user_id)}
    )


@events.subscribe(UserRegistered, USER_REGISTERED_ROUTE)
async def on_user_registered(
    request: Request, notifications: NotificationsDep, deliveries: DeliveriesDep
) -> JSONResponse:
    """Delivery of `user.registered`: welcome the new user, once per event."""
    return await _record_notice(USER_REGISTERED_ROUTE, UserRegistered, request, notifications, deliveries)


@events.subscribe(OrderCompleted, ORDER_COMPLETED_ROUTE)
async def on_order_completed(
    request: Request, notifications: NotificationsDep, deliveries: DeliveriesDep
) -> JSONResponse:
    """Delivery of `order.completed`: tell the buyer their order is confirmed, once per event."""
    return await _record_notice(ORDER_COMPLETED_ROUTE, OrderCompleted, request, notifications, deliveries)


@events.subscribe(OrderCancelled, ORDER_CANCELLED_ROUTE)
async def on_order_cancelled(
    request: Request, notifications: NotificationsDep, deliveries: DeliveriesDep
) -> JSONResponse:
    """Delivery of `order.cancelled`: tell the buyer their order was cancelled and why, once per event."""
    return await _record_notice(ORDER_CANCELLED_ROUTE, OrderCancelled, request, notifications, deliveries)


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
