"""The rules in plain Python: order transitions and idempotency fingerprints."""

from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest

from contracts.orders import OrderCancelled, OrderCompleted
from orders.domain import (
    Line,
    Order,
    OrderStatus,
    Product,
    Reason,
    RequestedLine,
    StepName,
    StepRecord,
    StepStatus,
    duplicate_sku_positions,
    idempotency_key_is_valid,
    key_digest,
    price_lines,
    request_fingerprint,
)

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def new_order() -> Order:
    return Order.place(
        order_id=uuid4(),
        user_id=uuid4(),
        lines=[Line("SKU-A", 2, 500)],
        total_cents=1000,
        currency="EUR",
        now=NOW,
    )


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
