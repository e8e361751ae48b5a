"""The notification rules: what a user's inbox holds, how a notice enters it, and that an event counts once.

Plain Python: no FastAPI, no Dapr. Each user's notices and the ids of the events already handled live in ONE
document, so recording a notice and remembering its event are a single write, atomic on any state store.
"""

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any
from uuid import UUID

from contracts.users import UserRegistered

WELCOME = "welcome"
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

    def to_document(self) -> dict[str, str]:
        return {
            "id": self.id,
            "event_id": self.event_id,
            "kind": self.kind,
            "title": self.title,
            "message": self.message,
            "created_at": self.created_at.isoformat(),
        }

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> "Notice":
        try:
            return cls(
                id=str(document["id"]),
                event_id=str(document["event_id"]),
                kind=str(document["kind"]),
                title=str(document["title"]),
                message=str(document["message"]),
                created_at=datetime.fromisoformat(str(document["created_at"])),
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

    def has_handled(self, event_id: str) -> bool:
        return event_id in self.handled_event_ids

    def deliver(self, notice: Notice, *, max_notices: int, max_remembered_events: int) -> "Inbox":
        """The inbox with `notice` on top, its event remembered; unchanged if that event was handled before."""
        if self.has_handled(notice.event_id):
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


def welcome_notice(event_id: str, user: UserRegistered, now: datetime) -> Notice:
    """The notice a new user gets."""
    return Notice(
        id=str(uuid.uuid5(_NOTICE_IDS, f"{WELCOME}:{event_id}")),
        event_id=event_id,
        kind=WELCOME,
        title="Welcome to Sidecart",
        message=f"Hello {user.name}, your account is ready.",
        created_at=now,
    )
