"""The notification rules: which notice each event gives, what a user's inbox holds, how a notice enters it,
and that an event counts once.

Plain Python: no FastAPI, no Dapr. Each user's notices and the ids of the events already handled live in ONE
document, so recording a notice and remembering its event are a single write, atomic on any state store.
"""

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, assert_never
from uuid import UUID

from contracts.orders import OrderCancelled, OrderCompleted
from contracts.users import UserRegistered

WELCOME = "welcome"
ORDER_COMPLETED = "order_completed"
ORDER_CANCELLED = "order_cancelled"
# Notice ids derive from the event id, so the notice for an event is the same whichever delivery records it.
_NOTICE_IDS = uuid.UUID("5b0f3c1e-9a53-4a8e-8f0e-2d7c4b6a9e10")


class MalformedInboxError(ValueError):
    """A stored inbox document that does not have the expected shape."""


def inbox_key(user_id: UUID) -> str:
    """The state key of a user's inbox."""
    return f"notices:{user_id}"


@dataclass(frozen=True)
class Notice:
    id: str
    event_id: str
    kind: str
    title: str
    message: str
    created_at: datetime
    order_id: UUID | None = None  # set on notices about an order

    def to_document(self) -> dict[str, str]:
        document = {
            "id": self.id,
            "event_id": self.event_id,
            "kind": self.kind,
            "title": self.title,
            "message": self.message,
            "created_at": self.created_at.isoformat(),
        }
        if self.order_id is not None:
            document["order_id"] = str(self.order_id)
        return document

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> "Notice":
        """A stored notice; fields added since it was written take their defaults, unknown ones are ignored."""
        try:
            order_id = document.get("order_id")
            return cls(
                id=str(document["id"]),
                event_id=str(document["event_id"]),
                kind=str(document["kind"]),
                title=str(document["title"]),
                message=str(document["message"]),
                created_at=datetime.fromisoformat(str(document["created_at"])),
                order_id=None if order_id is None else UUID(str(order_id)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise MalformedInboxError(f"malformed notice: {exc!r}") from exc


@dataclass(frozen=True)
class Inbox:
    """One user's notices (newest first) and the events already turned into notices (newest first), both bounded.

    An event older than the last `max_remembered_events` for this user would be handled again if redelivered;
    brokers redeliver within minutes, long before a user receives hundreds of newer events.
    """

    notices: tuple[Notice, ...] = ()
    handled_event_ids: tuple[str, ...] = ()

    def has_handled(self, notice: Notice) -> bool:
        """Its event was handled before, or (for an order) the user already has this kind of notice for it.

        The second test matters because the outbox gives each publication a fresh CloudEvent id: a final order
        event published twice arrives as two events, and the order is the business key that makes them one.
        """
        if notice.event_id in self.handled_event_ids:
            return True
        return notice.order_id is not None and any(
            (known.kind, known.order_id) == (notice.kind, notice.order_id) for known in self.notices
        )

    def deliver(self, notice: Notice, *, max_notices: int, max_remembered_events: int) -> "Inbox":
        """The inbox with `notice` on top, its event remembered; unchanged if that event was handled before."""
        if self.has_handled(notice):
            return self
        return replace(
            self,
            notices=(notice, *self.notices)[:max_notices],
            handled_event_ids=(notice.event_id, *self.handled_event_ids)[:max_remembered_events],
        )

    def to_document(self) -> dict[str, Any]:
        return {
            "notices": [notice.to_document() for notice in self.notices],
            "handled_event_ids": list(self.handled_event_ids),
        }

    @classmethod
    def from_document(cls, document: object) -> "Inbox":
        if not isinstance(document, Mapping):
            raise MalformedInboxError("the inbox document is not an object")
        notices = document.get("notices", [])
        handled = document.get("handled_event_ids", [])
        if not isinstance(notices, list) or not isinstance(handled, list):
            raise MalformedInboxError("the inbox document's lists are malformed")
        if not all(isinstance(notice, Mapping) for notice in notices):
            raise MalformedInboxError("a stored notice is not an object")
        return cls(
            notices=tuple(Notice.from_document(notice) for notice in notices),
            handled_event_ids=tuple(str(event_id) for event_id in handled),
        )


# The events that become a notice for the user they name (each carries `user_id`).
NotifiableEvent = UserRegistered | OrderCompleted | OrderCancelled

# Why the saga cancelled an order, as the user reads it; OrderCancelled.reason is one of these stable codes.
_CANCELLATION_REASONS = {
    "out_of_stock": "an item is out of stock",
    "insufficient_funds": "your wallet balance is too low",
    "unknown_sku": "an item is not sold here",
    "step_failed": "a step of processing it failed",
}


def notice_for(event_id: str, event: NotifiableEvent, now: datetime) -> Notice:
    """The notice an event gives the user it names."""
    match event:
        case UserRegistered():
            return welcome_notice(event_id, event, now)
        case OrderCompleted():
            return order_completed_notice(event_id, event, now)
        case OrderCancelled():
            return order_cancelled_notice(event_id, event, now)
        case _:
            assert_never(event)


def welcome_notice(event_id: str, user: UserRegistered, now: datetime) -> Notice:
    """The notice a new user gets."""
    return _notice(WELCOME, event_id, now, "Welcome to Sidecart", f"Hello {user.name}, your account is ready.")


def order_completed_notice(event_id: str, order: OrderCompleted, now: datetime) -> Notice:
    """The notice of an order the saga confirmed: stock reserved, payment captured."""
    total = f"{format_amount(order.total_cents)} {order.currency}"
    message = f"Order {short_order_id(order.order_id)} is confirmed: {total}."
    return _notice(ORDER_COMPLETED, event_id, now, "Your order is confirmed", message, order.order_id)


def order_cancelled_notice(event_id: str, order: OrderCancelled, now: datetime) -> Notice:
    """The notice of an order the saga cancelled, saying why in words (the detail is for operators, not users)."""
    message = f"Order {short_order_id(order.order_id)} was cancelled: {cancellation_reason(order.reason)}."
    return _notice(ORDER_CANCELLED, event_id, now, "Your order was cancelled", message, order.order_id)


def format_amount(cents: int) -> str:
    """An amount in minor units as the user reads it: 4250 -> '42.50' (exact: no float on the way)."""
    return f"{cents // 100}.{cents % 100:02d}"


def short_order_id(order_id: UUID) -> str:
    """The start of an order id, enough for the user to tell their orders apart: '1234abcd…'."""
    return f"{order_id.hex[:8]}\u2026"


def cancellation_reason(code: str) -> str:
    """A reason code as the user reads it; a code this version does not know still reads as a sentence."""
    return _CANCELLATION_REASONS.get(code, "it could not be completed")


def _notice(kind: str, event_id: str, now: datetime, title: str, message: str, order_id: UUID | None = None) -> Notice:
    return Notice(
        id=str(uuid.uuid5(_NOTICE_IDS, f"{kind}:{event_id}")),
        event_id=event_id,
        kind=kind,
        title=title,
        message=message,
        created_at=now,
        order_id=order_id,
    )
