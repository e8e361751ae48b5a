"""The rules of orders in plain Python: idempotent requests, what an order is and how its status moves.

No FastAPI, no Dapr. The saga that drives an order to its end is in saga.py.
"""

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from uuid import UUID

from contracts.orders import OrderCancelled, OrderCompleted, OrderLine

MAX_LINES = 20
MAX_QUANTITY = 100
IDEMPOTENCY_KEY_MAX_LENGTH = 128
DETAIL_MAX_LENGTH = 300

# Visible ASCII and space: the key travels in an HTTP header and into logs (only as a digest, but still).
_IDEMPOTENCY_KEY = re.compile(rf"[\x20-\x7e]{{1,{IDEMPOTENCY_KEY_MAX_LENGTH}}}")


class OrderStatus(StrEnum):
    PENDING = "pending"
    RESERVING = "reserving"
    CHARGING = "charging"
    COMPLETED = "completed"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        return self in (OrderStatus.COMPLETED, OrderStatus.CANCELLED)


# Statuses only move forward: a replayed or late activity never takes an order back.
_RANK = {
    OrderStatus.PENDING: 0,
    OrderStatus.RESERVING: 1,
    OrderStatus.CHARGING: 2,
    OrderStatus.COMPLETED: 3,
    OrderStatus.CANCELLED: 3,
}


class StepName(StrEnum):
    RESERVE_STOCK = "reserve_stock"
    CHARGE_PAYMENT = "charge_payment"
    CONFIRM = "confirm"
    RELEASE_STOCK = "release_stock"
    REFUND_PAYMENT = "refund_payment"

    @property
    def is_compensation(self) -> bool:
        return self in (StepName.RELEASE_STOCK, StepName.REFUND_PAYMENT)

    @property
    def must_finish(self) -> bool:
        """Retried until it answers, never undone for giving up: the compensations, and confirm, which comes after
        the saga's pivot (the charge) and cannot fail for a business reason once stock is reserved and paid for."""
        return self.is_compensation or self is StepName.CONFIRM


class StepStatus(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class Reason(StrEnum):
    """Why an order was cancelled: stable codes clients may branch on."""

    OUT_OF_STOCK = "out_of_stock"
    INSUFFICIENT_FUNDS = "insufficient_funds"
    UNKNOWN_SKU = "unknown_sku"
    STEP_FAILED = "step_failed"


def short(text: str) -> str:
    return text if len(text) <= DETAIL_MAX_LENGTH else text[: DETAIL_MAX_LENGTH - 1] + "…"


# --- idempotency ---------------------------------------------------------------------------------------------


def idempotency_key_is_valid(key: str) -> bool:
    return _IDEMPOTENCY_KEY.fullmatch(key) is not None


def key_digest(key: str) -> str:
    """The stored form of an Idempotency-Key: the key itself is the client's and stays out of the store."""
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class RequestedLine:
    sku: str
    quantity: int


def request_fingerprint(lines: Sequence[RequestedLine]) -> str:
    """What makes two requests "the same body": the same quantity of each sku, in any line order."""
    canonical = sorted((line.sku, line.quantity) for line in lines)
    return hashlib.sha256(json.dumps(canonical, separators=(",", ":")).encode()).hexdigest()


def duplicate_sku_positions(skus: Sequence[str]) -> list[int]:
    """Positions of lines repeating an earlier line's sku."""
    seen: set[str] = set()
    repeated = []
    for position, sku in enumerate(skus):
        if sku in seen:
            repeated.append(position)
        seen.add(sku)
    return repeated


@dataclass(frozen=True)
class IdempotencyClaim:
    """The first request with a key claims it for one order: `request_hash` tells a retry from a reuse."""

    order_id: UUID
    request_hash: str
    claimed_at: datetime


# --- the order -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Product:
    sku: str
    price_cents: int
    currency: str


@dataclass(frozen=True)
class Line:
    sku: str
    quantity: int
    unit_price_cents: int | None = None


def price_lines(
    requested: Sequence[RequestedLine], products: Mapping[str, Product]
) -> tuple[tuple[Line, ...], int | None, str | None]:
    """Lines priced from the catalogue, and their total when every product has the same currency."""
    lines = tuple(Line(r.sku, r.quantity, products[r.sku].price_cents) for r in requested)
    currencies = {products[r.sku].currency for r in requested}
    if len(currencies) != 1:
        return lines, None, None
    return lines, sum(line.quantity * (line.unit_price_cents or 0) for line in lines), currencies.pop()


@dataclass(frozen=True)
class StepRecord:
    name: StepName
    status: StepStatus
    at: datetime
    detail: str = ""


@dataclass(frozen=True)
class Order:
    id: UUID
    user_id: UUID
    status: OrderStatus
    lines: tuple[Line, ...]
    total_cents: int | None
    currency: str | None
    created_at: datetime
    updated_at: datetime
    # When a request last asked the engine to start this order's workflow; None when that request failed
    # for sure, so a retry may start it at once (see `start_is_overdue`).
    workflow_requested_at: datetime | None
    steps: tuple[StepRecord, ...] = ()
    reason: Reason | None = None
    detail: str = ""

    @classmethod
    def place(
        cls,
        *,
        order_id: UUID,
        user_id: UUID,
        lines: Sequence[Line],
        total_cents: int | None,
        currency: str | None,
        now: datetime,
    ) -> "Order":
        """A new pending order; its prices are the catalogue's until the reservation fixes them."""
        return cls(
            id=order_id,
            user_id=user_id,
            status=OrderStatus.PENDING,
            lines=tuple(lines),
            total_cents=total_cents,
            currency=currency,
            created_at=now,
            updated_at=now,
            workflow_requested_at=now,
        )

    def start_is_overdue(self, now: datetime, grace: timedelta) -> bool:
        """A pending order whose workflow was asked for longer than `grace` ago and may never have been started.

        The request that creates the order starts its workflow within milliseconds; only a crash in between
        leaves it pending. Waiting out the grace keeps a concurrent retry from starting a second run (in Dapr,
        starting an existing instance restarts it).
        """
        if self.status is not OrderStatus.PENDING:
            return False
        return self.workflow_requested_at is None or now - self.workflow_requested_at >= grace

    def with_workflow_requested(self, now: datetime) -> "Order":
        return replace(self, workflow_requested_at=now, updated_at=now)

    def with_start_abandoned(self, now: datetime) -> "Order":
        """The start request failed for sure: nothing is starting this order's workflow."""
        return replace(self, workflow_requested_at=None, updated_at=now)

    def advance(self, status: OrderStatus, now: datetime) -> "Order":
        """Moves forward to `status`; never back, never out of a final status."""
        if self.status.is_final or _RANK[status] <= _RANK[self.status]:
            return self
        return replace(self, status=status, updated_at=now)

    def record(self, steps: Iterable[StepRecord], now: datetime) -> "Order":
        """Each step's latest outcome, one entry per step name, in the order the steps first happened."""
        current = list(self.steps)
        changed = False
        for step in steps:
            positions = [i for i, known in enumerate(current) if known.name is step.name]
            if positions:
                if current[positions[0]] == step:
                    continue
                current[positions[0]] = step
            else:
                current.append(step)
            changed = True
        return replace(self, steps=tuple(current), updated_at=now) if changed else self

    def priced(self, lines: Sequence[Line], total_cents: int, currency: str, now: datetime) -> "Order":
        """The prices the reservation fixed (they are what the payment charges)."""
        return replace(self, lines=tuple(lines), total_cents=total_cents, currency=currency, updated_at=now)

    def complete(self, now: datetime) -> "Order":
        return replace(self, status=OrderStatus.COMPLETED, reason=None, detail="", updated_at=now)

    def cancel(self, reason: Reason, detail: str, now: datetime) -> "Order":
        return replace(self, status=OrderStatus.CANCELLED, reason=reason, detail=short(detail), updated_at=now)

    def final_event(self) -> OrderCompleted | OrderCancelled:
        """The event that announces how this (final) order ended."""
        if self.status is OrderStatus.COMPLETED:
            if self.total_cents is None or self.currency is None:
                raise ValueError(f"order {self.id} completed without a price")
            return OrderCompleted(
                order_id=self.id,
                user_id=self.user_id,
                lines=tuple(
                    OrderLine(sku=line.sku, quantity=line.quantity, unit_price_cents=line.unit_price_cents or 0)
                    for line in self.lines
                ),
                total_cents=self.total_cents,
                currency=self.currency,
                completed_at=self.updated_at,
            )
        if self.status is OrderStatus.CANCELLED:
            return OrderCancelled(
                order_id=self.id,
                user_id=self.user_id,
                reason=str(self.reason or Reason.STEP_FAILED),
                detail=self.detail,
                cancelled_at=self.updated_at,
            )
        raise ValueError(f"order {self.id} is {self.status}, not final")


class IdempotencyKeyReusedError(Exception):
    """The key was first used with another request body."""


class OrderNotFoundError(Exception):
    """No order with this id for this user."""


class UnknownSkuError(Exception):
    """Some requested skus are not in the catalogue; `positions` are their line indexes."""

    def __init__(self, positions: Sequence[int]) -> None:
        super().__init__(f"unknown sku at lines {list(positions)}")
        self.positions = tuple(positions)
