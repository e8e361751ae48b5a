"""The order saga as a plain, deterministic state machine (`Saga`) that the Dapr workflow merely drives.

It says which step runs next, and decides from each step's outcome whether to go on, compensate or finish. Being
plain and deterministic, it replays identically, and every path is unit-tested without a sidecar. What travels
through the workflow history (activity inputs and results) is JSON written and read by pydantic, in the format
earlier versions stored, so sagas in flight survive an upgrade.
"""

from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

from pydantic import TypeAdapter

from orders.domain import OrderStatus, Reason, RequestedLine, StepName, StepRecord, StepStatus, short


def reason_for_refusal(step: StepName, code: str | None) -> Reason:
    """The cancellation reason for a participant's business refusal of `step` with error `code`."""
    if step is StepName.RESERVE_STOCK and code == Reason.OUT_OF_STOCK:
        return Reason.OUT_OF_STOCK
    if step is StepName.RESERVE_STOCK and code == Reason.UNKNOWN_SKU:
        return Reason.UNKNOWN_SKU
    if step is StepName.CHARGE_PAYMENT and code == Reason.INSUFFICIENT_FUNDS:
        return Reason.INSUFFICIENT_FUNDS
    return Reason.STEP_FAILED


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
        data: dict[str, Any] = _STEP_RESULT.dump_python(self, mode="json")
        return data

    @classmethod
    def from_json(cls, data: Any) -> "StepResult":
        return _STEP_RESULT.validate_python(data)


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
    # The W3C trace context of the request that started the saga: its steps are spans of that request's trace.
    traceparent: str | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = _SAGA_INPUT.dump_python(self, mode="json")
        return data

    @classmethod
    def from_json(cls, data: Any) -> "SagaInput":
        return _SAGA_INPUT.validate_python(data)


_STEP_RESULT = TypeAdapter(StepResult)
_SAGA_INPUT = TypeAdapter(SagaInput)


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
    """The order saga as a state machine: reserve stock → charge payment (the pivot) → confirm; compensate in
    reverse.

    The workflow asks `next_command()`, runs it, and reports back with `completed()` (the activity answered)
    or `failed()` (the activity kept failing until its retry policy gave up). Steps before the pivot that keep
    failing end the saga in compensation; confirm (after the pivot), compensations and the final save are retried
    after a pause, forever: stock and money must not stay held, and a paid order whose stock may be sold is
    completed, never refunded. A refusal (a participant's answer, not a lost one) still compensates.
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
        if step.must_finish:
            # Forward recovery past the pivot: confirm may have committed the stock before its answer was lost,
            # and undoing then would refund an order whose stock is sold. Commit is idempotent: try it again.
            self._next = Wait(command)
            return
        # The participant may have done the work before failing: undo this step too (both undo calls are
        # idempotent and accept an unknown order, so undoing what never happened is harmless).
        undo = {
            StepName.RESERVE_STOCK: [StepName.RELEASE_STOCK],
            StepName.CHARGE_PAYMENT: [StepName.REFUND_PAYMENT, StepName.RELEASE_STOCK],
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
