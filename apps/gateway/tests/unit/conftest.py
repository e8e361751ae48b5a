"""Keys and tokens made in the test, and fakes of the gateway's ports (no network, nothing patched)."""

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from gateway.domain import ApiKeysUnavailableError, KeysUnavailableError, UpstreamRequest, UpstreamResponse
from gateway.handlers import Gateway

ISSUER = "sidecart-users"
AUDIENCE = "sidecart"
API_KEY = "k-live-0123456789"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Signer:
    """An RSA key pair standing in for the users service's signing key."""

    def __init__(self, kid: str, bits: int = 2048) -> None:
        self.kid = kid
        self.private_key = rsa.generate_private_key(public_exponent=65537, key_size=bits)

    def jwk(self, **extra: Any) -> dict[str, Any]:
        jwk: dict[str, Any] = jwt.algorithms.RSAAlgorithm.to_jwk(self.private_key.public_key(), as_dict=True)
        jwk.update(kid=self.kid, use="sig", alg="RS256")
        jwk.update(extra)
        return jwk

    def public_pem(self) -> bytes:
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def token(self, *, kid: str | None = "default", **claims: Any) -> str:
        """A signed RS256 token; a claim given as None is left out."""
        payload = standard_claims()
        payload.update(claims)
        payload = {name: value for name, value in payload.items() if value is not None}
        headers = {} if kid is None else {"kid": self.kid if kid == "default" else kid}
        return jwt.encode(payload, self.private_key, algorithm="RS256", headers=headers)


def standard_claims(subject: str | None = None) -> dict[str, Any]:
    now = int(time.time())
    return {
        "sub": subject or str(uuid.uuid4()),
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + 600,
    }


def forged_token(header: dict[str, Any], claims: dict[str, Any], secret: bytes | None) -> str:
    """A token built by hand: alg=none (secret None) or HMAC-SHA256 with `secret`, as an attacker would."""
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    if secret is None:
        return signing_input + "."
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


class FakeJwksSource:
    """Serves a JWKS document (or fails), counting fetches."""

    def __init__(self, *signers: Signer) -> None:
        self.document: object = {"keys": [signer.jwk() for signer in signers]}
        self.available = True
        self.fetches = 0

    async def fetch_jwks(self) -> object:
        self.fetches += 1
        if not self.available:
            raise KeysUnavailableError("users is down")
        return self.document


class FakeApiKeySource:
    """Serves the secret's value (or fails), counting reads."""

    def __init__(self, value: str = f" {API_KEY} , k-other ,") -> None:
        self.value = value
        self.available = True
        self.fetches = 0

    async def fetch_api_keys(self) -> str:
        self.fetches += 1
        if not self.available:
            raise ApiKeysUnavailableError("secret store down")
        return self.value


class FakeUpstream:
    """Records every call and answers with a canned response (or raises)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, UpstreamRequest]] = []
        self.answer: UpstreamResponse | Exception = UpstreamResponse(
            200, {"content-type": "application/json"}, b'{"ok": true}'
        )

    async def invoke(self, app_id: str, request: UpstreamRequest) -> UpstreamResponse:
        self.calls.append((app_id, request))
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="session")
def signer() -> Signer:
    return Signer("key-1")


@pytest.fixture(scope="session")
def other_signer() -> Signer:
    return Signer("key-2")


@pytest.fixture(scope="session")
def small_signer() -> Signer:
    return Signer("weak", bits=1024)


@pytest.fixture
def jwks_source(signer: Signer) -> FakeJwksSource:
    return FakeJwksSource(signer)


@pytest.fixture
def upstream() -> FakeUpstream:
    return FakeUpstream()


@pytest.fixture
def key_source() -> FakeApiKeySource:
    return FakeApiKeySource()


@pytest.fixture
def gateway(upstream: FakeUpstream) -> Gateway:
    """The use case with the default app ids, over the fake upstream."""
    return Gateway(
        upstream,
        users_app_id="users",
        notifications_app_id="notifications",
        inventory_app_id="inventory",
        payments_app_id="payments",
        orders_app_id="orders",
    )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def forge() -> Callable[[dict[str, Any], dict[str, Any], bytes | None], str]:
    return forged_token


@pytest.fixture
def claims() -> Callable[..., dict[str, Any]]:
    return standard_claims


@pytest.fixture
def make_signer() -> Callable[[str], Signer]:
    return Signer


@pytest.fixture
def make_jwks_source() -> Callable[..., FakeJwksSource]:
    return FakeJwksSource


@pytest.fixture
def make_key_source() -> Callable[..., FakeApiKeySource]:
    return FakeApiKeySource
