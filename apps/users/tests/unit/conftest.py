"""Fakes of the users service's ports and the fixtures that wire them in: no network, nothing patched.

Tests receive the fakes through fixtures (with --import-mode=importlib a test cannot import this module).
"""

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from uuid import UUID

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from fastapi import FastAPI
from fastapi.testclient import TestClient

from contracts.users import UserRegistered
from users.api import get_key_set, get_sidecar_probe, get_users
from users.domain import EmailClaim, User
from users.handlers import IssuedToken, StoredClaim, StoreUnavailableError, Users
from users.main import create_app
from users.security import RsaTokenSigner
from users.settings import Settings

START = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
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


@dataclass
class FakeSidecarProbe:
    ready: bool = True

    async def is_ready(self) -> bool:
        return self.ready


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
def probe() -> FakeSidecarProbe:
    return FakeSidecarProbe()


@pytest.fixture
def make_app(
    repository: FakeUserRepository,
    passwords: FakePasswordHasher,
    signer: RsaTokenSigner,
    probe: FakeSidecarProbe,
) -> Callable[[Settings], FastAPI]:
    """The real app with fakes behind its dependencies; the lifespan (which dials the sidecar) never runs."""

    def make(settings: Settings) -> FastAPI:
        application = create_app(settings)
        handler = Users(repository, passwords, signer, claim_grace=GRACE)
        application.dependency_overrides[get_users] = lambda: handler
        application.dependency_overrides[get_key_set] = lambda: signer
        application.dependency_overrides[get_sidecar_probe] = lambda: probe
        return application

    return make


@pytest.fixture
def app(make_app: Callable[[Settings], FastAPI]) -> FastAPI:
    return make_app(Settings())


@pytest.fixture
def client(app: FastAPI) -> TestClient:
    # Not entered as a context manager: that would run the lifespan, which needs a sidecar.
    return TestClient(app)
