"""The only module that talks to the Dapr sidecar, through its HTTP API (state, secrets), over the kit's client.

Plain httpx rather than the Dapr SDK: the SDK's client blocks the event loop while it waits for the sidecar,
and its gRPC errors hide the HTTP status codes this module maps (409 etag mismatch versus a failed write).
The state calls are written here rather than through sidecart_kit.state.DaprStateStore because its messages and
log lines quote state keys, and the e-mail claims' keys are e-mail addresses.
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import quote
from uuid import UUID

import httpx
from pydantic import BaseModel, ConfigDict, ValidationError

from contracts.users import UserRegistered
from sidecart_kit.state import (
    FIRST_WRITE,
    SidecarError,
    StoreUnavailableError,
    Versioned,
    send_to_sidecar,
    state_key_path,
)
from users.domain import EmailClaim, User
from users.handlers import StoredClaim

Record = TypeVar("Record", bound=BaseModel)

# Strong consistency: a write is acknowledged by the store's quorum, a read sees it.
STRONG = {"consistency": "strong"}


class _UserRecord(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: UUID
    email: str
    name: str
    password_hash: str
    created_at: datetime


class _ClaimRecord(BaseModel):
    model_config = ConfigDict(extra="ignore")

    user_id: UUID
    claimed_at: datetime


def user_key(user_id: UUID) -> str:
    return f"user:{user_id}"


def claim_key(email: str) -> str:
    return f"email:{email}"


class DaprUserRepository:
    """Users and the unique e-mail index in one Dapr state store, whose outbox publishes UserRegistered."""

    def __init__(self, client: httpx.AsyncClient, store: str) -> None:
        self._client = client
        self._store = store

    async def get_claim(self, email: str) -> StoredClaim | None:
        found = await self._get(claim_key(email))
        if found is None:
            return None
        record = _parse(_ClaimRecord, found.document)
        claim = EmailClaim(email=email, user_id=record.user_id, claimed_at=record.claimed_at)
        return StoredClaim(claim, found.etag or "")

    async def save_claim(self, claim: EmailClaim, *, etag: str | None) -> bool:
        item: dict[str, Any] = {
            "key": claim_key(claim.email),
            "value": _ClaimRecord(user_id=claim.user_id, claimed_at=claim.claimed_at).model_dump(mode="json"),
            "options": FIRST_WRITE,
        }
        if etag is not None:
            item["etag"] = etag
        response = await send_to_sidecar(self._client, "POST", f"/state/{self._store}", json=[item])
        if response.is_success:
            return True
        if response.status_code == httpx.codes.CONFLICT:
            return False  # etag mismatch: the claim changed since it was read
        # A refused first-write is not always a 409 (Redis answers 500 ERR_STATE_SAVE), and a broken store
        # looks the same: what the key holds now tells the two apart.
        error = SidecarError("save e-mail claim", response)
        current = await self.get_claim(claim.email)
        if current is not None:
            return current.claim.user_id == claim.user_id
        if etag is not None:
            return False  # the claim we meant to replace is gone: the caller reads again
        raise error

    async def delete_claim(self, email: str, *, etag: str) -> None:
        response = await send_to_sidecar(
            self._client,
            "DELETE",
            state_key_path(self._store, claim_key(email)),
            params=FIRST_WRITE,
            headers={"If-Match": etag},
        )
        if response.status_code == httpx.codes.CONFLICT:
            return
        if not response.is_success:
            raise SidecarError("delete e-mail claim", response)

    async def get_user(self, user_id: UUID) -> User | None:
        found = await self._get(user_key(user_id))
        if found is None:
            return None
        return User(**_parse(_UserRecord, found.document).model_dump())

    async def add_user(self, user: User, event: UserRegistered) -> None:
        key = user_key(user.id)
        record = _UserRecord.model_validate(user, from_attributes=True).model_dump(mode="json")
        operations = [
            # The record, stored; its metadata becomes the CloudEvent's type when the outbox publishes.
            {
                "operation": "upsert",
                "request": {"key": key, "value": record, "options": STRONG, "metadata": {"type": event.TYPE}},
            },
            # The projection: published instead of the record (which holds the password hash), never stored.
            {
                "operation": "upsert",
                "request": {
                    "key": key,
                    "value": event.model_dump(mode="json"),
                    "metadata": {"outbox.projection": "true", "contentType": "application/json"},
                },
            },
        ]
        response = await send_to_sidecar(
            self._client, "POST", f"/state/{self._store}/transaction", json={"operations": operations}
        )
        if not response.is_success:
            raise SidecarError("save user (outbox transaction)", response)

    async def _get(self, key: str) -> Versioned | None:
        response = await send_to_sidecar(self._client, "GET", state_key_path(self._store, key), params=STRONG)
        if not response.is_success:
            raise SidecarError("get state", response)
        if response.status_code == httpx.codes.NO_CONTENT or not response.content:
            return None
        return Versioned(response.content, response.headers.get("etag"))


def _parse(model: type[Record], data: bytes) -> Record:
    try:
        return model.model_validate_json(data)
    except ValidationError as error:
        # Our own records: a bad one is a bug or corruption, not the caller's fault, so it stays a 500.
        raise RuntimeError(f"a stored {model.__name__} is unreadable") from error


@dataclass(frozen=True)
class SigningKeyPems:
    """The signing keys as the secret store holds them: the current one, and the next and previous when present."""

    current_pem: str
    next_pem: str | None
    previous_pem: str | None


class DaprSecretKeySource:
    """The JWT signing keys (PEM) from a Dapr secret store, read in one bulk call.

    One bulk read rather than a read per secret: the sidecar answers a missing secret with the same 500 as a broken
    store, while the bulk answer simply lacks it, so an absent next or previous key (a fresh install has no previous)
    is told apart from an outage. The sidecar filters the bulk answer by the app's secret scopes.
    """

    def __init__(self, client: httpx.AsyncClient, store: str, *, current: str, next_key: str, previous: str) -> None:
        self._client = client
        self._store = store
        self._current = current
        self._next_key = next_key
        self._previous = previous

    async def signing_keys(self) -> SigningKeyPems:
        response = await send_to_sidecar(self._client, "GET", f"/secrets/{quote(self._store, safe='')}/bulk")
        if not response.is_success:
            raise SidecarError(f"get secrets of {self._store!r}", response)
        secrets = response.json()
        if not isinstance(secrets, dict):
            raise StoreUnavailableError(f"secret store {self._store!r} answered something other than its secrets")
        current = _secret_value(secrets, self._current)
        if current is None:
            raise StoreUnavailableError(f"secret {self._current!r} missing from secret store {self._store!r}")
        return SigningKeyPems(
            current_pem=current,
            next_pem=_secret_value(secrets, self._next_key),
            previous_pem=_secret_value(secrets, self._previous),
        )


def _secret_value(secrets: dict[str, Any], name: str) -> str | None:
    """A bulk answer is {secret: {key: value}}; a single-valued secret's one key is its own name."""
    values = secrets.get(name)
    value = values.get(name) if isinstance(values, dict) else None
    return value if isinstance(value, str) and value else None
