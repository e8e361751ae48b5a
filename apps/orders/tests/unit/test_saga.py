"""The saga in plain Python: every path of the state machine, and the JSON it keeps in the workflow history."""

from datetime import UTC, datetime
from uuid import uuid4

import pytest

from orders.domain import OrderStatus, Reason, RequestedLine, StepName, StepRecord, StepStatus
from orders.saga import (
    Finish,
    FinishOrder,
    Outcome,
    RunStep,
    Saga,
    SagaInput,
    StepResult,
    Wait,
    reason_for_refusal,
)

NOW = datetime(2026, 1, 1, tzinfo=UTC)
OK = StepResult(Outcome.SUCCEEDED)


def saga() -> Saga:
    return Saga(SagaInput(order_id=uuid4(), user_id=uuid4(), lines=(RequestedLine("SKU-A", 2),)))


def run(saga: Saga, answers: dict[StepName, StepResult | str]) -> list[str]:
    """Runs the saga to its end: a str answer is a give-up (retries exhausted) with that detail."""
    trace = []
    while (command := saga.next_command()) is not None:
        if isinstance(command, Wait):
            trace.append("wait")
            saga.completed(command)
            continue
        if isinstance(command, FinishOrder):
            trace.append(f"finish:{command.finish.status}:{command.finish.reason}")
            saga.completed(command, OK)
            continue
        trace.append(command.step.value)
        answer = answers.get(command.step, OK)
        if isinstance(answer, str):
            saga.failed(command, answer, NOW)
            answers[command.step] = OK  # a later round succeeds
        else:
            saga.completed(command, answer)
    return trace


# --- the JSON in the workflow history ---------------------------------------------------------------------------


def test_saga_input_round_trips_through_json() -> None:
    original = SagaInput(
        order_id=uuid4(),
        user_id=uuid4(),
        lines=(RequestedLine("A", 1), RequestedLine("B", 2)),
        total_cents=1250,
        currency="EUR",
        failures=(StepRecord(StepName.CHARGE_PAYMENT, StepStatus.FAILED, NOW, "timeout"),),
        finish=Finish(OrderStatus.CANCELLED, Reason.STEP_FAILED, "charge_payment: timeout"),
        at=NOW,
    )
    assert SagaInput.from_json(original.to_json()) == original


def test_saga_input_as_earlier_versions_stored_it_is_still_read() -> None:
    # What a saga in flight during an upgrade has in its history (datetimes written by isoformat()).
    order_id, user_id = uuid4(), uuid4()
    stored = {
        "order_id": str(order_id),
        "user_id": str(user_id),
        "lines": [{"sku": "A", "quantity": 1}],
        "total_cents": 500,
        "currency": "EUR",
        "failures": [{"name": "confirm", "status": "failed", "at": "2026-01-01T00:00:00+00:00", "detail": "timeout"}],
        "finish": {"status": "cancelled", "reason": "step_failed", "detail": "confirm: timeout"},
        "at": "2026-01-01T00:00:00+00:00",
    }

    saga_input = SagaInput.from_json(stored)

    assert saga_input == SagaInput(
        order_id=order_id,
        user_id=user_id,
        lines=(RequestedLine("A", 1),),
        total_cents=500,
        currency="EUR",
        failures=(StepRecord(StepName.CONFIRM, StepStatus.FAILED, NOW, "timeout"),),
        finish=Finish(OrderStatus.CANCELLED, Reason.STEP_FAILED, "confirm: timeout"),
        at=NOW,
    )
    assert set(saga_input.to_json()) == {*stored, "traceparent"}  # added since: read as None
    first = {"order_id": str(order_id), "user_id": str(user_id), "lines": [{"sku": "A", "quantity": 1}]}
    assert SagaInput.from_json(first) == SagaInput(order_id, user_id, (RequestedLine("A", 1),))


def test_step_results_as_earlier_versions_stored_them_are_still_read() -> None:
    stored = {"outcome": "succeeded", "code": None, "detail": "", "total_cents": 900, "currency": "EUR"}
    result = StepResult.from_json(stored)
    assert result == StepResult(Outcome.SUCCEEDED, total_cents=900, currency="EUR")
    assert result.to_json() == stored


# --- the saga ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("step", "code", "reason"),
    [
        (StepName.RESERVE_STOCK, "out_of_stock", Reason.OUT_OF_STOCK),
        (StepName.RESERVE_STOCK, "unknown_sku", Reason.UNKNOWN_SKU),
        (StepName.RESERVE_STOCK, "reservation_released", Reason.STEP_FAILED),
        (StepName.CHARGE_PAYMENT, "insufficient_funds", Reason.INSUFFICIENT_FUNDS),
        (StepName.CHARGE_PAYMENT, "charge_voided", Reason.STEP_FAILED),
        (StepName.CONFIRM, "reservation_released", Reason.STEP_FAILED),
    ],
)
def test_reason_for_refusal(step: StepName, code: str, reason: Reason) -> None:
    assert reason_for_refusal(step, code) is reason


def test_saga_happy_path() -> None:
    s = saga()
    trace = run(s, {StepName.RESERVE_STOCK: StepResult(Outcome.SUCCEEDED, total_cents=1000, currency="EUR")})
    assert trace == ["reserve_stock", "charge_payment", "confirm", "finish:completed:None"]
    assert s.result == Finish(OrderStatus.COMPLETED)
    assert (s.total_cents, s.currency) == (1000, "EUR")


def test_charge_gets_the_reserved_total() -> None:
    s = saga()
    s.completed(RunStep(StepName.RESERVE_STOCK), StepResult(Outcome.SUCCEEDED, total_cents=4250, currency="USD"))
    command = s.next_command()
    assert command == RunStep(StepName.CHARGE_PAYMENT)
    assert isinstance(command, RunStep)
    charge = s.activity_input(command)
    assert (charge.total_cents, charge.currency, charge.finish) == (4250, "USD", None)


def test_out_of_stock_cancels_without_compensation() -> None:
    s = saga()
    trace = run(s, {StepName.RESERVE_STOCK: StepResult(Outcome.REFUSED, code="out_of_stock", detail="A: 0 left")})
    assert trace == ["reserve_stock", "finish:cancelled:out_of_stock"]
    assert s.result is not None
    assert s.result.detail == "reserve_stock: out_of_stock (A: 0 left)"


def test_insufficient_funds_releases_the_stock() -> None:
    trace = run(saga(), {StepName.CHARGE_PAYMENT: StepResult(Outcome.REFUSED, code="insufficient_funds")})
    assert trace == ["reserve_stock", "charge_payment", "release_stock", "finish:cancelled:insufficient_funds"]


def test_a_refused_confirm_refunds_then_releases() -> None:
    trace = run(saga(), {StepName.CONFIRM: StepResult(Outcome.REFUSED, code="reservation_released")})
    assert trace == [
        "reserve_stock",
        "charge_payment",
        "confirm",
        "refund_payment",
        "release_stock",
        "finish:cancelled:step_failed",
    ]


@pytest.mark.parametrize(
    ("failing", "expected"),
    [
        # The outcome of a step that gave up is unknown: it is undone too.
        (StepName.RESERVE_STOCK, ["reserve_stock", "release_stock"]),
        (StepName.CHARGE_PAYMENT, ["reserve_stock", "charge_payment", "refund_payment", "release_stock"]),
    ],
)
def test_a_step_that_keeps_failing_is_compensated(failing: StepName, expected: list[str]) -> None:
    s = saga()
    trace = run(s, {failing: "payments: no answer (ReadTimeout)"})
    assert trace == [*expected, "finish:cancelled:step_failed"]
    assert s.result is not None
    assert s.result.detail == f"{failing}: payments: no answer (ReadTimeout)"
    assert [(f.name, f.status) for f in s.failures] == [(failing, StepStatus.FAILED)]


def test_a_confirm_that_keeps_failing_is_tried_again_never_undone_and_the_order_completes() -> None:
    # Past the pivot: the commit may have landed before its answer was lost; refunding would sell stock for free.
    s = saga()
    for step in (StepName.RESERVE_STOCK, StepName.CHARGE_PAYMENT):
        s.completed(RunStep(step), OK)
    confirm = RunStep(StepName.CONFIRM)
    for _ in range(3):
        assert s.next_command() == confirm
        s.failed(confirm, "inventory: no answer (ReadTimeout)", NOW)
        assert s.next_command() == Wait(confirm)
        s.completed(Wait(confirm))
    s.completed(confirm, OK)
    finish = s.next_command()
    assert isinstance(finish, FinishOrder)
    assert finish.finish == Finish(OrderStatus.COMPLETED)
    assert [(f.name, f.status) for f in s.activity_input(finish).failures] == [(StepName.CONFIRM, StepStatus.FAILED)]


def test_a_failing_compensation_waits_and_tries_again_until_it_succeeds() -> None:
    s = saga()
    s.completed(RunStep(StepName.RESERVE_STOCK), OK)
    s.completed(RunStep(StepName.CHARGE_PAYMENT), StepResult(Outcome.REFUSED, code="insufficient_funds"))
    release = RunStep(StepName.RELEASE_STOCK)
    assert s.next_command() == release
    for _ in range(3):
        s.failed(release, "inventory down", NOW)
        assert s.next_command() == Wait(release)
        s.completed(Wait(release))
        assert s.next_command() == release
    s.completed(release, OK)
    finish = s.next_command()
    assert isinstance(finish, FinishOrder)
    assert (finish.finish.status, finish.finish.reason) == (OrderStatus.CANCELLED, Reason.INSUFFICIENT_FUNDS)
    assert [(f.name, f.status) for f in s.activity_input(finish).failures] == [
        (StepName.RELEASE_STOCK, StepStatus.FAILED)
    ]


def test_a_refused_compensation_moves_on() -> None:
    trace = run(
        saga(),
        {
            StepName.CHARGE_PAYMENT: "timeout",
            StepName.REFUND_PAYMENT: StepResult(Outcome.REFUSED, code="charge_not_found"),
        },
    )
    assert trace[-3:] == ["refund_payment", "release_stock", "finish:cancelled:step_failed"]


def test_a_failing_final_save_waits_and_tries_again() -> None:
    s = saga()
    for step in (StepName.RESERVE_STOCK, StepName.CHARGE_PAYMENT, StepName.CONFIRM):
        s.completed(RunStep(step), OK)
    finish = s.next_command()
    assert isinstance(finish, FinishOrder)
    s.failed(finish, "store down", NOW)
    assert s.next_command() == Wait(finish)
    s.completed(Wait(finish))
    assert s.next_command() == finish


@pytest.mark.parametrize("step", [StepName.RESERVE_STOCK, StepName.CONFIRM, StepName.RELEASE_STOCK])
def test_an_order_already_final_ends_the_saga_at_once(step: StepName) -> None:
    s = saga()
    s.completed(RunStep(step), StepResult(Outcome.ALREADY_FINAL))
    assert s.next_command() is None
    assert s.result is None


def test_failures_travel_with_every_later_activity() -> None:
    s = saga()
    s.completed(RunStep(StepName.RESERVE_STOCK), OK)
    s.failed(RunStep(StepName.CHARGE_PAYMENT), "timeout", NOW)
    command = s.next_command()
    assert command == RunStep(StepName.REFUND_PAYMENT)
    assert isinstance(command, RunStep)
    assert [f.name for f in s.activity_input(command).failures] == [StepName.CHARGE_PAYMENT]
