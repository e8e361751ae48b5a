"""The rules of orders: what an order is, how its status moves, and the saga's decisions, in plain Python.

No FastAPI, no Dapr. The saga is a small state machine (`Saga`) that the Dapr workflow merely drives: it says
which step runs next, and decides from each step's outcome whether to go on, compensate or finish. Being plain
and deterministic, it replays identically, and every path is unit-tested without a sidecar.
"""

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any
from uuid import UUID

from contracts.orders import OrderCancelled, OrderCompleted, OrderLine

MAX_LINES = 20
MAX_QUANTITY = 100
SKU_MAX_LENGTH = 64
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


class StepStatus(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class Reason(StrEnum):
    """Why an order was cancelled: stable codes clients may branch on."""

    OUT_OF_STOCK = "out_of_stock"
    INSUFFICIENT_FUNDS = "insufficient_funds"
    UNKNOWN_SKU = "unknown_sku"
    STEP_FAILED = "step_failed"


def reason_for_refusal(step: StepName, code: str | None) -> Reason:
    """The cancellation reason for a participant's business refusal of `step` with error `code`."""
    if step is StepName.RESERVE_STOCK and code == Reason.OUT_OF_STOCK:
        return Reason.OUT_OF_STOCK
    if step is StepName.RESERVE_STOCK and code == Reason.UNKNOWN_SKU:
        return Reason.UNKNOWN_SKU
    if step is StepName.CHARGE_PAYMENT and code == Reason.INSUFFICIENT_FUNDS:
        return Reason.INSUFFICIENT_FUNDS
    return Reason.STEP_FAILED


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


# --- the saga ------------------------------------------------------------------------------------------------


class Outcome(StrEnum):
    SUCCEEDED = "succeeded"
    # A business refusal (out of stock, insufficient funds, ...): final, never retried.
    REFUSED = "refused"
    # The order had already ended (a replayed or restarted workflow): nothing was done, nothing more to do.
    ALREADY_FINAL = "already_final"


@dataclass(frozen=True)
class StepResult:
    """What an activity reports back to the workflow (JSON in the workflow history)."""

    outcome: Outcome
    code: str | None = None
    detail: str = ""
    total_cents: int | None = None
    currency: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome.value,
            "code": self.code,
            "detail": self.detail,
            "total_cents": self.total_cents,
            "currency": self.currency,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "StepResult":
        total = data.get("total_cents")
        currency = data.get("currency")
        code = data.get("code")
        return cls(
            outcome=Outcome(data["outcome"]),
            code=None if code is None else str(code),
            detail=str(data.get("detail") or ""),
            total_cents=None if total is None else int(total),
            currency=None if currency is None else str(currency),
        )


@dataclass(frozen=True)
class Finish:
    status: OrderStatus
    reason: Reason | None = None
    detail: str = ""


@dataclass(frozen=True)
class SagaInput:
    """Everything each activity needs, so activities are plain functions of their input (and the order doc)."""

    order_id: UUID
    user_id: UUID
    lines: tuple[RequestedLine, ...]
    total_cents: int | None = None
    currency: str | None = None
    # Steps the workflow saw fail for good (retries exhausted): the activity records them on the order.
    failures: tuple[StepRecord, ...] = ()
    finish: Finish | None = None
    # The workflow's (deterministic) time when it scheduled the activity: the final status is stamped with
    # it, so a re-sent final event carries exactly the same data.
    at: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "order_id": str(self.order_id),
            "user_id": str(self.user_id),
            "lines": [{"sku": line.sku, "quantity": line.quantity} for line in self.lines],
            "total_cents": self.total_cents,
            "currency": self.currency,
            "failures": [
                {"name": f.name.value, "status": f.status.value, "at": f.at.isoformat(), "detail": f.detail}
                for f in self.failures
            ],
            "finish": None
            if self.finish is None
            else {
                "status": self.finish.status.value,
                "reason": None if self.finish.reason is None else self.finish.reason.value,
                "detail": self.finish.detail,
            },
            "at": None if self.at is None else self.at.isoformat(),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "SagaInput":
        finish = data.get("finish")
        at = data.get("at")
        total = data.get("total_cents")
        currency = data.get("currency")
        return cls(
            order_id=UUID(str(data["order_id"])),
            user_id=UUID(str(data["user_id"])),
            lines=tuple(RequestedLine(str(line["sku"]), int(line["quantity"])) for line in data["lines"]),
            total_cents=None if total is None else int(total),
            currency=None if currency is None else str(currency),
            failures=tuple(
                StepRecord(
                    name=StepName(f["name"]),
                    status=StepStatus(f["status"]),
                    at=datetime.fromisoformat(f["at"]),
                    detail=str(f.get("detail") or ""),
                )
                for f in data.get("failures") or ()
            ),
            finish=None
            if not finish
            else Finish(
                status=OrderStatus(finish["status"]),
                reason=None if finish.get("reason") is None else Reason(finish["reason"]),
                detail=str(finish.get("detail") or ""),
            ),
            at=None if at is None else datetime.fromisoformat(at),
        )


@dataclass(frozen=True)
class RunStep:
    """Run one saga step's activity."""

    step: StepName


@dataclass(frozen=True)
class FinishOrder:
    """Save the final status and publish its event (one outbox transaction)."""

    finish: Finish


@dataclass(frozen=True)
class Wait:
    """Pause (a durable timer) before trying `then` again: for work that must eventually succeed."""

    then: "RunStep | FinishOrder"


Command = RunStep | FinishOrder | Wait


@dataclass
class Saga:
    """The order saga as a state machine: reserve stock → charge payment → confirm; compensate in reverse.

    The workflow asks `next_command()`, runs it, and reports back with `completed()` (the activity answered)
    or `failed()` (the activity kept failing until its retry policy gave up). Forward steps that keep failing
    end the saga in compensation; compensations and the final save are retried after a pause, forever,
    because stock and money must not stay held.
    """

    order: SagaInput
    total_cents: int | None = field(default=None, init=False)
    currency: str | None = field(default=None, init=False)
    failures: list[StepRecord] = field(default_factory=list, init=False)
    # How the saga ended (None while it runs, and when it found the order already ended).
    result: Finish | None = field(default=None, init=False)
    _next: Command | None = field(default=RunStep(StepName.RESERVE_STOCK), init=False)
    _compensations: list[StepName] = field(default_factory=list, init=False)
    _finish: Finish | None = field(default=None, init=False)

    def next_command(self) -> Command | None:
        """What to do now; None once the saga is over."""
        return self._next

    def activity_input(self, command: RunStep | FinishOrder, at: datetime | None = None) -> SagaInput:
        return replace(
            self.order,
            total_cents=self.total_cents,
            currency=self.currency,
            failures=tuple(self.failures),
            finish=command.finish if isinstance(command, FinishOrder) else None,
            at=at,
        )

    def completed(self, command: Command, result: StepResult | None = None) -> None:
        """`command` ran to an answer (for a Wait: the timer fired)."""
        if isinstance(command, Wait):
            self._next = command.then
            return
        if isinstance(command, FinishOrder):
            self.result = command.finish
            self._next = None
            return
        assert result is not None, "a step always answers with a result"
        if result.outcome is Outcome.ALREADY_FINAL:
            self._next = None
            return
        step = command.step
        if step.is_compensation:
            self._after_compensation()
            return
        if result.outcome is Outcome.REFUSED:
            self._refused(step, result)
            return
        match step:
            case StepName.RESERVE_STOCK:
                self.total_cents, self.currency = result.total_cents, result.currency
                self._next = RunStep(StepName.CHARGE_PAYMENT)
            case StepName.CHARGE_PAYMENT:
                self._next = RunStep(StepName.CONFIRM)
            case StepName.CONFIRM:
                self._next = FinishOrder(Finish(OrderStatus.COMPLETED))

    def failed(self, command: Command, detail: str, at: datetime) -> None:
        """`command`'s activity failed for good: its outcome is unknown, so assume the worst."""
        if isinstance(command, Wait):  # a timer does not fail; be safe and go on
            self._next = command.then
            return
        if isinstance(command, FinishOrder):
            self._next = Wait(command)
            return
        step = command.step
        self._note(StepRecord(step, StepStatus.FAILED, at, short(detail)))
        if step.is_compensation:
            self._next = Wait(command)
            return
        # The participant may have done the work before failing: undo this step too (both undo calls are
        # idempotent and accept an unknown order, so undoing what never happened is harmless).
        undo = {
            StepName.RESERVE_STOCK: [StepName.RELEASE_STOCK],
            StepName.CHARGE_PAYMENT: [StepName.REFUND_PAYMENT, StepName.RELEASE_STOCK],
            StepName.CONFIRM: [StepName.REFUND_PAYMENT, StepName.RELEASE_STOCK],
        }[step]
        self._compensate(undo, Finish(OrderStatus.CANCELLED, Reason.STEP_FAILED, f"{step}: {detail}"))

    def _refused(self, step: StepName, result: StepResult) -> None:
        reason = reason_for_refusal(step, result.code)
        detail = f"{step}: {result.code}" + (f" ({result.detail})" if result.detail else "")
        # A refused step did nothing: undo only the steps before it.
        undo = {
            StepName.RESERVE_STOCK: [],
            StepName.CHARGE_PAYMENT: [StepName.RELEASE_STOCK],
            StepName.CONFIRM: [StepName.REFUND_PAYMENT, StepName.RELEASE_STOCK],
        }[step]
        self._compensate(undo, Finish(OrderStatus.CANCELLED, reason, detail))

    def _compensate(self, undo: list[StepName], finish: Finish) -> None:
        self._compensations = list(undo)
        self._finish = finish
        self._after_compensation()

    def _after_compensation(self) -> None:
        if self._compensations:
            self._next = RunStep(self._compensations.pop(0))
            return
        assert self._finish is not None, "compensation only runs towards a cancellation"
        self._next = FinishOrder(self._finish)

    def _note(self, record: StepRecord) -> None:
        self.failures = [known for known in self.failures if known.name is not record.name] + [record]


class IdempotencyKeyReusedError(Exception):
    """The key was first used with another request body."""


class OrderNotFoundError(Exception):
    """No order with this id for this user."""


class UnknownSkuError(Exception):
    """Some requested skus are not in the catalogue; `positions` are their line indexes."""

    def __init__(self, positions: Sequence[int]) -> None:
        super().__init__(f"unknown sku at lines {list(positions)}")
        self.positions = tuple(positions)
