"""Reserving, releasing and committing under concurrency and crashes, against a fake store that enforces ETags."""

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import pytest

from inventory.domain import (
    DEMO_CATALOGUE,
    OutOfStockError,
    Product,
    ProductExistsError,
    ProductNotFoundError,
    RequestedLine,
    Reservation,
    ReservationCommittedError,
    ReservationMismatchError,
    ReservationNotFoundError,
    ReservationPendingError,
    ReservationRefusedError,
    ReservationReleasedError,
    ReservationStatus,
    ReservedLine,
    Shortage,
    UnknownSkuError,
    product_key,
    reservation_key,
)
from inventory.handlers import (
    CreateProduct,
    Inventory,
    ReserveStock,
)
from inventory.settings import Settings
from sidecart_kit.retry import RetryPolicy
from sidecart_kit.state import StoreUnavailableError, Versioned
from sidecart_kit.testing import FakeStateStore, SimulatedCrash, backoffs_before_contention, crash_at_every_write

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def _inventory(store: Any, sleep: Any, **options: Any) -> Inventory:
    options.setdefault("retry", Settings().update_retry())
    return Inventory(store, clock=lambda: NOW, sleep=sleep, **options)


async def _product(inventory: Inventory, sku: str, stock: int, price_cents: int = 1000) -> None:
    await inventory.create_product(CreateProduct(sku, f"name of {sku}", price_cents, "EUR", stock))


def _order(*lines: tuple[str, int], order_id: UUID | None = None) -> ReserveStock:
    return ReserveStock(order_id or uuid.uuid4(), tuple(RequestedLine(sku, quantity) for sku, quantity in lines))


def _stock(store: Any, sku: str) -> Product:
    return Product.from_document(store.document(product_key(sku)))


def _status(store: Any, order_id: UUID) -> ReservationStatus:
    return Reservation.from_document(store.document(reservation_key(order_id))).status


def _assert_balanced(store: Any) -> None:
    for key, (document, _) in store.documents.items():
        if key.startswith("product:"):
            product = Product.from_document(document)
            assert product.available >= 0
            assert product.available + product.reserved + product.sold == product.initial, product
            assert product.reserved == sum(hold.quantity for hold in product.holds.values()), product


# --- catalogue -------------------------------------------------------------------------------------------------


async def test_products_are_listed_in_the_order_they_were_added(store: Any, sleep: Any) -> None:
    inventory = _inventory(store, sleep)
    await _product(inventory, "B-1", 3)
    await _product(inventory, "A-1", 4)
    assert [(product.sku, product.available) for product in await inventory.list_products()] == [("B-1", 3), ("A-1", 4)]
    assert (await inventory.get_product("A-1")).initial == 4


async def test_a_sku_is_created_once(store: Any, sleep: Any) -> None:
    inventory = _inventory(store, sleep)
    await _product(inventory, "A-1", 4)
    with pytest.raises(ProductExistsError):
        await _product(inventory, "A-1", 9)
    assert _stock(store, "A-1").initial == 4
    assert [product.sku for product in await inventory.list_products()] == ["A-1"]


async def test_an_unknown_product_is_not_found(store: Any, sleep: Any) -> None:
    with pytest.raises(ProductNotFoundError):
        await _inventory(store, sleep).get_product("NOPE")


async def test_a_listed_sku_without_its_product_is_skipped(store: Any, sleep: Any) -> None:
    inventory = _inventory(store, sleep)
    store.crash_after_writes = 1  # the catalogue is written, the product is not
    with pytest.raises(SimulatedCrash):
        await _product(inventory, "A-1", 4)
    assert await inventory.list_products() == []
    await _product(inventory, "A-1", 4)  # the retry completes it
    assert [product.sku for product in await inventory.list_products()] == ["A-1"]


async def test_seeding_from_several_replicas_at_once_creates_each_product_once(store: Any, sleep: Any) -> None:
    store.interleave = True
    inventory = _inventory(store, sleep)
    created = await asyncio.gather(*(inventory.seed(DEMO_CATALOGUE, 1000) for _ in range(3)))
    assert sum(created) == len(DEMO_CATALOGUE)
    assert await inventory.seed(DEMO_CATALOGUE, 1000) == 0
    products = await inventory.list_products()
    assert [product.sku for product in products] == [demo.sku for demo in DEMO_CATALOGUE]
    assert {product.available for product in products} == {1000}
    assert all(500 <= product.price_cents <= 6000 and product.currency == "EUR" for product in products)


# --- reserve ---------------------------------------------------------------------------------------------------


async def test_reserve_holds_every_line_at_current_prices(store: Any, sleep: Any) -> None:
    inventory = _inventory(store, sleep)
    await _product(inventory, "A-1", 5, price_cents=1200)
    await _product(inventory, "B-1", 2, price_cents=500)
    command = _order(("A-1", 2), ("B-1", 2))
    reservation = await inventory.reserve(command)
    assert reservation.status is ReservationStatus.RESERVED
    assert reservation.lines == (ReservedLine("A-1", 2, 1200), ReservedLine("B-1", 2, 500))
    assert (reservation.total_cents, reservation.currency) == (3400, "EUR")
    assert (_stock(store, "A-1").available, _stock(store, "A-1").reserved) == (3, 2)
    assert (_stock(store, "B-1").available, _stock(store, "B-1").reserved) == (0, 2)
    _assert_balanced(store)


async def test_reserve_twice_holds_once_and_answers_the_same(store: Any, sleep: Any) -> None:
    inventory = _inventory(store, sleep)
    await _product(inventory, "A-1", 5)
    command = _order(("A-1", 2))
    first = await inventory.reserve(command)
    writes = store.writes
    assert await inventory.reserve(command) == first
    assert store.writes == writes
    assert _stock(store, "A-1").reserved == 2


@pytest.mark.parametrize("replicas", [1, 3])
async def test_twenty_concurrent_reservations_for_five_units_hold_exactly_five(
    store: Any, sleep: Any, replicas: int
) -> None:
    store.interleave = True
    inventories = [_inventory(store, sleep) for _ in range(replicas)]  # each replica has its own key locks
    await _product(inventories[0], "A-1", 5)
    results = await asyncio.gather(
        *(inventories[number % replicas].reserve(_order(("A-1", 1))) for number in range(20)), return_exceptions=True
    )
    assert sum(isinstance(result, Reservation) for result in results) == 5
    assert sum(isinstance(result, OutOfStockError) for result in results) == 15
    assert (_stock(store, "A-1").available, _stock(store, "A-1").reserved) == (0, 5)
    # Within a replica the calls queue per key; between replicas they race on the ETag.
    assert (store.conflicts > 0) is (replicas > 1)
    _assert_balanced(store)


async def test_a_line_short_at_hold_time_gives_back_the_lines_held_before(store: Any, sleep: Any) -> None:
    store.interleave = True
    inventory, replica = _inventory(store, sleep), _inventory(store, sleep)
    await _product(inventory, "A-1", 100)
    await _product(inventory, "B-1", 3)
    commands = [_order(("A-1", 2), ("B-1", 1)) for _ in range(10)]
    results = await asyncio.gather(
        *((inventory, replica)[number % 2].reserve(command) for number, command in enumerate(commands)),
        return_exceptions=True,
    )
    assert sum(isinstance(result, Reservation) for result in results) == 3
    assert (_stock(store, "A-1").reserved, _stock(store, "B-1").reserved) == (6, 3)
    _assert_balanced(store)
    refused = [command for command, result in zip(commands, results, strict=True) if isinstance(result, Exception)]
    assert all(_status(store, command.order_id) is ReservationStatus.REFUSED for command in refused)


async def test_a_refusal_is_recorded_and_repeated_even_once_stock_is_back(store: Any, sleep: Any) -> None:
    inventory = _inventory(store, sleep)
    await _product(inventory, "A-1", 1)
    await _product(inventory, "B-1", 1)
    holder = _order(("A-1", 1))
    await inventory.reserve(holder)
    refused = _order(("B-1", 1), ("A-1", 1))
    with pytest.raises(OutOfStockError) as first:
        await inventory.reserve(refused)
    assert first.value.shortages == (Shortage("A-1", 1, 0),)
    assert (_stock(store, "A-1").reserved, _stock(store, "B-1").reserved) == (1, 0)
    await inventory.release(holder.order_id)
    with pytest.raises(OutOfStockError) as again:
        await inventory.reserve(refused)
    assert again.value.shortages == first.value.shortages
    assert _stock(store, "A-1").available == 1


async def test_unknown_skus_are_refused_and_not_recorded(store: Any, sleep: Any) -> None:
    inventory = _inventory(store, sleep)
    await _product(inventory, "A-1", 1)
    command = _order(("A-1", 1), ("NOPE", 1))
    with pytest.raises(UnknownSkuError) as raised:
        await inventory.reserve(command)
    assert raised.value.skus == ("NOPE",)
    assert reservation_key(command.order_id) not in store.documents


async def test_the_same_order_with_other_lines_is_a_mismatch(store: Any, sleep: Any) -> None:
    inventory = _inventory(store, sleep)
    await _product(inventory, "A-1", 5)
    command = _order(("A-1", 1))
    await inventory.reserve(command)
    with pytest.raises(ReservationMismatchError):
        await inventory.reserve(_order(("A-1", 2), order_id=command.order_id))
    assert _stock(store, "A-1").reserved == 1


# --- release ---------------------------------------------------------------------------------------------------


async def test_release_gives_the_units_back_once(store: Any, sleep: Any) -> None:
    inventory = _inventory(store, sleep)
    await _product(inventory, "A-1", 5)
    command = _order(("A-1", 2))
    await inventory.reserve(command)
    for _ in range(3):
        assert (await inventory.release(command.order_id)).status is ReservationStatus.RELEASED
    assert (_stock(store, "A-1").available, _stock(store, "A-1").reserved) == (5, 0)
    with pytest.raises(ReservationReleasedError):
        await inventory.reserve(command)
    _assert_balanced(store)


async def test_release_of_an_unknown_order_leaves_a_tombstone_that_refuses_a_late_reserve(
    store: Any, sleep: Any
) -> None:
    inventory = _inventory(store, sleep)
    await _product(inventory, "A-1", 5)
    command = _order(("A-1", 2))
    assert (await inventory.release(command.order_id)).status is ReservationStatus.RELEASED
    with pytest.raises(ReservationReleasedError):
        await inventory.reserve(command)
    assert _stock(store, "A-1").available == 5


async def test_release_of_a_refused_order_answers_released(store: Any, sleep: Any) -> None:
    inventory = _inventory(store, sleep)
    await _product(inventory, "A-1", 1)
    command = _order(("A-1", 2))
    with pytest.raises(OutOfStockError):
        await inventory.reserve(command)
    assert (await inventory.release(command.order_id)).status is ReservationStatus.REFUSED
    assert _stock(store, "A-1").available == 1


async def test_a_committed_order_cannot_be_released(store: Any, sleep: Any) -> None:
    inventory = _inventory(store, sleep)
    await _product(inventory, "A-1", 5)
    command = _order(("A-1", 2))
    await inventory.reserve(command)
    await inventory.commit(command.order_id)
    with pytest.raises(ReservationCommittedError):
        await inventory.release(command.order_id)
    assert _stock(store, "A-1").sold == 2


async def test_reserve_and_release_racing_leave_nothing_held(store: Any, sleep: Any) -> None:
    store.interleave = True
    inventory = _inventory(store, sleep)
    await _product(inventory, "A-1", 100)
    await _product(inventory, "B-1", 100)
    replica = _inventory(store, sleep)
    commands = [_order(("A-1", 2), ("B-1", 1)) for _ in range(20)]
    calls = [call for command in commands for call in (inventory.reserve(command), replica.release(command.order_id))]
    await asyncio.gather(*calls, return_exceptions=True)
    assert (_stock(store, "A-1").available, _stock(store, "B-1").available) == (100, 100)
    assert all(_status(store, command.order_id) is ReservationStatus.RELEASED for command in commands)
    _assert_balanced(store)


# --- commit ----------------------------------------------------------------------------------------------------


async def test_commit_sells_the_held_units_once(store: Any, sleep: Any) -> None:
    inventory = _inventory(store, sleep)
    await _product(inventory, "A-1", 5)
    command = _order(("A-1", 2))
    await inventory.reserve(command)
    for _ in range(3):
        assert (await inventory.commit(command.order_id)).status is ReservationStatus.COMMITTED
    product = _stock(store, "A-1")
    assert (product.available, product.reserved, product.sold) == (3, 0, 2)
    # A late replay of the reservation answers as before, without holding anything again.
    assert (await inventory.reserve(command)).lines == (ReservedLine("A-1", 2, 1000),)
    assert _stock(store, "A-1") == product


@pytest.mark.parametrize(
    ("prepare", "error"),
    [
        ("nothing", ReservationNotFoundError),
        ("release", ReservationReleasedError),
        ("refuse", ReservationRefusedError),
        ("reserving", ReservationPendingError),
    ],
)
async def test_commit_is_refused_unless_reserved(store: Any, sleep: Any, prepare: str, error: type[Exception]) -> None:
    inventory = _inventory(store, sleep)
    await _product(inventory, "A-1", 1)
    command = _order(("A-1", 2))
    if prepare == "release":
        await inventory.release(command.order_id)
    elif prepare == "refuse":
        with pytest.raises(OutOfStockError):
            await inventory.reserve(command)
    elif prepare == "reserving":
        pending = Reservation(
            command.order_id, ReservationStatus.RESERVING, (ReservedLine("A-1", 1, 1000),), "EUR", NOW, NOW
        )
        await store.save(reservation_key(command.order_id), pending.to_document(), None)
    with pytest.raises(error):
        await inventory.commit(command.order_id)


async def test_a_stale_duplicate_reservation_does_not_sell_twice(store: Any, sleep: Any) -> None:
    """A reserve call that stalls after opening the order resumes only after the order is committed."""
    inventory = _inventory(store, sleep)
    await _product(inventory, "A-1", 5)
    command = _order(("A-1", 2))
    stalled, resume = asyncio.Event(), asyncio.Event()
    original_get = store.get

    async def stalling_get(key: str) -> Versioned | None:
        task = asyncio.current_task()
        opened = reservation_key(command.order_id) in store.documents
        stale = task is not None and task.get_name() == "stale"
        if key == product_key("A-1") and opened and stale and not resume.is_set():
            stalled.set()
            await resume.wait()
        result: Versioned | None = await original_get(key)
        return result

    store.get = stalling_get
    # The first call runs on another replica (its own key locks), stalled, say, by a long GC pause.
    stale = asyncio.create_task(_inventory(store, sleep).reserve(command), name="stale")
    await stalled.wait()  # the first call opened the order and stalls before holding its line
    await inventory.reserve(command)  # the retry completes the reservation...
    await inventory.commit(command.order_id)  # ...the saga commits it...
    resume.set()  # ...and only then the first call goes on
    # The first call holds A-1 again (the sale removed the hold), finds the order committed, and gives back the
    # hold the commit does not name: sold once, nothing left held.
    assert (await stale).status is ReservationStatus.COMMITTED
    product = _stock(store, "A-1")
    assert (product.available, product.reserved, product.sold, dict(product.holds)) == (3, 0, 2, {})


# --- crashes between any two writes ----------------------------------------------------------------------------


async def _crash_everywhere(
    sleep: Any,
    setup: Callable[[Inventory, Any], Awaitable[object]],
    action: Callable[[Inventory], Awaitable[object]],
    recover: Callable[[Inventory], Awaitable[object]],
    check: Callable[[Any], None],
) -> int:
    """Runs `action` crashing before its 1st, 2nd, ... write, then `recover`, and checks the outcome each time."""

    async def prepare(store: FakeStateStore) -> Inventory:
        inventory = _inventory(store, sleep)
        await setup(inventory, store)
        return inventory

    return await crash_at_every_write(prepare, action, recover, check, invariant=_assert_balanced)


ORDER_ID = uuid.UUID("7d7f5f3e-1f0a-4a51-9d43-1a5f3f0b2c11")
TWO_LINES = _order(("A-1", 2), ("B-1", 1), order_id=ORDER_ID)


async def _two_products(inventory: Inventory, store: Any) -> None:
    await _product(inventory, "A-1", 5)
    await _product(inventory, "B-1", 5)


def _held(store: Any) -> tuple[int, int]:
    return _stock(store, "A-1").reserved, _stock(store, "B-1").reserved


async def test_a_crashed_reservation_is_completed_by_its_retry(sleep: Any) -> None:
    def check(store: Any) -> None:
        assert _held(store) == (2, 1)
        assert _status(store, ORDER_ID) is ReservationStatus.RESERVED

    points = await _crash_everywhere(
        sleep, _two_products, lambda i: i.reserve(TWO_LINES), lambda i: i.reserve(TWO_LINES), check
    )
    assert points == 4  # record, two holds, reserved


async def test_a_crashed_reservation_is_undone_by_the_compensation(sleep: Any) -> None:
    def check(store: Any) -> None:
        assert _held(store) == (0, 0)
        assert _status(store, ORDER_ID) is ReservationStatus.RELEASED

    await _crash_everywhere(sleep, _two_products, lambda i: i.reserve(TWO_LINES), lambda i: i.release(ORDER_ID), check)


async def test_a_crashed_release_is_completed_by_its_retry(sleep: Any) -> None:
    async def reserved(inventory: Inventory, store: Any) -> None:
        await _two_products(inventory, store)
        await inventory.reserve(TWO_LINES)

    def check(store: Any) -> None:
        assert _held(store) == (0, 0)
        assert (_stock(store, "A-1").available, _stock(store, "B-1").available) == (5, 5)

    points = await _crash_everywhere(
        sleep, reserved, lambda i: i.release(ORDER_ID), lambda i: i.release(ORDER_ID), check
    )
    assert points == 3  # released, two products


async def test_a_crashed_commit_is_completed_by_its_retry(sleep: Any) -> None:
    async def reserved(inventory: Inventory, store: Any) -> None:
        await _two_products(inventory, store)
        await inventory.reserve(TWO_LINES)

    def check(store: Any) -> None:
        assert _held(store) == (0, 0)
        assert (_stock(store, "A-1").sold, _stock(store, "B-1").sold) == (2, 1)

    await _crash_everywhere(sleep, reserved, lambda i: i.commit(ORDER_ID), lambda i: i.commit(ORDER_ID), check)


async def test_a_crash_while_undoing_a_refusal_is_repaired_by_the_reconciler(sleep: Any) -> None:
    async def short_at_hold_time(inventory: Inventory, store: Any) -> None:
        await _product(inventory, "A-1", 5)
        await _product(inventory, "B-1", 0)
        # Planned while B-1 still had stock: B-1 turns out short only when its line is held.
        opened = Reservation(
            ORDER_ID,
            ReservationStatus.RESERVING,
            (ReservedLine("A-1", 2, 1000), ReservedLine("B-1", 1, 1000)),
            "EUR",
            NOW,
            NOW,
        )
        await store.save(reservation_key(ORDER_ID), opened.to_document(), None)

    async def reserve_refused(inventory: Inventory) -> None:
        with pytest.raises(OutOfStockError):
            await inventory.reserve(TWO_LINES)

    repaired_by_reconciler = 0

    async def recover(inventory: Inventory) -> None:
        nonlocal repaired_by_reconciler
        repaired_by_reconciler += await inventory.reconcile()
        # Before the refusal is recorded there is no decision to finish: the caller's retry makes it.
        await reserve_refused(inventory)

    def check(store: Any) -> None:
        assert _held(store) == (0, 0)
        assert _status(store, ORDER_ID) is ReservationStatus.REFUSED

    await _crash_everywhere(sleep, short_at_hold_time, reserve_refused, recover, check)
    assert repaired_by_reconciler == 1  # the crash between the refusal and giving A-1 back


# --- reconciler, outages, contention ---------------------------------------------------------------------------


async def test_the_reconciler_finishes_decisions_and_leaves_live_holds_alone(store: Any, sleep: Any) -> None:
    inventory = _inventory(store, sleep)
    await _product(inventory, "A-1", 10)
    live, released, committed = _order(("A-1", 1)), _order(("A-1", 2)), _order(("A-1", 3))
    for command in (live, released, committed):
        await inventory.reserve(command)
    await inventory.commit(committed.order_id)
    # Decisions written, effects lost (a crash right after each decision):
    store.crash_after_writes = 1
    with pytest.raises(SimulatedCrash):
        await inventory.release(released.order_id)
    assert _stock(store, "A-1").holds[str(released.order_id)].quantity == 2
    assert await inventory.reconcile() == 1
    product = _stock(store, "A-1")
    assert list(product.holds) == [str(live.order_id)]
    assert (product.available, product.reserved, product.sold) == (6, 1, 3)
    assert await inventory.reconcile() == 0


async def test_the_reconciler_gives_back_a_hold_taken_after_the_commit(store: Any, sleep: Any) -> None:
    inventory = _inventory(store, sleep)
    await _product(inventory, "A-1", 10)
    command = _order(("A-1", 2))
    await inventory.reserve(command)
    await inventory.commit(command.order_id)
    # A stale duplicate call held the line again after the sale, then died before giving it back.
    product = _stock(store, "A-1")
    _, stale = product.hold(str(command.order_id), 2, "late-token")
    await store.save(product_key("A-1"), stale.to_document(), str(store.documents[product_key("A-1")][1]))
    assert await inventory.reconcile() == 1
    product = _stock(store, "A-1")
    assert (product.available, product.reserved, product.sold) == (8, 0, 2)
    _assert_balanced(store)


async def test_a_store_outage_is_reported(store: Any, sleep: Any) -> None:
    inventory = _inventory(store, sleep)
    await _product(inventory, "A-1", 5)
    store.available = False
    with pytest.raises(StoreUnavailableError):
        await inventory.reserve(_order(("A-1", 1)))
    with pytest.raises(StoreUnavailableError):
        await inventory.list_products()


async def test_endless_conflicts_give_up_after_the_attempts(store: Any, sleep: Any) -> None:
    store.conflicting = True
    inventory = _inventory(store, sleep, retry=RetryPolicy(attempts=4))
    assert (
        await backoffs_before_contention(inventory.create_product(CreateProduct("A-1", "a", 1, "EUR", 1)), sleep) == 4
    )
