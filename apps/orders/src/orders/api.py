"""HTTP routes of orders (the gateway reaches them through Dapr service invocation, with the caller's verified
user id in the path), health and readiness, and how domain errors answer (in the kit's error shape).
"""

from datetime import datetime
from typing import Annotated, Any, Protocol
from uuid import UUID

from fastapi import APIRouter, Depends, Header, Response, status
from pydantic import BaseModel, ConfigDict, Field

from contracts.api import ErrorDetail, ErrorResponse
from contracts.products import Sku
from orders.domain import (
    MAX_LINES,
    MAX_QUANTITY,
    IdempotencyKeyReusedError,
    Order,
    OrderNotFoundError,
    RequestedLine,
    UnknownSkuError,
    duplicate_sku_positions,
    idempotency_key_is_valid,
)
from orders.handlers import Orders, PlaceOrder
from sidecart_kit.errors import ApiError, DomainErrors
from sidecart_kit.service import Service, from_app_state
from sidecart_kit.sidecar import ReadinessProbe

# --- request and response bodies -----------------------------------------------------------------------------


class ItemRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    sku: Sku
    # Strict: "2", 2.5 and true are not quantities.
    quantity: int = Field(ge=1, le=MAX_QUANTITY, strict=True)


class PlaceOrderRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    items: list[ItemRequest] = Field(min_length=1, max_length=MAX_LINES)


class AcceptedOrder(BaseModel):
    order_id: UUID
    status: str


class StepView(BaseModel):
    name: str
    status: str
    at: datetime
    detail: str


class LineView(BaseModel):
    sku: str
    quantity: int
    unit_price_cents: int | None


class OrderView(BaseModel):
    order_id: UUID
    user_id: UUID
    status: str
    steps: list[StepView]
    reason: str | None
    lines: list[LineView]
    total_cents: int | None
    currency: str | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, order: Order) -> "OrderView":
        return cls(
            order_id=order.id,
            user_id=order.user_id,
            status=order.status.value,
            steps=[StepView(name=s.name.value, status=s.status.value, at=s.at, detail=s.detail) for s in order.steps],
            reason=None if order.reason is None else order.reason.value,
            lines=[LineView(sku=x.sku, quantity=x.quantity, unit_price_cents=x.unit_price_cents) for x in order.lines],
            total_cents=order.total_cents,
            currency=order.currency,
            created_at=order.created_at,
            updated_at=order.updated_at,
        )


class OrderList(BaseModel):
    items: list[OrderView]


class Status(BaseModel):
    status: str


# --- dependencies: what the lifespan built once, read from app.state -------------------------------------------


class WorkflowWorkerState(Protocol):
    @property
    def connected(self) -> bool: ...


OrdersDep = Annotated[Orders, Depends(from_app_state("orders"))]
ReadinessDep = Annotated[ReadinessProbe, Depends(from_app_state("sidecar_health"))]
WorkflowWorkerDep = Annotated[WorkflowWorkerState, Depends(from_app_state("workflow_worker"))]


# --- routes --------------------------------------------------------------------------------------------------


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": ErrorResponse} for code in codes}


# Probes are open; the rest answers only the sidecar when an app token is configured (the kit's guard).
open_router = APIRouter()
# Liveness is the kit's /healthz (see main); readiness (below) is orders' own: it also needs the workflow worker.
router = APIRouter(responses=_errors(401, 422, 503))


@open_router.get("/readyz", responses=_errors(503))
async def readyz(probe: ReadinessDep, worker: WorkflowWorkerDep) -> Status:
    """Readiness: the Dapr sidecar answers and the workflow worker is connected to it."""
    problems = []
    if not await probe.is_ready():
        problems.append(ErrorDetail(field=None, reason="The Dapr sidecar is not ready."))
    if not worker.connected:
        problems.append(ErrorDetail(field=None, reason="The workflow worker is not connected to the sidecar yet."))
    if problems:
        raise ApiError(503, "not_ready", "The service is not ready.", problems, headers={"Retry-After": "1"})
    return Status(status="ready")


@router.post("/users/{user_id}/orders", status_code=status.HTTP_202_ACCEPTED, responses=_errors(400, 409, 422, 503))
async def place_order(
    user_id: UUID,
    body: PlaceOrderRequest,
    orders: OrdersDep,
    response: Response,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> AcceptedOrder:
    """Accepts an order and starts its saga; the same Idempotency-Key and body give the same order again."""
    if idempotency_key is None:
        raise ApiError(400, "idempotency_key_required", "The Idempotency-Key header is required.")
    if not idempotency_key_is_valid(idempotency_key):
        raise ApiError(
            400, "idempotency_key_invalid", "The Idempotency-Key must be 1 to 128 printable ASCII characters."
        )
    repeated = duplicate_sku_positions([item.sku for item in body.items])
    if repeated:
        raise ApiError(
            422,
            "validation_error",
            "The request is invalid.",
            [ErrorDetail(field=f"items.{i}.sku", reason="This sku is already on another line.") for i in repeated],
        )
    command = PlaceOrder(
        user_id=user_id,
        idempotency_key=idempotency_key,
        lines=tuple(RequestedLine(item.sku, item.quantity) for item in body.items),
    )
    order = await orders.place(command)
    response.headers["Location"] = f"/users/{user_id}/orders/{order.id}"
    return AcceptedOrder(order_id=order.id, status=order.status.value)


@router.get("/users/{user_id}/orders/{order_id}", responses=_errors(404))
async def get_order(user_id: str, order_id: str, orders: OrdersDep) -> OrderView:
    """One order with its status and each saga step; another user's order is not found."""
    try:
        owner, parsed = UUID(user_id), UUID(order_id)
    except ValueError:
        raise OrderNotFoundError(order_id) from None
    return OrderView.of(await orders.get(owner, parsed))


@router.get("/users/{user_id}/orders")
async def list_orders(user_id: str, orders: OrdersDep) -> OrderList:
    """The user's latest orders, newest first."""
    try:
        owner = UUID(user_id)
    except ValueError:
        return OrderList(items=[])
    return OrderList(items=[OrderView.of(order) for order in await orders.list_orders(owner)])


# --- how the domain's errors answer ----------------------------------------------------------------------------


def _unknown_sku(error: Exception) -> ApiError:
    assert isinstance(error, UnknownSkuError)
    details = [ErrorDetail(field=f"items.{i}.sku", reason="No product with this sku.") for i in error.positions]
    return ApiError(422, "unknown_sku", "Some items name unknown products.", details)


DOMAIN_ERRORS: DomainErrors = {
    UnknownSkuError: _unknown_sku,
    IdempotencyKeyReusedError: lambda _: ApiError(
        409, "idempotency_key_reused", "This Idempotency-Key was already used with a different request body."
    ),
    OrderNotFoundError: lambda _: ApiError(404, "order_not_found", "No order with this id."),
}

# Readiness of its own: open_router's /readyz also asks whether the workflow worker is connected.
SERVICE = Service(
    "orders",
    "Accepts orders and runs each one's saga (reserve, charge, confirm) as a Dapr Workflow.",
    routers=[open_router, router],
    domain_errors=DOMAIN_ERRORS,
    readiness=None,
)
