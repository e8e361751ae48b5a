"""Folding events into documents, and the report math."""

import uuid
from datetime import UTC, datetime, timedelta

from analytics.domain import (
    SHARDS,
    BusinessFact,
    BusinessHour,
    BusinessIndex,
    DeadLetter,
    Outcome,
    TelemetryIndex,
    TelemetryShard,
    funnel,
    record_dead_letter,
    shard_of,
    summary,
    telemetry_key_of,
    timeseries,
    top_products,
)
from contracts.orders import OrderCompleted, OrderLine
from contracts.users import UserRegistered

from .conftest import NOW, telemetry


def test_shard_is_stable_and_in_range() -> None:
    event_id = "6f1c1c9e-8f5e-4a55-9a51-0b6f2f1d8e1a"
    assert shard_of(event_id) == shard_of(event_id)
    assert {shard_of(str(uuid.uuid4())) for _ in range(500)} == set(range(SHARDS))


def test_a_redelivered_event_maps_to_the_same_document() -> None:
    event = telemetry()
    again = telemetry(id=str(event.id), ts=event.ts.astimezone(UTC))
    assert telemetry_key_of(event) == telemetry_key_of(again)
    assert telemetry_key_of(event).startswith("t:202611221230:")


def test_fold_counts_each_event_once() -> None:
    view, cart, page = telemetry(sku="a"), telemetry(type="add_to_cart", sku="a"), telemetry(type="page_view", sku=None)
    shard, outcomes = TelemetryShard().fold([view, cart, page, view])
    assert outcomes == [Outcome.COUNTED, Outcome.COUNTED, Outcome.COUNTED, Outcome.DUPLICATE]
    assert shard.counts_by_type == {"product_view": 1, "add_to_cart": 1, "page_view": 1}
    assert shard.product_views_by_sku == {"a": 1}
    assert shard.add_to_carts_by_sku == {"a": 1}
    assert set(shard.ids) == {str(view.id), str(cart.id), str(page.id)}


def test_fold_over_a_stored_document_skips_ids_it_holds() -> None:
    view = telemetry()
    stored, _ = TelemetryShard().fold([view])
    again, outcomes = TelemetryShard.from_document(stored.to_document()).fold([view])
    assert outcomes == [Outcome.DUPLICATE]
    assert again == stored


def test_business_fold_counts_once_with_revenue() -> None:
    order = OrderCompleted(
        order_id=uuid.uuid4(),
        user_id=uuid.uuid4(),
        lines=(OrderLine(sku="a", quantity=2, unit_price_cents=150),),
        total_cents=300,
        currency="EUR",
        completed_at=NOW,
    )
    fact = BusinessFact.of("e1", order)
    assert fact.key == f"b:2026112212:{shard_of('e1'):02d}"
    signup = BusinessFact.of("e2", UserRegistered(user_id=uuid.uuid4(), email="a@b.c", name="A", registered_at=NOW))
    hour, outcomes = BusinessHour().fold([fact, signup, fact])
    assert outcomes == [Outcome.COUNTED, Outcome.COUNTED, Outcome.DUPLICATE]
    assert (hour.orders_completed, hour.revenue_cents, hour.signups) == (1, 300, 1)
    same, outcomes = BusinessHour.from_document(hour.to_document()).fold([signup, fact])
    assert (outcomes, same) == ([Outcome.DUPLICATE, Outcome.DUPLICATE], hour)


def test_indexes_add_keys_and_forget_minutes_out_of_retention() -> None:
    index = TelemetryIndex({"202611200000": 1}).with_keys(["t:202611221230:03", "t:202611221230:05"], "202611201230")
    assert index.minutes == {"202611221230": (1 << 3) | (1 << 5)}
    assert index.covers(["t:202611221230:03"])
    assert not index.covers(["t:202611221230:04"])
    assert index.keys("202611221200", "202611221300") == ["t:202611221230:03", "t:202611221230:05"]
    hours = BusinessIndex({"2026112000": 1}).with_keys(["b:2026112212:03", "b:2026112212:05"], "2026112012")
    assert hours.hours == {"2026112212": (1 << 3) | (1 << 5)}
    assert hours.covers(["b:2026112212:05"])
    assert not hours.covers(["b:2026112212:04"])
    assert hours.keys("2026112200") == [("2026112212", "b:2026112212:03"), ("2026112212", "b:2026112212:05")]


def test_an_index_written_before_sharding_keeps_each_listed_hour_in_its_one_document() -> None:
    index = BusinessIndex.from_document({"hours": ["2026112212"]})
    signup = UserRegistered(user_id=uuid.uuid4(), email="a@b.c", name="A", registered_at=NOW)
    assert index.key_of(BusinessFact.of("e1", signup)) == "b:2026112212"
    assert index.covers(["b:2026112212"])
    later = BusinessFact.of(
        "e2", UserRegistered(user_id=uuid.uuid4(), email="b@b.c", name="B", registered_at=NOW + timedelta(hours=1))
    )
    assert index.key_of(later) == later.key != "b:2026112213"
    both = index.with_keys([later.key], "2026112200")
    assert [key for _, key in both.keys("2026112200")] == ["b:2026112212", later.key]
    assert BusinessIndex.from_document(both.to_document()) == both


def test_the_shares_of_an_hour_add_up() -> None:
    assert BusinessHour(1, 2, 3, 400, ("a",)) + BusinessHour(10, 20, 30, 4000, ("b",)) == BusinessHour(11, 22, 33, 4400)


def test_report_math() -> None:
    a, _ = TelemetryShard().fold([telemetry(sku="x"), telemetry(sku="y"), telemetry(type="add_to_cart", sku="x")])
    b, _ = TelemetryShard().fold([telemetry(sku="y"), telemetry(type="search", sku=None)])
    signup = BusinessFact.of("s1", UserRegistered(user_id=uuid.uuid4(), email="a@b.c", name="A", registered_at=NOW))
    hour, _ = BusinessHour().fold([signup])
    hour = BusinessHour(hour.signups, 2, 1, 500, hour.ids)
    report = summary([a, b], {"2026112212": hour})
    assert report["events_total"] == 5
    assert report["events_by_type"] == {"page_view": 0, "product_view": 3, "search": 1, "add_to_cart": 1}
    assert report["revenue_by_hour"] == [{"hour": "2026-11-22T12:00:00+00:00", "revenue_cents": 500}]
    assert report["signups_by_day"] == [{"day": "2026-11-22", "signups": 1}]
    assert top_products([a, b], 10) == [{"sku": "y", "views": 2}, {"sku": "x", "views": 1}]
    assert top_products([a, b], 1) == [{"sku": "y", "views": 2}]
    assert funnel([a, b], [hour]) == {"product_views": 3, "add_to_carts": 1, "orders_completed": 2}
    points = timeseries([("202611221231", b), ("202611221230", a), ("202611221230", b)], "product_view")
    assert points == [
        {"minute": "2026-11-22T12:30:00+00:00", "count": 3},
        {"minute": "2026-11-22T12:31:00+00:00", "count": 1},
    ]


def test_dead_letters_are_bounded_newest_first_and_deduped() -> None:
    document: object = None
    for number in range(5):
        letter = DeadLetter(str(number), "t", (NOW + timedelta(seconds=number)).isoformat(), "x")
        document, added = record_dead_letter(document, letter, 3)
        assert added
    assert [item["id"] for item in document["items"]] == ["4", "3", "2"]  # type: ignore[index]
    _, added = record_dead_letter(document, DeadLetter("4", "t", datetime.now(UTC).isoformat(), "x"), 3)
    assert not added
