"""The stock rules: holds once per order, never below zero, sales never twice; reservations only move forward."""

import uuid
from datetime import UTC, datetime

import pytest

from inventory.domain import (
    Catalogue,
    Hold,
    HoldOutcome,
    MixedCurrencyError,
    Product,
    RequestedLine,
    Reservation,
    ReservationStatus,
    Settlement,
    Shortage,
    UnknownSkuError,
    plan_reservation,
    product_key,
    reservation_key,
)
from sidecart_kit.documents import MalformedDocumentError

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
ORDER = "7d7f5f3e-1f0a-4a51-9d43-1a5f3f0b2c11"


def _balanced(product: Product) -> bool:
    return (
        product.available + product.reserved + product.sold == product.initial
        and product.reserved == sum(hold.quantity for hold in product.holds.values())
        and product.available >= 0
    )


def _mug(stock: int = 5) -> Product:
    return Product.new("SC-MUG-01", "Mug", 1200, "EUR", stock)


def test_hold_takes_units_once_per_order() -> None:
    outcome, held = _mug().hold(ORDER, 2, "t1")
    assert outcome is HoldOutcome.HELD
    assert (held.available, held.reserved, dict(held.holds)) == (3, 2, {ORDER: Hold(2, "t1")})
    again, unchanged = held.hold(ORDER, 2, "t2")
    assert (again, unchanged) == (HoldOutcome.ALREADY_HELD, held)
    assert _balanced(held)


def test_hold_never_goes_below_zero() -> None:
    outcome, product = _mug(1).hold(ORDER, 2, "t1")
    assert (outcome, product.available, dict(product.holds)) == (HoldOutcome.SHORT, 1, {})
    _, exact = _mug(2).hold(ORDER, 2, "t1")
    assert exact.available == 0


def test_selling_moves_the_named_hold_to_sold_once() -> None:
    _, held = _mug().hold(ORDER, 2, "t1")
    sold = held.settle(ORDER, Settlement.SOLD, "t1")
    assert sold is not None
    assert (sold.available, sold.reserved, sold.sold, dict(sold.holds)) == (3, 0, 2, {})
    assert _balanced(sold)
    assert sold.settle(ORDER, Settlement.SOLD, "t1") is None


def test_a_hold_the_decision_does_not_name_is_given_back_even_on_a_sale() -> None:
    # Taken by a stale duplicate call after the order was committed and its named hold sold.
    _, stale = _mug().hold(ORDER, 2, "late")
    given_back = stale.settle(ORDER, Settlement.SOLD, "t1")
    assert given_back is not None
    assert (given_back.available, given_back.reserved, given_back.sold, dict(given_back.holds)) == (5, 0, 0, {})


def test_releasing_gives_units_back_once() -> None:
    _, held = _mug().hold(ORDER, 2, "t1")
    released = held.settle(ORDER, Settlement.RELEASED)
    assert released is not None
    assert (released.available, released.reserved, dict(released.holds)) == (5, 0, {})
    assert released.settle(ORDER, Settlement.RELEASED) is None
    assert _mug().settle(ORDER, Settlement.RELEASED) is None


def test_product_document_round_trip() -> None:
    _, held = _mug().hold(ORDER, 2, "t1")
    document = held.to_document()
    assert document["holds"] == {ORDER: {"quantity": 2, "token": "t1"}}
    assert Product.from_document(document) == held


@pytest.mark.parametrize(
    "document",
    [
        [],
        {"sku": "x"},
        {**_mug().to_document(), "available": -1},
        {**_mug().to_document(), "available": "3"},
        {**_mug().to_document(), "holds": []},
        {**_mug().to_document(), "holds": {ORDER: 2}},
        {**_mug().to_document(), "holds": {ORDER: {"quantity": 0, "token": "t"}}},
        {**_mug().to_document(), "holds": {ORDER: {"quantity": 1}}},
    ],
)
def test_malformed_product_is_refused(document: object) -> None:
    with pytest.raises(MalformedDocumentError):
        Product.from_document(document)


def test_catalogue_adds_each_sku_once_in_order() -> None:
    catalogue = Catalogue().with_skus(["a", "b", "a"])
    assert catalogue == Catalogue(("a", "b"))
    assert catalogue.with_skus(["b"]) is None
    assert catalogue.with_skus(["c"]) == Catalogue(("a", "b", "c"))
    assert Catalogue.from_document(catalogue.to_document()) == catalogue


def _products() -> dict[str, Product]:
    return {
        "SC-MUG-01": _mug(5),
        "SC-TEE-01": Product.new("SC-TEE-01", "Tee", 2500, "EUR", 1),
    }


def test_plan_captures_prices_and_totals() -> None:
    order_id = uuid.uuid4()
    lines = (RequestedLine("SC-MUG-01", 2), RequestedLine("SC-TEE-01", 1))
    reservation = plan_reservation(order_id, lines, _products(), NOW)
    assert reservation.status is ReservationStatus.RESERVING
    assert [(line.sku, line.unit_price_cents) for line in reservation.lines] == [
        ("SC-MUG-01", 1200),
        ("SC-TEE-01", 2500),
    ]
    assert (reservation.total_cents, reservation.currency) == (4900, "EUR")


def test_plan_refuses_outright_when_a_line_is_short_now() -> None:
    lines = (RequestedLine("SC-MUG-01", 6), RequestedLine("SC-TEE-01", 2))
    reservation = plan_reservation(uuid.uuid4(), lines, _products(), NOW)
    assert reservation.status is ReservationStatus.REFUSED
    assert reservation.shortages == (Shortage("SC-MUG-01", 6, 5), Shortage("SC-TEE-01", 2, 1))


def test_plan_names_unknown_skus() -> None:
    with pytest.raises(UnknownSkuError) as raised:
        plan_reservation(uuid.uuid4(), (RequestedLine("NOPE", 1), RequestedLine("SC-MUG-01", 1)), _products(), NOW)
    assert raised.value.skus == ("NOPE",)


def test_plan_refuses_lines_in_several_currencies() -> None:
    products = {**_products(), "USD-1": Product.new("USD-1", "Thing", 100, "USD", 3)}
    with pytest.raises(MixedCurrencyError):
        plan_reservation(uuid.uuid4(), (RequestedLine("USD-1", 1), RequestedLine("SC-MUG-01", 1)), products, NOW)


def test_reservations_only_move_forward() -> None:
    reservation = plan_reservation(uuid.uuid4(), (RequestedLine("SC-MUG-01", 1),), _products(), NOW)
    reserved = reservation.moved_to(ReservationStatus.RESERVED, NOW)
    committed = reserved.moved_to(ReservationStatus.COMMITTED, NOW)
    for status in ReservationStatus:
        with pytest.raises(ValueError, match="cannot move"):
            committed.moved_to(status, NOW)
    with pytest.raises(ValueError, match="cannot move"):
        reserved.moved_to(ReservationStatus.RESERVING, NOW)
    assert Reservation.tombstone(uuid.uuid4(), NOW).status is ReservationStatus.RELEASED


def test_settlement_of_each_status() -> None:
    reservation = plan_reservation(uuid.uuid4(), (RequestedLine("SC-MUG-01", 1),), _products(), NOW)
    assert reservation.settlement is None
    assert reservation.moved_to(ReservationStatus.RESERVED, NOW).settlement is None
    assert reservation.moved_to(ReservationStatus.REFUSED, NOW).settlement is Settlement.RELEASED
    assert reservation.moved_to(ReservationStatus.RELEASED, NOW).settlement is Settlement.RELEASED
    committed = reservation.moved_to(ReservationStatus.RESERVED, NOW).moved_to(ReservationStatus.COMMITTED, NOW)
    assert committed.settlement is Settlement.SOLD


def test_matches_ignores_line_order() -> None:
    lines = (RequestedLine("SC-MUG-01", 2), RequestedLine("SC-TEE-01", 1))
    reservation = plan_reservation(uuid.uuid4(), lines, _products(), NOW)
    assert reservation.matches(tuple(reversed(lines)))
    assert not reservation.matches((RequestedLine("SC-MUG-01", 1), RequestedLine("SC-TEE-01", 1)))
    assert not reservation.matches(lines[:1])


def test_reserved_keeps_the_hold_tokens_it_saw() -> None:
    reservation = plan_reservation(uuid.uuid4(), (RequestedLine("SC-MUG-01", 1),), _products(), NOW)
    reserved = reservation.moved_to(ReservationStatus.RESERVED, NOW, hold_tokens={"SC-MUG-01": "t1"})
    committed = reserved.moved_to(ReservationStatus.COMMITTED, NOW)
    assert committed.hold_tokens == {"SC-MUG-01": "t1"}


def test_reservation_document_round_trip() -> None:
    lines = (RequestedLine("SC-MUG-01", 6), RequestedLine("SC-TEE-01", 1))
    reservation = plan_reservation(uuid.uuid4(), lines, _products(), NOW)
    assert Reservation.from_document(reservation.to_document()) == reservation
    reserved = plan_reservation(uuid.uuid4(), lines[1:], _products(), NOW).moved_to(
        ReservationStatus.RESERVED, NOW, hold_tokens={"SC-TEE-01": "t1"}
    )
    assert Reservation.from_document(reserved.to_document()) == reserved
    tombstone = Reservation.tombstone(uuid.uuid4(), NOW)
    assert Reservation.from_document(tombstone.to_document()) == tombstone


@pytest.mark.parametrize(
    "document", [[], {"order_id": "x"}, {**Reservation.tombstone(uuid.uuid4(), NOW).to_document(), "status": "odd"}]
)
def test_malformed_reservation_is_refused(document: object) -> None:
    with pytest.raises(MalformedDocumentError):
        Reservation.from_document(document)


def test_keys() -> None:
    order_id = uuid.UUID(ORDER)
    assert (product_key("SC-MUG-01"), reservation_key(order_id)) == ("product:SC-MUG-01", f"reservation:{ORDER}")
