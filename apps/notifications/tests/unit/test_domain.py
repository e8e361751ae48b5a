"""The inbox rules: newest first, bounded, each event once, and a document form that survives a round trip."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from contracts.users import UserRegistered
from notifications.domain import Inbox, MalformedInboxError, Notice, inbox_key, welcome_notice

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


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


def test_deliver_puts_the_newest_notice_first_and_remembers_its_event() -> None:
    inbox = Inbox().deliver(_notice("e1"), max_notices=10, max_remembered_events=10)
    inbox = inbox.deliver(_notice("e2", 1), max_notices=10, max_remembered_events=10)
    assert [notice.event_id for notice in inbox.notices] == ["e2", "e1"]
    assert inbox.has_handled("e1")
    assert inbox.has_handled("e2")
    assert not inbox.has_handled("e3")


def test_deliver_ignores_an_event_already_handled() -> None:
    inbox = Inbox().deliver(_notice("e1"), max_notices=10, max_remembered_events=10)
    assert inbox.deliver(_notice("e1", 5), max_notices=10, max_remembered_events=10) == inbox


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
    ],
)
def test_malformed_document_is_refused(document: object) -> None:
    with pytest.raises(MalformedInboxError):
        Inbox.from_document(document)


def test_inbox_key() -> None:
    user_id = uuid.UUID("6f1c2a4e-2b0b-4bb8-9a57-6f0a1d2f9c11")
    assert inbox_key(user_id) == "notices:6f1c2a4e-2b0b-4bb8-9a57-6f0a1d2f9c11"
