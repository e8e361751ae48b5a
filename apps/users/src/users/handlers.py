"""Use cases: register, log in, look up. They reach the outside only through the ports declared here."""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol
from uuid import UUID

from contracts.users import UserRegistered, normalise_email
from sidecart_kit.logs import get_logger
from sidecart_kit.state import OutcomeUnknownError, StoreUnavailableError
from users.domain import (
    EmailClaim,
    EmailTakenError,
    InvalidCredentialsError,
    User,
    UserNotFoundError,
)

log = get_logger(__name__)

# Each round re-reads the claim after losing a write race; three rounds outlast any realistic interleaving.
_CLAIM_ROUNDS = 3


@dataclass(frozen=True)
class StoredClaim:
    claim: EmailClaim
    etag: str


class UserRepository(Protocol):
    async def get_claim(self, email: str) -> StoredClaim | None:
        """The claim on `email` with its etag, or None."""
        ...

    async def save_claim(self, claim: EmailClaim, *, etag: str | None) -> bool:
        """First-write save: without etag only if no claim exists, with etag only if it is unchanged.

        True when this write made the claim, False when the store refused it because of another claim.
        """
        ...

    async def delete_claim(self, email: str, *, etag: str) -> None:
        """Deletes the claim if still at `etag`; does nothing if it has changed since."""
        ...

    async def get_user(self, user_id: UUID) -> User | None: ...

    async def add_user(self, user: User, event: UserRegistered) -> None:
        """Saves the user and its event in one transaction (the outbox): both or neither."""
        ...


class PasswordHasher(Protocol):
    async def hash(self, password: str) -> str: ...

    async def verify(self, password_hash: str | None, password: str) -> bool:
        """False for a None hash too, after the same work as a real check (so timing tells nothing)."""
        ...


@dataclass(frozen=True)
class IssuedToken:
    access_token: str
    expires_in: int


class TokenIssuer(Protocol):
    def issue(self, user: User) -> IssuedToken: ...


@dataclass(frozen=True)
class RegisterUser:
    email: str
    password: str
    name: str


@dataclass(frozen=True)
class LogIn:
    email: str
    password: str


def utc_now() -> datetime:
    return datetime.now(UTC)


class Users:
    def __init__(
        self,
        repository: UserRepository,
        passwords: PasswordHasher,
        tokens: TokenIssuer,
        *,
        claim_grace: timedelta,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._repository = repository
        self._passwords = passwords
        self._tokens = tokens
        self._claim_grace = claim_grace
        self._clock = clock

    async def register(self, command: RegisterUser) -> User:
        """Claims the e-mail, then saves the user with its UserRegistered event; raises EmailTakenError."""
        # Hash first, so a claim is never held while a slow hash runs.
        password_hash = await self._passwords.hash(command.password)
        user = User.register(email=command.email, name=command.name, password_hash=password_hash, now=self._clock())
        await self._claim_email(EmailClaim(email=user.email, user_id=user.id, claimed_at=user.created_at))
        try:
            await self._repository.add_user(user, user.registered_event())
        except StoreUnavailableError as error:
            if isinstance(error, OutcomeUnknownError):
                # The save may yet land: keep the claim. If it never does, a later sign-up takes it over.
                log.warning("user_save_outcome_unknown", user_id=str(user.id), error=str(error))
            else:
                await self._release_claim(user)
            raise
        log.info("user_registered", user_id=str(user.id))
        return user

    async def log_in(self, command: LogIn) -> IssuedToken:
        """A signed token for the user with this e-mail and password, else InvalidCredentialsError."""
        email = normalise_email(command.email)
        stored = await self._repository.get_claim(email)
        user = await self._repository.get_user(stored.claim.user_id) if stored else None
        if user is not None and user.email != email:
            user = None
        # Verify even without a user, so the answer takes as long whichever part was wrong.
        matches = await self._passwords.verify(user.password_hash if user else None, command.password)
        if user is None or not matches:
            raise InvalidCredentialsError
        return self._tokens.issue(user)

    async def get(self, user_id: UUID) -> User:
        user = await self._repository.get_user(user_id)
        if user is None:
            raise UserNotFoundError(str(user_id))
        return user

    async def _claim_email(self, claim: EmailClaim) -> None:
        for _ in range(_CLAIM_ROUNDS):
            current = await self._repository.get_claim(claim.email)
            if current is None:
                if await self._repository.save_claim(claim, etag=None):
                    return
                continue  # another sign-up claimed it between the read and the write: look at its claim
            owner = await self._repository.get_user(current.claim.user_id)
            abandoned = current.claim.is_abandoned(
                owner_exists=owner is not None, now=self._clock(), grace=self._claim_grace
            )
            if not abandoned:
                raise EmailTakenError(claim.email)
            log.warning("email_claim_taken_over", abandoned_by=str(current.claim.user_id), user_id=str(claim.user_id))
            if await self._repository.save_claim(claim, etag=current.etag):
                return
        raise EmailTakenError(claim.email)

    async def _release_claim(self, user: User) -> None:
        """Frees the e-mail of a sign-up whose save failed; best effort, as takeover frees it later anyway."""
        try:
            current = await self._repository.get_claim(user.email)
            if current is not None and current.claim.user_id == user.id:
                await self._repository.delete_claim(user.email, etag=current.etag)
        except StoreUnavailableError as error:
            log.warning("email_claim_not_released", user_id=str(user.id), error=str(error))
