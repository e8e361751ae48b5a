"""Events owned by the orders service: how each order saga ended."""

from datetime import datetime
from typing import ClassVar
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from contracts.events import Event


class OrderLine(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    sku: str
    quantity: int = Field(ge=1)
    unit_price_cents: int = Field(ge=0)


class OrderCompleted(Event):
    """Stock was reserved, the payment captured and the order confirmed."""

    TOPIC: ClassVar[str] = "orders"
    TYPE: ClassVar[str] = "sidecart.order.completed.v1"
    FACT_KEY: ClassVar[tuple[str, ...]] = ("order_id",)

    order_id: UUID
    user_id: UUID
    lines: tuple[OrderLine, ...]
    total_cents: int = Field(ge=0)
    currency: str = Field(min_length=3, max_length=3)
    completed_at: datetime


class OrderCancelled(Event):
    """The saga failed at a step and compensated every step before it: no stock held, no money kept."""

    TOPIC: ClassVar[str] = "orders"
    TYPE: ClassVar[str] = "sidecart.order.cancelled.v1"
    FACT_KEY: ClassVar[tuple[str, ...]] = ("order_id",)

    order_id: UUID
    user_id: UUID
    reason: str = Field(description="A stable code: out_of_stock, insufficient_funds, unknown_sku, step_failed.")
    detail: str = ""
    cancelled_at: datetime
