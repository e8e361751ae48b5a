"""The inbox rules: newest first, bounded, each event once, and a document form that survives a round trip."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from contracts.orders import OrderCancelled, OrderCompleted, OrderLine
from contracts.users import UserRegistered
from notifications.domain import (
    Inbox,
    MalformedInboxError,
    Notice,
    format_amount,
    inbox_key,
    notice_for,
    order_cancelled_notice,
    order_completed_notice,
    welcome_notice,
)

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
ORDER_ID = uuid.UUID("1234abcd-2b0b-4bb8-9a57-6f0a1d2f9c11")


def _user(name: str = "Ada") -> UserRegistered:
    return UserRegistered(user_id=uuid.uuid4(), email="ada@example.com", name=name, registered_at=NOW)


def _notice(event_id: str, minutes: int = 0) -> Notice:
    return welcome_notice(event_id, _user(), NOW + timedelta(minutes=minutes))


def test_welcome_notice_greets_the_user() -> None:
    notice = welcome_notice("evt-1", _user("Grace"), NOW)
    assert (notice.kind, notice.event_id, notice.created_at) == ("welcome", "evt-1", NOW)
    assert "Grace" in notice.message
    assert notice.title


def test_notice_id_depends_only_on_the_event() -> None:
    assert welcome_notice("evt-1", _user(), NOW).id == welcome_notice("evt-1", _user(), NOW + timedelta(1)).id
    assert welcome_notice("evt-1", _user(), NOW).id != welcome_notice("evt-2", _user(), NOW).id


def _completed(total_cents: int = 4250) -> OrderCompleted:
    line = OrderLine(sku="sku-1", quantity=1, unit_price_cents=total_cents)
    return OrderCompleted(
        order_id=ORDER_ID,
        user_id=uuid.uuid4(),
        lines=(line,),
        total_cents=total_cents,
        currency="EUR",
        completed_at=NOW,
    )


def _cancelled(reason: str) -> OrderCancelled:
    return OrderCancelled(
        order_id=ORDER_ID, user_id=uuid.uuid4(), reason=reason, detail="stack trace", cancelled_at=NOW
    )


def test_completed_order_notice_names_the_order_and_its_total() -> None:
    notice = order_completed_notice("evt-1", _completed(4250), NOW)
    assert (notice.kind, notice.event_id, notice.order_id, notice.created_at) == (
        "order_completed",
        "evt-1",
        ORDER_ID,
        NOW,
    )
    assert notice.title == "Your order is confirmed"
    assert notice.message == "Order 1234abcd\u2026 is confirmed: 42.50 EUR."


@pytest.mark.parametrize(
    ("reason", "words"),
    [
        ("out_of_stock", "an item is out of stock"),
        ("insufficient_funds", "your wallet balance is too low"),
        ("unknown_sku", "an item is not sold here"),
        ("step_failed", "a step of processing it failed"),
        ("a_reason_from_the_future", "it could not be completed"),
    ],
)
def test_cancelled_order_notice_says_why_in_words(reason: str, words: str) -> None:
    notice = order_cancelled_notice("evt-1", _cancelled(reason), NOW)
    assert (notice.kind, notice.order_id) == ("order_cancelled", ORDER_ID)
    assert notice.title == "Your order was cancelled"
    assert notice.message == f"Order 1234abcd\u2026 was cancelled: {words}."
    assert reason not in notice.message
    assert "stack trace" not in notice.message  # the detail is for operators


@pytest.mark.parametrize(
    ("cents", "shown"), [(0, "0.00"), (5, "0.05"), (100, "1.00"), (4250, "42.50"), (123456789, "1234567.89")]
)
def test_amounts_are_shown_exactly_with_two_decimals(cents: int, shown: str) -> None:
    assert format_amount(cents) == shown


def test_each_event_type_gives_its_own_kind_of_notice() -> None:
    assert notice_for("e", _user(), NOW).kind == "welcome"
    assert notice_for("e", _completed(), NOW).kind == "order_completed"
    assert notice_for("e", _cancelled("out_of_stock"), NOW).kind == "order_cancelled"


def test_one_event_id_gives_distinct_notice_ids_per_kind() -> None:
    ids = {notice_for("e", event, NOW).id for event in (_user(), _completed(), _cancelled("step_failed"))}
    assert len(ids) == 3


def test_deliver_puts_the_newest_notice_first_and_remembers_its_event() -> None:
    inbox = Inbox().deliver(_notice("e1"), max_notices=10, max_remembered_events=10)
    inbox = inbox.deliver(_notice("e2", 1), max_notices=10, max_remembered_events=10)
    assert [notice.event_id for notice in inbox.notices] == ["e2", "e1"]
    assert inbox.has_handled(_notice("e1"))
    assert inbox.has_handled(_notice("e2"))
    assert not inbox.has_handled(_notice("e3"))


def test_deliver_ignores_an_event_already_handled() -> None:
    inbox = Inbox().deliver(_notice("e1"), max_notices=10, max_remembered_events=10)
    assert inbox.deliver(_notice("e1", 5), max_notices=10, max_remembered_events=10) == inbox


def test_one_order_outcome_gives_one_notice_even_under_two_event_ids() -> None:
    completed = _completed()
    inbox = Inbox().deliver(notice_for("outbox-1", completed, NOW), max_notices=10, max_remembered_events=10)

    again = inbox.deliver(notice_for("outbox-2", completed, NOW), max_notices=10, max_remembered_events=10)

    assert again == inbox
    other_order = completed.model_copy(update={"order_id": uuid.uuid4()})
    assert (
        len(inbox.deliver(notice_for("outbox-3", other_order, NOW), max_notices=10, max_remembered_events=10).notices)
        == 2
    )


def test_inbox_is_bounded() -> None:
    inbox = Inbox()
    for number in range(10):
        inbox = inbox.deliver(_notice(f"e{number}", number), max_notices=3, max_remembered_events=5)
    assert [notice.event_id for notice in inbox.notices] == ["e9", "e8", "e7"]
    assert inbox.handled_event_ids == ("e9", "e8", "e7", "e6", "e5")


def test_document_round_trip() -> None:
    inbox = Inbox().deliver(_notice("e1"), max_notices=10, max_remembered_events=10)
    document = inbox.to_document()
    assert document["handled_event_ids"] == ["e1"]
    assert document["notices"][0]["created_at"] == "2026-11-22T12:00:00+00:00"
    assert Inbox.from_document(document) == inbox


def test_order_id_survives_a_round_trip() -> None:
    inbox = Inbox().deliver(order_completed_notice("e1", _completed(), NOW), max_notices=10, max_remembered_events=10)
    document = inbox.to_document()
    assert document["notices"][0]["order_id"] == str(ORDER_ID)
    assert Inbox.from_document(document).notices[0].order_id == ORDER_ID


def test_notices_stored_before_order_ids_existed_still_load() -> None:
    stored = {
        "notices": [
            {
                "id": "n-1",
                "event_id": "e1",
                "kind": "welcome",
                "title": "Welcome to Sidecart",
                "message": "Hello Ada, your account is ready.",
                "created_at": "2026-11-22T12:00:00+00:00",
                "added_by_a_later_version": True,
            }
        ],
        "handled_event_ids": ["e1"],
    }
    [notice] = Inbox.from_document(stored).notices
    assert (notice.event_id, notice.order_id) == ("e1", None)
    assert "order_id" not in notice.to_document()


def test_empty_document_is_an_empty_inbox() -> None:
    assert Inbox.from_document({}) == Inbox()


@pytest.mark.parametrize(
    "document",
    [
        [],
        "x",
        {"notices": "x"},
        {"notices": ["x"]},
        {"notices": [{"id": "1"}]},
        {"handled_event_ids": 3},
        {"notices": [{"id": "1", "event_id": "e", "kind": "k", "title": "t", "message": "m", "created_at": "no"}]},
        {
            "notices": [
                {
                    "id": "1",
                    "event_id": "e",
                    "kind": "k",
                    "title": "t",
                    "message": "m",
                    "created_at": "2026-11-22T12:00:00+00:00",
                    "order_id": "not-a-uuid",
                }
            ]
        },
    ],
)
def test_malformed_document_is_refused(document: object) -> None:
    with pytest.raises(MalformedInboxError):
        Inbox.from_document(document)


def test_inbox_key() -> None:
    user_id = uuid.UUID("6f1c2a4e-2b0b-4bb8-9a57-6f0a1d2f9c11")
    assert inbox_key(user_id) == "notices:6f1c2a4e-2b0b-4bb8-9a57-6f0a1d2f9c11"
