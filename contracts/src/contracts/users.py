"""Events owned by the users service."""

from datetime import datetime
from typing import ClassVar
from uuid import UUID

from pydantic import Field

from contracts.events import Event


class UserRegistered(Event):
    """A user signed up. Published through the users store's outbox, once per saved user."""

    TOPIC: ClassVar[str] = "users"
    TYPE: ClassVar[str] = "sidecart.user.registered.v1"

    user_id: UUID
    email: str = Field(description="The e-mail address as the user typed it, normalised to lower case.")
    name: str
    registered_at: datetime
