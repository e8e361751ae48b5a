"""The rules of users: who a user is, who owns an e-mail address, when an unfinished claim may be taken."""

from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID, uuid4

from contracts.users import UserRegistered, normalise_email

PASSWORD_MIN_LENGTH = 8
PASSWORD_MAX_LENGTH = 256
NAME_MAX_LENGTH = 100


def has_ascii_local_part(email: str) -> bool:
    """Whether the part before the @ is plain ASCII. Other scripts hold letters that look like Latin ones (a Cyrillic
    a passes for a Latin one) and that no normal form folds, so such an address could pass for another user's."""
    return email.rpartition("@")[0].isascii()


@dataclass(frozen=True)
class User:
    id: UUID
    email: str
    name: str
    password_hash: str
    created_at: datetime

    @classmethod
    def register(cls, *, email: str, name: str, password_hash: str, now: datetime) -> "User":
        return cls(
            id=uuid4(),
            email=normalise_email(email),
            name=name.strip(),
            password_hash=password_hash,
            created_at=now,
        )

    def registered_event(self) -> UserRegistered:
        return UserRegistered(user_id=self.id, email=self.email, name=self.name, registered_at=self.created_at)


@dataclass(frozen=True)
class EmailClaim:
    """The unique-index entry: `email` belongs to `user_id` since `claimed_at`."""

    email: str
    user_id: UUID
    claimed_at: datetime

    def is_abandoned(self, *, owner_exists: bool, now: datetime, grace: timedelta) -> bool:
        """A claim whose user record never appeared, too old for its sign-up to be still running."""
        return not owner_exists and now - self.claimed_at > grace


class EmailTakenError(Exception):
    """Another user already owns this e-mail address."""


class InvalidCredentialsError(Exception):
    """No user with this e-mail and password; deliberately silent about which of the two was wrong."""


class UserNotFoundError(Exception):
    """No user with this id."""
