"""Fakes of the users service's ports and the fixtures that wire them in: no network, nothing patched.

Tests receive the fakes through fixtures (with --import-mode=importlib a test cannot import this module).
"""

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import unquote
from uuid import UUID

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from fastapi import FastAPI
from fastapi.testclient import TestClient

from contracts.users import UserRegistered
from sidecart_kit.state import StoreUnavailableError
from sidecart_kit.testing import FakeSidecarHealth
from users.domain import EmailClaim, User
from users.handlers import IssuedToken, StoredClaim, Users
from users.main import create_app
from users.security import RsaTokenSigner
from users.settings import Settings

START = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
STORE = "users-store"
GRACE = timedelta(seconds=30)


@dataclass
class FakeClock:
    now: datetime = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class FakeUserRepository:
    """An in-memory store with Dapr's first-write and etag rules; each call yields, so concurrent calls interleave."""

    claims: dict[str, tuple[EmailClaim, int]] = field(default_factory=dict)
    users: dict[UUID, User] = field(default_factory=dict)
    events: list[UserRegistered] = field(default_factory=list)
    add_user_error: StoreUnavailableError | None = None
    deleted_claims: list[str] = field(default_factory=list)

    async def get_claim(self, email: str) -> StoredClaim | None:
        await asyncio.sleep(0)
        found = self.claims.get(email)
        return StoredClaim(found[0], str(found[1])) if found else None

    async def save_claim(self, claim: EmailClaim, *, etag: str | None) -> bool:
        await asyncio.sleep(0)
        current = self.claims.get(claim.email)
        if etag is None and current is not None:
            return False
        if etag is not None and (current is None or str(current[1]) != etag):
            return False
        self.claims[claim.email] = (claim, current[1] + 1 if current else 1)
        return True

    async def delete_claim(self, email: str, *, etag: str) -> None:
        await asyncio.sleep(0)
        current = self.claims.get(email)
        if current is not None and str(current[1]) == etag:
            del self.claims[email]
            self.deleted_claims.append(email)

    async def get_user(self, user_id: UUID) -> User | None:
        await asyncio.sleep(0)
        return self.users.get(user_id)

    async def add_user(self, user: User, event: UserRegistered) -> None:
        await asyncio.sleep(0)
        if self.add_user_error is not None:
            raise self.add_user_error
        self.users[user.id] = user
        self.events.append(event)

    def put_claim(self, email: str, user_id: UUID, claimed_at: datetime) -> None:
        self.claims[email] = (EmailClaim(email=email, user_id=user_id, claimed_at=claimed_at), 1)


@dataclass
class FakePasswordHasher:
    """Reversible 'hashes'; records every verification so tests can see a check ran without a user too."""

    verified: list[str | None] = field(default_factory=list)

    async def hash(self, password: str) -> str:
        return f"hashed:{password}"

    async def verify(self, password_hash: str | None, password: str) -> bool:
        self.verified.append(password_hash)
        return password_hash == f"hashed:{password}"


class FakeTokenIssuer:
    def issue(self, user: User) -> IssuedToken:
        return IssuedToken(access_token=f"token-for-{user.id}", expires_in=60)


def dapr_error(status: int, code: str) -> httpx.Response:
    return httpx.Response(status, json={"errorCode": code, "message": f"{code} from the fake sidecar"})


class FakeSidecar:
    """The slice of daprd's HTTP API the adapters use, with the Redis state store's answers.

    A first-write save without etag on an existing key fails with 500 ERR_STATE_SAVE (not 409), as daprd does.
    """

    def __init__(self) -> None:
        self.state: dict[str, tuple[Any, int]] = {}
        self.transactions: list[list[dict[str, Any]]] = []
        self.requests: list[httpx.Request] = []
        self.secrets = {"jwt-signing-key": "-----BEGIN PRIVATE KEY-----\n..."}
        self.failing: set[str] = set()  # "save", "transaction", "secrets"

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        parts = [unquote(part) for part in request.url.raw_path.decode().split("?")[0].split("/")[2:]]
        match request.method, parts:
            case "GET", ["healthz", "outbound"]:
                return httpx.Response(204)
            case "GET", ["secrets", "secretstore", "bulk"]:
                if "secrets" in self.failing:
                    return dapr_error(500, "ERR_SECRET_GET")
                return httpx.Response(200, json={name: {name: value} for name, value in self.secrets.items()})
            case "POST", ["state", store, "transaction"] if store == STORE:
                return self._transaction(json.loads(request.content)["operations"])
            case "POST", ["state", store] if store == STORE:
                return self._save(json.loads(request.content))
            case "GET", ["state", store, key] if store == STORE:
                if key not in self.state:
                    return httpx.Response(204)
                value, version = self.state[key]
                return httpx.Response(200, json=value, headers={"etag": str(version)})
            case "DELETE", ["state", store, key] if store == STORE:
                if key in self.state and request.headers.get("if-match") != str(self.state[key][1]):
                    return dapr_error(409, "ERR_STATE_DELETE")
                self.state.pop(key, None)
                return httpx.Response(204)
        return httpx.Response(404, text="404 page not found")

    def _save(self, items: list[dict[str, Any]]) -> httpx.Response:
        if "save" in self.failing:
            return dapr_error(500, "ERR_STATE_SAVE")
        for item in items:
            current = self.state.get(item["key"])
            etag = item.get("etag")
            if etag is None and current is not None and item["options"]["concurrency"] == "first-write":
                return dapr_error(500, "ERR_STATE_SAVE")
            if etag is not None and (current is None or str(current[1]) != etag):
                return dapr_error(409, "ERR_STATE_SAVE")
            self.state[item["key"]] = (item["value"], current[1] + 1 if current else 1)
        return httpx.Response(204)

    def _transaction(self, operations: list[dict[str, Any]]) -> httpx.Response:
        if "transaction" in self.failing:
            return dapr_error(500, "ERR_STATE_TRANSACTION")
        self.transactions.append(operations)
        for operation in operations:
            request = operation["request"]
            if request.get("metadata", {}).get("outbox.projection") != "true":
                current = self.state.get(request["key"])
                self.state[request["key"]] = (request["value"], current[1] + 1 if current else 1)
        return httpx.Response(204)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def repository() -> FakeUserRepository:
    return FakeUserRepository()


@pytest.fixture
def passwords() -> FakePasswordHasher:
    return FakePasswordHasher()


@pytest.fixture
def claim_grace() -> timedelta:
    return GRACE


@pytest.fixture
def users(repository: FakeUserRepository, passwords: FakePasswordHasher, clock: FakeClock) -> Users:
    return Users(repository, passwords, FakeTokenIssuer(), claim_grace=GRACE, clock=clock)


@pytest.fixture(scope="session")
def private_key() -> RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def signer(private_key: RSAPrivateKey) -> RsaTokenSigner:
    return RsaTokenSigner(private_key, issuer="test-issuer", audience="test-audience", ttl=timedelta(minutes=5))


@pytest.fixture
def make_app(
    repository: FakeUserRepository,
    passwords: FakePasswordHasher,
    signer: RsaTokenSigner,
    sidecar_health: FakeSidecarHealth,
) -> Callable[[Settings], FastAPI]:
    """The real app with fakes on app.state, where its lifespan would put the real ones (it dials the sidecar, so it
    never runs)."""

    def make(settings: Settings) -> FastAPI:
        application = create_app(settings)
        application.state.users = Users(repository, passwords, signer, claim_grace=GRACE)
        application.state.key_set = signer
        application.state.sidecar_health = sidecar_health
        return application

    return make


@pytest.fixture
def app(make_app: Callable[[Settings], FastAPI]) -> FastAPI:
    return make_app(Settings())


@pytest.fixture
def client(app: FastAPI) -> TestClient:
    # Not entered as a context manager: that would run the lifespan, which needs a sidecar.
    return TestClient(app)


@pytest.fixture
def sidecar() -> FakeSidecar:
    return FakeSidecar()
