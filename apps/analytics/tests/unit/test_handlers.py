"""Folding deliveries with a fake store that enforces ETags: exactness under concurrency, redelivery, retention."""

import asyncio
import uuid
from datetime import timedelta
from typing import Literal

import pytest
from prometheus_client import CollectorRegistry

from analytics.domain import (
    BUSINESS_INDEX_KEY,
    DEAD_LETTERS_KEY,
    TELEMETRY_INDEX_KEY,
    BusinessFact,
    BusinessHour,
    Outcome,
    TelemetryShard,
    hour_of,
    shard_of,
    telemetry_key_of,
    unsharded_business_key,
)
from analytics.handlers import Analytics, BusinessEntry, Deliveries, TelemetryEntry
from contracts.orders import OrderCancelled
from contracts.users import UserRegistered
from sidecart_kit.events import BulkDelivery, DeliveryStatus, EventDeliveries, delivery_counter
from sidecart_kit.retry import RetryPolicy
from sidecart_kit.state import StoreUnavailableError
from sidecart_kit.testing import FakeSleep

from .conftest import NOW, DocumentStore, FakePublisher, telemetry


def _analytics(store: DocumentStore, sleep: FakeSleep, attempts: int = 8) -> Analytics:
    return Analytics(store, clock=lambda: NOW, sleep=sleep, retry=RetryPolicy(attempts=attempts))


def _entries(count: int, **overrides: object) -> list[TelemetryEntry]:
    return [TelemetryEntry(f"e{n}", telemetry(**overrides)) for n in range(count)]


async def _total(analytics: Analytics) -> int:
    report = await analytics.summary()
    total: int = report["events_total"]
    return total


async def test_a_delivery_is_counted_and_each_document_written_once(store: DocumentStore, sleep: FakeSleep) -> None:
    analytics = _analytics(store, sleep)
    entries = _entries(40)
    outcomes = await analytics.fold_telemetry(entries)
    assert set(outcomes.values()) == {Outcome.COUNTED}
    documents = {telemetry_key_of(entry.event) for entry in entries}
    assert store.writes == len(documents) + 1  # each touched shard once, plus the index once
    assert await _total(analytics) == 40


async def test_a_redelivery_is_not_counted_twice(store: DocumentStore, sleep: FakeSleep) -> None:
    analytics = _analytics(store, sleep)
    entries = _entries(10)
    await analytics.fold_telemetry(entries)
    saves = store.writes
    again = await analytics.fold_telemetry([TelemetryEntry(f"r{n}", e.event) for n, e in enumerate(entries)])
    assert set(again.values()) == {Outcome.DUPLICATE}
    assert store.writes == saves  # nothing new: nothing written
    # A fresh process (empty caches) sees the same.
    assert set((await _analytics(store, sleep).fold_telemetry(entries)).values()) == {Outcome.DUPLICATE}
    assert await _total(analytics) == 10


async def test_the_same_event_twice_in_one_delivery_counts_once(store: DocumentStore, sleep: FakeSleep) -> None:
    analytics = _analytics(store, sleep)
    event = telemetry()
    outcomes = await analytics.fold_telemetry([TelemetryEntry("a", event), TelemetryEntry("b", event)])
    assert outcomes == {"a": Outcome.COUNTED, "b": Outcome.DUPLICATE}
    assert await _total(analytics) == 1


async def test_concurrent_deliveries_lose_no_update(store: DocumentStore, sleep: FakeSleep) -> None:
    store.interleave = True
    # Two processes (separate locks and caches) and many deliveries into the same minute: ETag conflicts happen.
    first, second = _analytics(store, sleep, attempts=50), _analytics(store, sleep, attempts=50)
    batches = [_entries(8) for _ in range(12)]
    await asyncio.gather(
        *(proc.fold_telemetry(batch) for proc, batch in zip([first, second] * 6, batches, strict=True))
    )
    # Redeliver half of them at the same time as well.
    await asyncio.gather(*(second.fold_telemetry(batch) for batch in batches[:6]))
    assert await _total(first) == 96
    assert store.conflicts > 0


async def test_a_failed_document_write_retries_only_its_entries(store: DocumentStore, sleep: FakeSleep) -> None:
    analytics = _analytics(store, sleep)
    entries = _entries(30)
    broken = telemetry_key_of(entries[0].event)
    store.failing_keys.add(broken)
    outcomes = await analytics.fold_telemetry(entries)
    for entry in entries:
        expected = None if telemetry_key_of(entry.event) == broken else Outcome.COUNTED
        assert outcomes[entry.entry_id] is expected
    store.failing_keys.clear()
    again = await analytics.fold_telemetry(entries)  # the sidecar redelivers
    assert {again[e.entry_id] for e in entries if telemetry_key_of(e.event) == broken} == {Outcome.COUNTED}
    assert await _total(analytics) == 30


async def test_a_write_that_keeps_conflicting_is_retried_later(store: DocumentStore, sleep: FakeSleep) -> None:
    analytics = _analytics(store, sleep, attempts=3)
    entry = _entries(1)[0]
    await analytics.fold_telemetry([entry])
    key = telemetry_key_of(entry.event)
    store.stale_keys.add(key)
    second = TelemetryEntry("x", telemetry(ts=entry.event.ts))
    while telemetry_key_of(second.event) != key:  # another event of the same document
        second = TelemetryEntry("x", telemetry(ts=entry.event.ts))
    outcomes = await analytics.fold_telemetry([second, TelemetryEntry("y", entry.event)])
    assert outcomes == {"x": None, "y": None}  # the whole document's entries are redelivered
    assert len(sleep.delays) == 3


async def test_events_out_of_retention_are_acknowledged_not_counted(store: DocumentStore, sleep: FakeSleep) -> None:
    analytics = _analytics(store, sleep)
    old = TelemetryEntry("old", telemetry(ts=NOW - timedelta(hours=49)))
    fresh = TelemetryEntry("new", telemetry(ts=NOW - timedelta(hours=47)))
    assert await analytics.fold_telemetry([old, fresh]) == {"old": Outcome.EXPIRED, "new": Outcome.COUNTED}
    assert await _total(analytics) == 1
    assert telemetry_key_of(old.event) not in store.documents


async def test_the_index_is_written_before_the_documents(store: DocumentStore, sleep: FakeSleep) -> None:
    analytics = _analytics(store, sleep)
    store.failing_keys.add(TELEMETRY_INDEX_KEY)
    outcomes = await analytics.fold_telemetry(_entries(3))
    assert set(outcomes.values()) == {None}
    assert list(store.documents) == []


async def test_business_events_are_counted_once(store: DocumentStore, sleep: FakeSleep) -> None:
    analytics = _analytics(store, sleep)
    signup = UserRegistered(user_id=uuid.uuid4(), email="a@b.c", name="A", registered_at=NOW)
    cancelled = OrderCancelled(order_id=uuid.uuid4(), user_id=uuid.uuid4(), reason="out_of_stock", cancelled_at=NOW)
    old = UserRegistered(user_id=uuid.uuid4(), email="o@b.c", name="O", registered_at=NOW - timedelta(days=3))
    first = [BusinessEntry("1", "s1", signup), BusinessEntry("2", "s1", signup), BusinessEntry("3", "c1", cancelled)]
    assert await analytics.fold_business(first) == {"1": Outcome.COUNTED, "2": Outcome.DUPLICATE, "3": Outcome.COUNTED}
    # The index, and each touched share of the hour once for the whole delivery.
    assert store.writes == 1 + len({shard_of("s1"), shard_of("c1")})
    again = [BusinessEntry("4", "s1", signup), BusinessEntry("5", "s2", old)]
    assert await analytics.fold_business(again) == {"4": Outcome.DUPLICATE, "5": Outcome.EXPIRED}
    report = await analytics.summary()
    assert (report["signups_total"], report["orders_cancelled"]) == (1, 1)


async def test_an_hour_counted_in_one_document_before_sharding_is_still_counted_there_once(
    store: DocumentStore, sleep: FakeSleep
) -> None:
    signup = UserRegistered(user_id=uuid.uuid4(), email="a@b.c", name="A", registered_at=NOW)
    hour = hour_of(NOW)
    # What the previous layout left: one document for the hour, listed in an index of plain hours.
    before, _ = BusinessHour().fold([BusinessFact.of("s1", signup)])
    await store.save(unsharded_business_key(hour), before.to_document(), None)
    await store.save(BUSINESS_INDEX_KEY, {"hours": [hour]}, None)
    analytics = _analytics(store, sleep)

    later = UserRegistered(user_id=uuid.uuid4(), email="d@b.c", name="D", registered_at=NOW)
    outcomes = await analytics.fold_business([BusinessEntry("1", "s1", signup), BusinessEntry("2", "s2", later)])

    assert outcomes == {"1": Outcome.DUPLICATE, "2": Outcome.COUNTED}
    assert not any(key.startswith(f"b:{hour}:") for key in store.documents)
    next_hour = UserRegistered(user_id=uuid.uuid4(), email="n@b.c", name="N", registered_at=NOW + timedelta(hours=1))
    assert await analytics.fold_business([BusinessEntry("3", "s3", next_hour)]) == {"3": Outcome.COUNTED}
    assert BusinessFact.of("s3", next_hour).key in store.documents
    assert (await analytics.summary())["signups_total"] == 3


async def test_a_business_document_that_cannot_be_written_is_redelivered(
    store: DocumentStore, sleep: FakeSleep
) -> None:
    analytics = _analytics(store, sleep)
    signup = UserRegistered(user_id=uuid.uuid4(), email="a@b.c", name="A", registered_at=NOW)
    store.failing_keys.add(BusinessFact.of("s1", signup).key)
    assert await analytics.fold_business([BusinessEntry("1", "s1", signup)]) == {"1": None}
    store.failing_keys.clear()
    assert await analytics.fold_business([BusinessEntry("1", "s1", signup)]) == {"1": Outcome.COUNTED}


async def test_reports_read_documents_in_one_bulk_round_trip(store: DocumentStore, sleep: FakeSleep) -> None:
    analytics = _analytics(store, sleep)
    await analytics.fold_telemetry(_entries(50))
    store.bulk_reads = 0
    await analytics.top_products(10)
    assert store.bulk_reads == 1
    shards = [TelemetryShard.from_document(doc) for key, (doc, _) in store.documents.items() if key.count(":") == 2]
    assert sum(sum(shard.counts_by_type.values()) for shard in shards) == 50


def _deliveries(
    store: DocumentStore, publisher: FakePublisher, action: Literal["publish", "RETRY", "DROP"] = "DROP"
) -> Deliveries:
    return Deliveries(
        Analytics(store, clock=lambda: NOW),
        publisher,
        EventDeliveries(delivery_counter("analytics", CollectorRegistry())),
        dead_letter_topic="deadletter",
        telemetry_dead_letter_topic="telemetry-deadletter",
        malformed_entry_action=action,
        clock=lambda: NOW,
    )


@pytest.mark.parametrize(
    ("action", "status", "published"),
    [
        ("DROP", DeliveryStatus.DROP, []),
        ("RETRY", DeliveryStatus.RETRY, []),
        ("publish", DeliveryStatus.SUCCESS, ["telemetry-deadletter"]),
    ],
)
async def test_a_malformed_entry_is_answered_as_configured(
    store: DocumentStore,
    publisher: FakePublisher,
    action: Literal["publish", "RETRY", "DROP"],
    status: DeliveryStatus,
    published: list[str],
) -> None:
    valid = {"id": "v", "type": "t", "data": telemetry().model_dump(mode="json")}
    delivery = BulkDelivery.model_validate(
        {"entries": [{"entryId": "bad", "event": "not json {"}, {"entryId": "good", "event": valid}]}
    )
    statuses = await _deliveries(store, publisher, action).telemetry("/events/telemetry", delivery)
    assert statuses == {"bad": status, "good": DeliveryStatus.SUCCESS}
    assert [topic for topic, _ in publisher.published] == published


async def test_a_malformed_event_whose_dead_letter_cannot_be_published_is_retried(
    store: DocumentStore, publisher: FakePublisher
) -> None:
    publisher.available = False
    status = await _deliveries(store, publisher).business("/events/user-registered", UserRegistered, b"{}")
    assert status is DeliveryStatus.RETRY


async def test_a_dead_letter_is_retried_while_the_store_is_down(store: DocumentStore, publisher: FakePublisher) -> None:
    deliveries = _deliveries(store, publisher)
    store.available = False
    assert await deliveries.dead_letter("/events/dead-letter", b'{"id": "d1"}') is DeliveryStatus.RETRY
    store.available = True
    assert await deliveries.dead_letter("/events/dead-letter", b'{"id": "d1"}') is DeliveryStatus.SUCCESS
    assert [item["id"] for item in store.document(DEAD_LETTERS_KEY)["items"]] == ["d1"]


async def test_reports_within_their_max_age_share_one_read_of_the_store(store: DocumentStore, sleep: FakeSleep) -> None:
    analytics = Analytics(store, clock=lambda: NOW, sleep=sleep, report_max_age=timedelta(seconds=60))
    await analytics.fold_telemetry(_entries(5))
    store.interleave = True  # the reports below really overlap

    first, funnel, _, again = await asyncio.gather(
        analytics.summary(), analytics.funnel(), analytics.top_products(3), analytics.summary()
    )
    await analytics.fold_telemetry(_entries(5))
    later = await analytics.summary()

    assert store.bulk_reads == 1  # the retained telemetry documents, read once for four reports
    assert first == again == later
    assert (first["events_total"], funnel["product_views"]) == (5, 5)
    # Without a max age every report reads the store, and sees every event folded so far.
    assert await _total(_analytics(store, sleep)) == 10


async def test_a_failed_read_is_not_kept_for_the_next_report(store: DocumentStore, sleep: FakeSleep) -> None:
    analytics = Analytics(store, clock=lambda: NOW, sleep=sleep, report_max_age=timedelta(seconds=60))
    await analytics.fold_telemetry(_entries(3))
    store.available = False
    with pytest.raises(StoreUnavailableError):
        await analytics.summary()
    store.available = True
    assert await _total(analytics) == 3
