"""Events owned by the users service, and how it compares e-mail addresses."""

import unicodedata
from datetime import datetime
from typing import ClassVar
from uuid import UUID

from pydantic import Field

from contracts.events import Event


class UserRegistered(Event):
    """A user signed up. Published through the users store's outbox, once per saved user."""

    TOPIC: ClassVar[str] = "users"
    TYPE: ClassVar[str] = "sidecart.user.registered.v1"
    FACT_KEY: ClassVar[tuple[str, ...]] = ("user_id",)

    user_id: UUID
    email: str = Field(description="The e-mail address as the user typed it, normalised (see normalise_email).")
    name: str
    registered_at: datetime


def normalise_email(email: str) -> str:
    """One spelling per address, so `Ann@Example.com `, `ann@example.com` and the same address in full-width
    letters are the same user: compatibility forms folded (NFKC), case folded, trimmed. Users keys accounts by it;
    the gateway keys its per-account login limit by it."""
    return unicodedata.normalize("NFKC", email).strip().casefold()
