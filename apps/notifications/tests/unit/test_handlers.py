"""Recording notices once per event under ETag concurrency, with a fake store that enforces ETags."""

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import pytest

from contracts.orders import OrderCancelled, OrderCompleted, OrderLine
from contracts.users import UserRegistered
from notifications.adapters import StoredInboxRepository
from notifications.handlers import Limits, Notifications, Outcome, RecordNotice
from sidecart_kit.retry import RetryPolicy
from sidecart_kit.state import ConcurrencyConflictError, ContentionError, StoreUnavailableError
from sidecart_kit.testing import FakeSleep

from .conftest import InboxStore

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def _service(store: InboxStore, sleep: FakeSleep, attempts: int = 8, limits: Limits | None = None) -> Notifications:
    return Notifications(
        StoredInboxRepository(store),
        limits=limits,
        retry=RetryPolicy(attempts=attempts),
        clock=lambda: NOW,
        sleep=sleep,
    )


def _welcome(user_id: UUID, event_id: str | None = None) -> RecordNotice:
    user = UserRegistered(user_id=user_id, email="ada@example.com", name="Ada", registered_at=NOW)
    return RecordNotice(event_id=event_id or f"evt-{uuid.uuid4()}", event=user)


def _completed(user_id: UUID, order_id: UUID, event_id: str) -> RecordNotice:
    line = OrderLine(sku="sku-1", quantity=2, unit_price_cents=2125)
    order = OrderCompleted(
        order_id=order_id, user_id=user_id, lines=(line,), total_cents=4250, currency="EUR", completed_at=NOW
    )
    return RecordNotice(event_id=event_id, event=order)


def _cancelled(user_id: UUID, order_id: UUID, event_id: str) -> RecordNotice:
    order = OrderCancelled(order_id=order_id, user_id=user_id, reason="out_of_stock", cancelled_at=NOW)
    return RecordNotice(event_id=event_id, event=order)


async def test_first_delivery_records_a_welcome_notice(store: InboxStore, sleep: FakeSleep, user_id: UUID) -> None:
    outcome = await _service(store, sleep).record(_welcome(user_id, "evt-1"))
    assert outcome is Outcome.RECORDED
    [notice] = store.inbox(user_id).notices
    assert (notice.event_id, notice.kind, notice.created_at) == ("evt-1", "welcome", NOW)


async def test_the_same_event_twice_records_one_notice(store: InboxStore, sleep: FakeSleep, user_id: UUID) -> None:
    service = _service(store, sleep)
    assert await service.record(_welcome(user_id, "evt-1")) is Outcome.RECORDED
    assert await service.record(_welcome(user_id, "evt-1")) is Outcome.ALREADY_HANDLED
    assert len(store.inbox(user_id).notices) == 1
    assert store.writes == 1


@pytest.mark.parametrize(("command", "kind"), [(_completed, "order_completed"), (_cancelled, "order_cancelled")])
async def test_an_order_event_records_one_notice_naming_the_order(
    store: InboxStore, sleep: FakeSleep, user_id: UUID, command: Any, kind: str
) -> None:
    order_id = uuid.uuid4()
    service = _service(store, sleep)
    assert await service.record(command(user_id, order_id, "evt-o")) is Outcome.RECORDED
    assert await service.record(command(user_id, order_id, "evt-o")) is Outcome.ALREADY_HANDLED
    [notice] = store.inbox(user_id).notices
    assert (notice.event_id, notice.kind, notice.order_id, notice.created_at) == ("evt-o", kind, order_id, NOW)


async def test_every_kind_of_event_lands_in_the_one_inbox_of_its_user(
    store: InboxStore, sleep: FakeSleep, user_id: UUID
) -> None:
    service = _service(store, sleep)
    order_id = uuid.uuid4()
    await service.record(_welcome(user_id, "evt-1"))
    await service.record(_completed(user_id, order_id, "evt-2"))
    await service.record(_cancelled(user_id, uuid.uuid4(), "evt-3"))
    await service.record(_completed(uuid.uuid4(), order_id, "evt-4"))  # someone else's inbox
    kinds = [notice.kind for notice in await service.list_notices(user_id)]
    assert kinds == ["order_cancelled", "order_completed", "welcome"]


async def test_two_events_record_two_notices_newest_first(store: InboxStore, sleep: FakeSleep, user_id: UUID) -> None:
    service = _service(store, sleep)
    await service.record(_welcome(user_id, "evt-1"))
    await service.record(_welcome(user_id, "evt-2"))
    assert [notice.event_id for notice in await service.list_notices(user_id)] == ["evt-2", "evt-1"]


async def test_concurrent_deliveries_lose_no_update(store: InboxStore, sleep: FakeSleep, user_id: UUID) -> None:
    store.interleave = True
    service = _service(store, sleep, attempts=50)
    event_ids = [f"evt-{number}" for number in range(20)]
    outcomes = await asyncio.gather(*(service.record(_welcome(user_id, event_id)) for event_id in event_ids))
    assert set(outcomes) == {Outcome.RECORDED}
    assert store.conflicts > 0  # the deliveries really raced
    assert sorted(notice.event_id for notice in store.inbox(user_id).notices) == sorted(event_ids)


async def test_concurrent_redeliveries_of_one_event_record_it_once(
    store: InboxStore, sleep: FakeSleep, user_id: UUID
) -> None:
    store.interleave = True
    service = _service(store, sleep)
    outcomes = await asyncio.gather(*(service.record(_welcome(user_id, "evt-1")) for _ in range(5)))
    assert outcomes.count(Outcome.RECORDED) == 1
    assert len(store.inbox(user_id).notices) == 1


async def test_a_store_outage_is_reported(store: InboxStore, sleep: FakeSleep, user_id: UUID) -> None:
    store.available = False
    with pytest.raises(StoreUnavailableError):
        await _service(store, sleep).record(_welcome(user_id))


async def test_a_failed_first_write_is_an_outage_when_nothing_was_stored(
    store: InboxStore, sleep: FakeSleep, user_id: UUID
) -> None:
    store.writable = False
    with pytest.raises(StoreUnavailableError):
        await _service(store, sleep).record(_welcome(user_id))
    assert sleep.delays == []  # no point retrying here: the sidecar redelivers later


async def test_a_failed_update_is_an_outage(store: InboxStore, sleep: FakeSleep, user_id: UUID) -> None:
    service = _service(store, sleep)
    await service.record(_welcome(user_id))
    store.writable = False
    with pytest.raises(StoreUnavailableError):
        await service.record(_welcome(user_id))


async def test_endless_conflicts_give_up_after_the_attempts(sleep: FakeSleep, user_id: UUID) -> None:
    class AlwaysConflicting(InboxStore):
        async def save(self, key: str, document: Any, etag: str | None) -> None:
            raise ConcurrencyConflictError("changed")

    with pytest.raises(ContentionError):
        await _service(AlwaysConflicting(), sleep, attempts=4).record(_welcome(user_id))
    assert len(sleep.delays) == 4


async def test_notices_beyond_the_limit_are_dropped_oldest_first(
    store: InboxStore, sleep: FakeSleep, user_id: UUID
) -> None:
    service = _service(store, sleep, limits=Limits(max_notices=2, max_remembered_events=10))
    for event_id in ("e1", "e2", "e3"):
        await service.record(_welcome(user_id, event_id))
    assert [notice.event_id for notice in await service.list_notices(user_id)] == ["e3", "e2"]


async def test_a_user_without_notices_has_an_empty_list(store: InboxStore, sleep: FakeSleep) -> None:
    assert await _service(store, sleep).list_notices(uuid.uuid4()) == ()
