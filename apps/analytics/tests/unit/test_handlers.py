"""Folding deliveries with a fake store that enforces ETags: exactness under concurrency, redelivery, retention."""

import asyncio
import uuid
from datetime import timedelta

from analytics.domain import TELEMETRY_INDEX_KEY, Outcome, TelemetryShard, telemetry_key_of
from analytics.handlers import Analytics, KeyLocks, RetryPolicy, TelemetryEntry
from contracts.orders import OrderCancelled
from contracts.users import UserRegistered

from .conftest import NOW, FakeSleep, FakeStateStore, telemetry


def _analytics(store: FakeStateStore, sleep: FakeSleep, attempts: int = 8) -> Analytics:
    return Analytics(store, clock=lambda: NOW, sleep=sleep, retry=RetryPolicy(attempts=attempts))


def _entries(count: int, **overrides: object) -> list[TelemetryEntry]:
    return [TelemetryEntry(f"e{n}", telemetry(**overrides)) for n in range(count)]


async def _total(analytics: Analytics) -> int:
    report = await analytics.summary()
    total: int = report["events_total"]
    return total


async def test_a_delivery_is_counted_and_each_document_written_once(store: FakeStateStore, sleep: FakeSleep) -> None:
    analytics = _analytics(store, sleep)
    entries = _entries(40)
    outcomes = await analytics.fold_telemetry(entries)
    assert set(outcomes.values()) == {Outcome.COUNTED}
    documents = {telemetry_key_of(entry.event) for entry in entries}
    assert store.saves == len(documents) + 1  # each touched shard once, plus the index once
    assert await _total(analytics) == 40


async def test_a_redelivery_is_not_counted_twice(store: FakeStateStore, sleep: FakeSleep) -> None:
    analytics = _analytics(store, sleep)
    entries = _entries(10)
    await analytics.fold_telemetry(entries)
    saves = store.saves
    again = await analytics.fold_telemetry([TelemetryEntry(f"r{n}", e.event) for n, e in enumerate(entries)])
    assert set(again.values()) == {Outcome.DUPLICATE}
    assert store.saves == saves  # nothing new: nothing written
    # A fresh process (empty caches) sees the same.
    assert set((await _analytics(store, sleep).fold_telemetry(entries)).values()) == {Outcome.DUPLICATE}
    assert await _total(analytics) == 10


async def test_the_same_event_twice_in_one_delivery_counts_once(store: FakeStateStore, sleep: FakeSleep) -> None:
    analytics = _analytics(store, sleep)
    event = telemetry()
    outcomes = await analytics.fold_telemetry([TelemetryEntry("a", event), TelemetryEntry("b", event)])
    assert outcomes == {"a": Outcome.COUNTED, "b": Outcome.DUPLICATE}
    assert await _total(analytics) == 1


async def test_concurrent_deliveries_lose_no_update(store: FakeStateStore, sleep: FakeSleep) -> None:
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
    assert len(first.locks) == 0  # the per-key locks are released


async def test_a_failed_document_write_retries_only_its_entries(store: FakeStateStore, sleep: FakeSleep) -> None:
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


async def test_a_write_that_keeps_conflicting_is_retried_later(store: FakeStateStore, sleep: FakeSleep) -> None:
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


async def test_events_out_of_retention_are_acknowledged_not_counted(store: FakeStateStore, sleep: FakeSleep) -> None:
    analytics = _analytics(store, sleep)
    old = TelemetryEntry("old", telemetry(ts=NOW - timedelta(hours=49)))
    fresh = TelemetryEntry("new", telemetry(ts=NOW - timedelta(hours=47)))
    assert await analytics.fold_telemetry([old, fresh]) == {"old": Outcome.EXPIRED, "new": Outcome.COUNTED}
    assert await _total(analytics) == 1
    assert telemetry_key_of(old.event) not in store.documents


async def test_the_index_is_written_before_the_documents(store: FakeStateStore, sleep: FakeSleep) -> None:
    analytics = _analytics(store, sleep)
    store.failing_keys.add(TELEMETRY_INDEX_KEY)
    outcomes = await analytics.fold_telemetry(_entries(3))
    assert set(outcomes.values()) == {None}
    assert list(store.documents) == []


async def test_business_events_are_counted_once(store: FakeStateStore, sleep: FakeSleep) -> None:
    analytics = _analytics(store, sleep)
    signup = UserRegistered(user_id=uuid.uuid4(), email="a@b.c", name="A", registered_at=NOW)
    cancelled = OrderCancelled(order_id=uuid.uuid4(), user_id=uuid.uuid4(), reason="out_of_stock", cancelled_at=NOW)
    assert await analytics.fold_business("s1", signup) is Outcome.COUNTED
    assert await analytics.fold_business("s1", signup) is Outcome.DUPLICATE
    assert await analytics.fold_business("c1", cancelled) is Outcome.COUNTED
    old = UserRegistered(user_id=uuid.uuid4(), email="o@b.c", name="O", registered_at=NOW - timedelta(days=3))
    assert await analytics.fold_business("s2", old) is Outcome.EXPIRED
    report = await analytics.summary()
    assert (report["signups_total"], report["orders_cancelled"]) == (1, 1)


async def test_reports_read_documents_in_one_bulk_round_trip(store: FakeStateStore, sleep: FakeSleep) -> None:
    analytics = _analytics(store, sleep)
    await analytics.fold_telemetry(_entries(50))
    store.bulk_reads = 0
    await analytics.top_products(10)
    assert store.bulk_reads == 1
    shards = [TelemetryShard.from_document(doc) for key, (doc, _) in store.documents.items() if key.count(":") == 2]
    assert sum(sum(shard.counts_by_type.values()) for shard in shards) == 50


async def test_key_locks_serialize_one_key() -> None:
    locks = KeyLocks()
    order: list[str] = []

    async def hold(name: str) -> None:
        async with locks.hold("k"):
            order.append(f"{name}+")
            await asyncio.sleep(0)
            order.append(f"{name}-")

    await asyncio.gather(hold("a"), hold("b"))
    assert order == ["a+", "a-", "b+", "b-"]
    assert len(locks) == 0
