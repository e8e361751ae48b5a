"""Use cases with fake ports: idempotent placement and its crash recovery, lookups, and the saga's steps."""

import asyncio
from dataclasses import replace
from datetime import timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest
from opentelemetry import context as otel_context
from opentelemetry import propagate
from prometheus_client import CollectorRegistry

from contracts.orders import OrderCancelled, OrderCompleted
from orders.adapters import SagaMetrics
from orders.domain import (
    IdempotencyKeyReusedError,
    Order,
    OrderNotFoundError,
    OrderStatus,
    Reason,
    RequestedLine,
    StepName,
    StepRecord,
    StepStatus,
    UnknownSkuError,
)
from orders.handlers import (
    Orders,
    ParticipantRefusedError,
    ParticipantUnavailableError,
    PlaceOrder,
    SagaSteps,
    StartTiming,
)
from orders.saga import Finish, Outcome, SagaInput
from sidecart_kit.state import StoreUnavailableError

USER = UUID("6f1d0a8e-4a8b-4d8e-9a53-0c6b1a2b3c4d")
LINES = (RequestedLine("SKU-A", 2), RequestedLine("SKU-B", 1))


def place(key: str = "key-1", lines: tuple[RequestedLine, ...] = LINES, user: UUID = USER) -> PlaceOrder:
    return PlaceOrder(user_id=user, idempotency_key=key, lines=lines)


# --- placing ------------------------------------------------------------------------------------------------


async def test_place_creates_a_priced_pending_order_and_starts_its_saga(
    orders: Orders, repository: Any, workflows: Any
) -> None:
    order = await orders.place(place())

    assert order.status is OrderStatus.PENDING
    assert (order.total_cents, order.currency) == (2 * 500 + 1250, "EUR")
    assert repository.order(order.id) == order
    assert workflows.starts == [order.id]
    assert workflows.instances[order.id].lines == LINES
    assert repository.indexes[USER][0] == (order.id,)


async def test_an_order_is_counted_placed_once_however_often_its_request_is_retried(
    repository: Any, inventory: Any, workflows: Any
) -> None:
    registry = CollectorRegistry()
    metrics = SagaMetrics(registry)
    orders = Orders(repository, inventory, workflows, on_placed=metrics.order_placed)

    first = await orders.place(place("a"))
    assert await orders.place(place("a")) == first
    await orders.place(place("b"))

    assert registry.get_sample_value("orders_placed_total") == 2


async def test_the_saga_carries_the_trace_context_of_the_request_that_placed_the_order(
    orders: Orders, workflows: Any
) -> None:
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    token = otel_context.attach(propagate.extract({"traceparent": traceparent}))
    try:
        order = await orders.place(place())
    finally:
        otel_context.detach(token)

    assert workflows.instances[order.id].traceparent == traceparent


async def test_the_same_key_and_body_give_the_same_order_and_one_saga(orders: Orders, workflows: Any) -> None:
    first = await orders.place(place())
    again = await orders.place(place(lines=tuple(reversed(LINES))))  # line order does not matter

    assert again.id == first.id
    assert workflows.starts == [first.id]


async def test_the_same_key_with_another_body_is_refused(orders: Orders, workflows: Any) -> None:
    await orders.place(place())

    with pytest.raises(IdempotencyKeyReusedError):
        await orders.place(place(lines=(RequestedLine("SKU-A", 3),)))
    assert len(workflows.starts) == 1


async def test_keys_are_per_user(orders: Orders) -> None:
    mine = await orders.place(place())
    theirs = await orders.place(place(user=uuid4()))

    assert mine.id != theirs.id


async def test_unknown_skus_are_refused_before_anything_is_claimed(
    orders: Orders, repository: Any, workflows: Any
) -> None:
    lines = (RequestedLine("SKU-A", 1), RequestedLine("NOPE", 1), RequestedLine("GONE", 1))
    with pytest.raises(UnknownSkuError) as raised:
        await orders.place(place(lines=lines))

    assert raised.value.positions == (1, 2)
    assert repository.claims == {}
    assert workflows.starts == []


async def test_mixed_currencies_leave_the_total_to_the_reservation(orders: Orders) -> None:
    order = await orders.place(place(lines=(RequestedLine("SKU-A", 1), RequestedLine("SKU-USD", 1))))

    assert (order.total_cents, order.currency) == (None, None)
    assert [line.unit_price_cents for line in order.lines] == [500, 999]


async def test_concurrent_twins_make_one_order_and_one_saga(orders: Orders, workflows: Any) -> None:
    placed = await asyncio.gather(*(orders.place(place()) for _ in range(8)))

    assert len({order.id for order in placed}) == 1
    assert workflows.starts == [placed[0].id]


@pytest.mark.parametrize("crash_at", ["create_order", "save_index"])
async def test_a_retry_finishes_what_a_crashed_request_left(
    crash_at: str, orders: Orders, repository: Any, workflows: Any
) -> None:
    repository.fail_next.append(crash_at)
    with pytest.raises(StoreUnavailableError):
        await orders.place(place())

    order = await orders.place(place())

    assert workflows.starts == [order.id]
    assert repository.order(order.id).status is OrderStatus.PENDING
    assert repository.indexes[USER][0] == (order.id,)


async def test_a_failed_start_lets_the_retry_start_the_saga_at_once(orders: Orders, workflows: Any, clock: Any) -> None:
    workflows.fail_next_start = "refused"
    with pytest.raises(StoreUnavailableError):
        await orders.place(place())

    order = await orders.place(place())

    assert workflows.starts == [order.id]
    assert clock.slept == []


async def test_a_retry_starts_the_saga_a_crash_left_unstarted_once_the_grace_is_over(
    orders: Orders, repository: Any, workflows: Any, clock: Any
) -> None:
    workflows.fail_next_start = "unknown"  # as if the request died between the order doc and the start
    with pytest.raises(StoreUnavailableError):
        await orders.place(place())

    clock.advance(20)
    order = await orders.place(place())

    assert workflows.starts == [order.id]
    assert clock.slept == []


async def test_within_the_grace_a_retry_waits_then_asks_to_come_back(
    orders: Orders, workflows: Any, clock: Any
) -> None:
    workflows.fail_next_start = "unknown"
    with pytest.raises(StoreUnavailableError):
        await orders.place(place())

    # Its creator might still be starting it: starting it here too could run the saga twice.
    with pytest.raises(StoreUnavailableError, match="being started"):
        await orders.place(place())
    assert workflows.starts == []
    assert sum(clock.slept) == pytest.approx(3.0)


async def test_a_waiting_retry_answers_as_soon_as_the_saga_appears(
    orders: Orders, repository: Any, workflows: Any, clock: Any
) -> None:
    workflows.fail_next_start = "unknown"
    with pytest.raises(StoreUnavailableError):
        await orders.place(place())
    (order_id,) = [order_id for order_id, _ in repository.orders.items()]

    async def creator_finishes() -> None:
        await asyncio.sleep(0)
        workflows.instances[order_id] = None

    found, _ = await asyncio.gather(orders.place(place()), creator_finishes())

    assert found.id == order_id
    assert workflows.starts == []


async def test_a_retry_does_not_start_a_saga_that_has_moved_on(
    orders: Orders, repository: Any, workflows: Any, clock: Any
) -> None:
    order = await orders.place(place())
    workflows.instances.clear()  # e.g. purged after it ended
    repository.put(repository.order(order.id).complete(clock()))
    clock.advance(3600)

    again = await orders.place(place())

    assert again.status is OrderStatus.COMPLETED
    assert workflows.starts == [order.id]  # only the first


async def test_a_retry_wakes_a_saga_whose_instance_was_saved_but_never_ran(
    orders: Orders, workflows: Any, clock: Any
) -> None:
    order = await orders.place(place())
    workflows.stranded.add(order.id)  # the app died while daprd created the instance: its start was lost

    clock.advance(5)
    await orders.place(place())
    assert workflows.woken == []  # within the grace it may simply not have run yet

    clock.advance(20)
    again = await orders.place(place())

    assert again.id == order.id
    assert workflows.woken == [order.id]
    assert workflows.starts == [order.id]  # woken, never started twice


async def test_reading_an_overdue_order_repairs_its_start(
    orders: Orders, repository: Any, workflows: Any, clock: Any
) -> None:
    stranded = await orders.place(place("key-1"))
    workflows.stranded.add(stranded.id)
    workflows.fail_next_start = "unknown"
    with pytest.raises(StoreUnavailableError):
        await orders.place(place("key-2"))
    (unstarted,) = [order_id for order_id in repository.orders if order_id != stranded.id]

    assert (await orders.get(USER, stranded.id)).id == stranded.id
    assert workflows.woken == []  # nothing is overdue yet

    clock.advance(20)
    await orders.get(USER, stranded.id)
    await orders.get(USER, stranded.id)  # woken once per grace period, however often it is read
    await orders.get(USER, unstarted)

    assert workflows.woken == [stranded.id]
    assert workflows.starts == [stranded.id, unstarted]


async def test_a_read_that_cannot_repair_the_start_still_answers(orders: Orders, workflows: Any, clock: Any) -> None:
    order = await orders.place(place())
    workflows.stranded.add(order.id)
    clock.advance(20)

    async def sidecar_down(order_id: UUID) -> None:
        raise StoreUnavailableError("wake workflow: sidecar down")

    workflows.wake = sidecar_down

    assert (await orders.get(USER, order.id)).status is OrderStatus.PENDING


async def test_the_takeover_of_a_start_happens_once(
    orders: Orders, repository: Any, workflows: Any, clock: Any
) -> None:
    workflows.fail_next_start = "unknown"
    with pytest.raises(StoreUnavailableError):
        await orders.place(place())
    clock.advance(20)

    placed = await asyncio.gather(*(orders.place(place()) for _ in range(5)), return_exceptions=True)

    orders_placed = [p for p in placed if isinstance(p, Order)]
    assert len(workflows.starts) == 1
    assert {o.id for o in orders_placed} == {workflows.starts[0]}


async def test_get_answers_only_the_owner(orders: Orders) -> None:
    order = await orders.place(place())

    assert (await orders.get(USER, order.id)).id == order.id
    with pytest.raises(OrderNotFoundError):
        await orders.get(uuid4(), order.id)
    with pytest.raises(OrderNotFoundError):
        await orders.get(USER, uuid4())


async def test_list_is_newest_first_and_bounded(orders: Orders, clock: Any) -> None:
    placed = []
    for n in range(5):
        placed.append(await orders.place(place(key=f"key-{n}")))
        clock.advance(1)

    listed = await orders.list_orders(USER)

    assert [order.id for order in listed] == [order.id for order in reversed(placed)][:3]  # index_limit=3
    assert await orders.list_orders(uuid4()) == []


async def test_a_lost_first_index_write_reported_as_a_failure_is_retried(orders: Orders, repository: Any) -> None:
    other = await orders.place(place(key="other"))
    repository.indexes.pop(USER)

    async def lost_race(user_id: UUID, order_ids: Any, etag: str | None) -> bool:
        # Another request created the index first; Redis answers the lost insert with a 500.
        repository.indexes[user_id] = ((other.id,), 1)
        repository.save_index = original
        raise StoreUnavailableError("500 ERR_STATE_SAVE")

    original = repository.save_index
    repository.save_index = lost_race
    order = await orders.place(place())

    assert set(repository.indexes[USER][0]) == {order.id, other.id}


# --- the saga's steps ---------------------------------------------------------------------------------------


async def stored_order(orders: Orders) -> tuple[Order, SagaInput]:
    order = await orders.place(place())
    return order, SagaInput(order_id=order.id, user_id=order.user_id, lines=LINES)


async def test_reserve_records_the_prices_and_step(
    orders: Orders, steps: SagaSteps, repository: Any, inventory: Any
) -> None:
    order, saga = await stored_order(orders)

    result = await steps.reserve_stock(saga)

    assert (result.outcome, result.total_cents, result.currency) == (Outcome.SUCCEEDED, 2250, "EUR")
    saved = repository.order(order.id)
    assert saved.status is OrderStatus.RESERVING
    assert [(s.name, s.status) for s in saved.steps] == [(StepName.RESERVE_STOCK, StepStatus.SUCCEEDED)]
    assert inventory.calls[-1] == ("reserve", order.id)


async def test_a_refusal_is_a_result_and_is_recorded(
    orders: Orders, steps: SagaSteps, repository: Any, inventory: Any
) -> None:
    order, saga = await stored_order(orders)
    inventory.refuse["reserve"] = ParticipantRefusedError(409, "out_of_stock", "SKU-A: 1 left")

    result = await steps.reserve_stock(saga)

    assert (result.outcome, result.code, result.detail) == (Outcome.REFUSED, "out_of_stock", "SKU-A: 1 left")
    step = repository.order(order.id).steps[0]
    assert (step.name, step.status, step.detail) == (
        StepName.RESERVE_STOCK,
        StepStatus.FAILED,
        "out_of_stock: SKU-A: 1 left",
    )


async def test_a_transient_failure_raises_for_the_workflow_to_retry(
    orders: Orders, steps: SagaSteps, repository: Any, payments: Any
) -> None:
    order, saga = await stored_order(orders)
    payments.unavailable.add("charge")

    with pytest.raises(ParticipantUnavailableError):
        await steps.charge_payment(replace(saga, total_cents=2250, currency="EUR"))
    assert repository.order(order.id).steps == ()


async def test_charge_charges_the_reserved_total(
    orders: Orders, steps: SagaSteps, repository: Any, payments: Any
) -> None:
    order, saga = await stored_order(orders)
    charge = replace(saga, total_cents=4321, currency="EUR")

    assert (await steps.charge_payment(charge)).outcome is Outcome.SUCCEEDED
    assert payments.calls == [("charge", order.id, 4321)]
    assert repository.order(order.id).status is OrderStatus.CHARGING


async def test_steps_record_the_failures_the_workflow_reports(
    orders: Orders, steps: SagaSteps, repository: Any, clock: Any
) -> None:
    order, saga = await stored_order(orders)
    failure = StepRecord(StepName.CHARGE_PAYMENT, StepStatus.FAILED, clock(), "payments: no answer")

    await steps.refund_payment(replace(saga, failures=(failure,)))

    assert [(s.name, s.status) for s in repository.order(order.id).steps] == [
        (StepName.CHARGE_PAYMENT, StepStatus.FAILED),
        (StepName.REFUND_PAYMENT, StepStatus.SUCCEEDED),
    ]


async def test_steps_do_nothing_once_the_order_has_ended(
    orders: Orders, steps: SagaSteps, repository: Any, inventory: Any, payments: Any, clock: Any
) -> None:
    order, saga = await stored_order(orders)
    repository.put(repository.order(order.id).complete(clock()))
    inventory.calls.clear()

    for step in (steps.reserve_stock, steps.confirm, steps.release_stock, steps.refund_payment):
        assert (await step(saga)).outcome is Outcome.ALREADY_FINAL
    assert inventory.calls == []
    assert payments.calls == []


async def test_finish_saves_and_publishes_once(orders: Orders, steps: SagaSteps, repository: Any) -> None:
    order, saga = await stored_order(orders)
    finish = replace(saga, finish=Finish(OrderStatus.CANCELLED, Reason.OUT_OF_STOCK, "x"))

    first = await steps.finish_order(finish)
    replayed = await steps.finish_order(finish)

    assert (first.outcome, replayed.outcome) == (Outcome.SUCCEEDED, Outcome.ALREADY_FINAL)
    assert len(repository.events) == 1
    event = repository.events[0]
    assert isinstance(event, OrderCancelled)
    assert (event.order_id, event.reason, event.detail) == (order.id, "out_of_stock", "x")
    saved = repository.order(order.id)
    assert (saved.status, saved.reason) == (OrderStatus.CANCELLED, Reason.OUT_OF_STOCK)


async def test_the_final_event_is_stamped_with_the_workflow_time(
    orders: Orders, steps: SagaSteps, repository: Any, clock: Any
) -> None:
    _, saga = await stored_order(orders)
    await steps.reserve_stock(saga)
    decided = clock() + timedelta(seconds=2)
    clock.advance(60)  # the activity runs late (a retry, a restart): the event still says when it was decided

    await steps.finish_order(replace(saga, finish=Finish(OrderStatus.COMPLETED), at=decided))

    event = repository.events[0]
    assert isinstance(event, OrderCompleted)
    assert event.completed_at == decided


async def test_concurrent_twin_finishes_publish_once(orders: Orders, steps: SagaSteps, repository: Any) -> None:
    _, saga = await stored_order(orders)
    await steps.reserve_stock(saga)
    finish = replace(saga, finish=Finish(OrderStatus.COMPLETED))

    results = await asyncio.gather(steps.finish_order(finish), steps.finish_order(finish))

    assert sorted(r.outcome for r in results) == [Outcome.ALREADY_FINAL, Outcome.SUCCEEDED]
    assert len(repository.events) == 1
    assert isinstance(repository.events[0], OrderCompleted)
    assert repository.events[0].total_cents == 2250


async def test_finish_rereads_after_a_conflict(orders: Orders, steps: SagaSteps, repository: Any, clock: Any) -> None:
    order, saga = await stored_order(orders)
    await steps.reserve_stock(saga)
    finish = replace(saga, finish=Finish(OrderStatus.COMPLETED))
    real_finish = repository.finish_order

    async def conflict_once(*args: Any) -> bool:
        repository.finish_order = real_finish
        repository.put(repository.order(order.id).advance(OrderStatus.CHARGING, clock()))  # changed meanwhile
        return False

    repository.finish_order = conflict_once

    assert (await steps.finish_order(finish)).outcome is Outcome.SUCCEEDED
    assert repository.order(order.id).status is OrderStatus.COMPLETED
    assert len(repository.events) == 1


async def test_a_step_update_survives_a_concurrent_change(
    orders: Orders, steps: SagaSteps, repository: Any, clock: Any
) -> None:
    order, saga = await stored_order(orders)
    repository.before_save = lambda: repository.put(repository.order(order.id).with_workflow_requested(clock()))

    await steps.confirm(saga)

    assert [s.name for s in repository.order(order.id).steps] == [StepName.CONFIRM]


async def test_a_missing_order_doc_is_a_bug_not_a_result(steps: SagaSteps) -> None:
    saga = SagaInput(order_id=uuid4(), user_id=USER, lines=LINES)
    with pytest.raises(RuntimeError, match="no order doc"):
        await steps.reserve_stock(saga)


async def test_without_a_grace_a_retry_starts_an_unstarted_saga_at_once(
    repository: Any, inventory: Any, workflows: Any, clock: Any
) -> None:
    impatient = Orders(
        repository, inventory, workflows, timing=StartTiming(grace=timedelta(0), wait=timedelta(0)), clock=clock
    )
    workflows.fail_next_start = "unknown"
    with pytest.raises(StoreUnavailableError):
        await impatient.place(place())

    order = await impatient.place(place())

    assert workflows.starts == [order.id]
