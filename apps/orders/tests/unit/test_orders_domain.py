"""The rules in plain Python: order transitions, idempotency fingerprints, and every path of the saga."""

from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest

from contracts.orders import OrderCancelled, OrderCompleted
from orders.domain import (
    Finish,
    FinishOrder,
    Line,
    Order,
    OrderStatus,
    Outcome,
    Product,
    Reason,
    RequestedLine,
    RunStep,
    Saga,
    SagaInput,
    StepName,
    StepRecord,
    StepResult,
    StepStatus,
    Wait,
    duplicate_sku_positions,
    idempotency_key_is_valid,
    key_digest,
    price_lines,
    reason_for_refusal,
    request_fingerprint,
)

NOW = datetime(2026, 1, 1, tzinfo=UTC)
OK = StepResult(Outcome.SUCCEEDED)


def new_order() -> Order:
    return Order.place(
        order_id=uuid4(),
        user_id=uuid4(),
        lines=[Line("SKU-A", 2, 500)],
        total_cents=1000,
        currency="EUR",
        now=NOW,
    )


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


# --- idempotency -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("key", "valid"), [("a", True), ("k" * 128, True), ("k" * 129, False), ("", False)])
def test_idempotency_key_length(key: str, valid: bool) -> None:
    assert idempotency_key_is_valid(key) is valid


@pytest.mark.parametrize("key", ["tab\tkey", "line\nbreak", "émoji", "nul\x00"])
def test_idempotency_key_must_be_printable_ascii(key: str) -> None:
    assert not idempotency_key_is_valid(key)


def test_key_digest_hides_the_key() -> None:
    assert key_digest("secret-key") != "secret-key"
    assert len(key_digest("secret-key")) == 64
    assert key_digest("a") == key_digest("a") != key_digest("b")


def test_fingerprint_ignores_line_order_but_not_quantities() -> None:
    one = [RequestedLine("A", 1), RequestedLine("B", 2)]
    assert request_fingerprint(one) == request_fingerprint(list(reversed(one)))
    assert request_fingerprint(one) != request_fingerprint([RequestedLine("A", 1), RequestedLine("B", 3)])
    assert request_fingerprint(one) != request_fingerprint([RequestedLine("A", 1)])


def test_duplicate_skus_are_named_by_position() -> None:
    assert duplicate_sku_positions(["A", "B", "A", "C", "B"]) == [2, 4]
    assert duplicate_sku_positions(["A", "B"]) == []


def test_price_lines_totals_one_currency_only() -> None:
    products = {"A": Product("A", 500, "EUR"), "B": Product("B", 250, "EUR"), "U": Product("U", 100, "USD")}
    lines, total, currency = price_lines([RequestedLine("A", 2), RequestedLine("B", 1)], products)
    assert (total, currency) == (1250, "EUR")
    assert lines == (Line("A", 2, 500), Line("B", 1, 250))
    assert price_lines([RequestedLine("A", 1), RequestedLine("U", 1)], products)[1:] == (None, None)


# --- the order ---------------------------------------------------------------------------------------------------


def test_status_only_moves_forward() -> None:
    order = new_order()
    charging = order.advance(OrderStatus.CHARGING, NOW)
    assert charging.status is OrderStatus.CHARGING
    assert charging.advance(OrderStatus.RESERVING, NOW) is charging
    cancelled = charging.cancel(Reason.OUT_OF_STOCK, "x", NOW)
    assert cancelled.advance(OrderStatus.CHARGING, NOW) is cancelled


def test_record_keeps_one_entry_per_step_in_first_seen_order() -> None:
    order = new_order()
    failed = StepRecord(StepName.RELEASE_STOCK, StepStatus.FAILED, NOW, "timeout")
    order = order.record([StepRecord(StepName.RESERVE_STOCK, StepStatus.SUCCEEDED, NOW)], NOW)
    order = order.record([failed], NOW)
    later = NOW + timedelta(minutes=5)
    order = order.record([StepRecord(StepName.RELEASE_STOCK, StepStatus.SUCCEEDED, later, "released")], later)

    assert [(s.name, s.status) for s in order.steps] == [
        (StepName.RESERVE_STOCK, StepStatus.SUCCEEDED),
        (StepName.RELEASE_STOCK, StepStatus.SUCCEEDED),
    ]
    assert order.record([order.steps[0]], later) is order  # nothing new: the same object, nothing to save


def test_start_is_overdue_only_for_a_pending_order_after_the_grace() -> None:
    order = new_order()
    grace = timedelta(seconds=15)
    assert not order.start_is_overdue(NOW + timedelta(seconds=14), grace)
    assert order.start_is_overdue(NOW + timedelta(seconds=15), grace)
    assert not order.advance(OrderStatus.RESERVING, NOW).start_is_overdue(NOW + timedelta(hours=1), grace)
    retried = order.with_workflow_requested(NOW + timedelta(seconds=20))
    assert not retried.start_is_overdue(NOW + timedelta(seconds=21), grace)


def test_final_events() -> None:
    order = new_order()
    completed = order.complete(NOW + timedelta(seconds=1)).final_event()
    assert isinstance(completed, OrderCompleted)
    assert (completed.order_id, completed.total_cents, completed.currency) == (order.id, 1000, "EUR")
    assert completed.lines[0].unit_price_cents == 500
    assert completed.completed_at == NOW + timedelta(seconds=1)

    cancelled = order.cancel(Reason.INSUFFICIENT_FUNDS, "charge_payment: insufficient_funds", NOW).final_event()
    assert isinstance(cancelled, OrderCancelled)
    assert (cancelled.reason, cancelled.detail) == ("insufficient_funds", "charge_payment: insufficient_funds")

    with pytest.raises(ValueError, match="not final"):
        order.final_event()


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


# --- the saga ------------------------------------------------------------------------------------------------


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
        (StepName.CONFIRM, ["reserve_stock", "charge_payment", "confirm", "refund_payment", "release_stock"]),
    ],
)
def test_a_step_that_keeps_failing_is_compensated(failing: StepName, expected: list[str]) -> None:
    s = saga()
    trace = run(s, {failing: "payments: no answer (ReadTimeout)"})
    assert trace == [*expected, "finish:cancelled:step_failed"]
    assert s.result is not None
    assert s.result.detail == f"{failing}: payments: no answer (ReadTimeout)"
    assert [(f.name, f.status) for f in s.failures] == [(failing, StepStatus.FAILED)]


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
            StepName.CONFIRM: "timeout",
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
