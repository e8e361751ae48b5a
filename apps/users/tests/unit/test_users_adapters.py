"""The Dapr adapters against a fake sidecar (httpx.MockTransport) that answers like daprd 1.18 on Redis."""

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote
from uuid import uuid4

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from fastapi.testclient import TestClient

from contracts.users import UserRegistered
from users.adapters import DaprSecretKeySource, DaprSidecarProbe, DaprUserRepository, create_sidecar_client
from users.domain import EmailClaim, User
from users.handlers import StoreUnavailableError
from users.main import create_app
from users.observability import current_traceparent
from users.settings import Settings

STORE = "users-store"
NOW = datetime(2026, 1, 1, tzinfo=UTC)


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
        self.failing: set[str] = set()  # "save", "transaction"

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        parts = [unquote(part) for part in request.url.raw_path.decode().split("?")[0].split("/")[2:]]
        match request.method, parts:
            case "GET", ["healthz", "outbound"]:
                return httpx.Response(204)
            case "GET", ["secrets", "secretstore", name]:
                if name not in self.secrets:
                    return dapr_error(500, "ERR_SECRET_GET")
                return httpx.Response(200, json={name: self.secrets[name]})
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
def sidecar() -> FakeSidecar:
    return FakeSidecar()


@pytest.fixture
async def sidecar_client(sidecar: FakeSidecar) -> AsyncIterator[httpx.AsyncClient]:
    async with create_sidecar_client(Settings(), transport=httpx.MockTransport(sidecar)) as client:
        yield client


@pytest.fixture
def store(sidecar_client: httpx.AsyncClient) -> DaprUserRepository:
    return DaprUserRepository(sidecar_client, STORE)


def claim(email: str = "ann@example.com") -> EmailClaim:
    return EmailClaim(email=email, user_id=uuid4(), claimed_at=NOW)


async def test_the_first_claim_wins_and_the_second_is_refused(store: DaprUserRepository) -> None:
    first, second = claim(), claim()

    assert await store.save_claim(first, etag=None)
    assert not await store.save_claim(second, etag=None)
    stored = await store.get_claim("ann@example.com")
    assert stored is not None
    assert (stored.claim, stored.etag) == (first, "1")


async def test_a_failed_claim_on_a_free_key_is_an_unavailable_store(
    store: DaprUserRepository, sidecar: FakeSidecar
) -> None:
    sidecar.failing.add("save")

    with pytest.raises(StoreUnavailableError) as raised:
        await store.save_claim(claim(), etag=None)
    assert not raised.value.outcome_unknown


async def test_a_takeover_needs_the_etag_it_read(store: DaprUserRepository) -> None:
    await store.save_claim(claim(), etag=None)
    takeover = claim()

    assert not await store.save_claim(takeover, etag="7")
    assert await store.save_claim(takeover, etag="1")
    stored = await store.get_claim("ann@example.com")
    assert stored is not None
    assert stored.claim.user_id == takeover.user_id


async def test_a_claim_is_deleted_only_at_its_etag(store: DaprUserRepository) -> None:
    await store.save_claim(claim(), etag=None)

    await store.delete_claim("ann@example.com", etag="9")
    assert await store.get_claim("ann@example.com") is not None

    await store.delete_claim("ann@example.com", etag="1")
    assert await store.get_claim("ann@example.com") is None


async def test_keys_with_url_characters_reach_the_store_unchanged(
    store: DaprUserRepository, sidecar: FakeSidecar
) -> None:
    email = "a+b/c?d#e%f@example.com"

    await store.save_claim(claim(email), etag=None)

    assert f"email:{email}" in sidecar.state
    stored = await store.get_claim(email)
    assert stored is not None
    assert stored.claim.email == email


async def test_a_user_and_its_event_go_in_one_outbox_transaction(
    store: DaprUserRepository, sidecar: FakeSidecar
) -> None:
    user = User(id=uuid4(), email="ann@example.com", name="Ann", password_hash="$argon2id$x", created_at=NOW)

    await store.add_user(user, user.registered_event())

    [operations] = sidecar.transactions
    record, projection = (operation["request"] for operation in operations)
    assert [operation["operation"] for operation in operations] == ["upsert", "upsert"]
    assert record["key"] == projection["key"] == f"user:{user.id}"
    assert record["metadata"] == {"type": UserRegistered.TYPE}
    assert record["value"]["password_hash"] == "$argon2id$x"
    assert projection["metadata"] == {"outbox.projection": "true", "contentType": "application/json"}
    assert UserRegistered.model_validate(projection["value"]) == user.registered_event()
    assert "password_hash" not in projection["value"]
    assert await store.get_user(user.id) == user


async def test_a_failed_transaction_is_unavailable_with_a_known_outcome(
    store: DaprUserRepository, sidecar: FakeSidecar
) -> None:
    sidecar.failing.add("transaction")
    user = User(id=uuid4(), email="ann@example.com", name="Ann", password_hash="h", created_at=NOW)

    with pytest.raises(StoreUnavailableError) as raised:
        await store.add_user(user, user.registered_event())
    assert not raised.value.outcome_unknown
    assert await store.get_user(user.id) is None


@pytest.mark.parametrize(
    ("error", "outcome_unknown"),
    [(httpx.ConnectError("refused"), False), (httpx.ReadTimeout("slow"), True)],
    ids=["never-sent", "sent-then-timed-out"],
)
async def test_transport_failures_say_whether_the_request_may_have_landed(
    error: httpx.HTTPError, outcome_unknown: bool
) -> None:
    def fail(request: httpx.Request) -> httpx.Response:
        raise error

    async with create_sidecar_client(Settings(), transport=httpx.MockTransport(fail)) as failing_client:
        store = DaprUserRepository(failing_client, STORE)
        user = User(id=uuid4(), email="ann@example.com", name="Ann", password_hash="h", created_at=NOW)
        with pytest.raises(StoreUnavailableError) as raised:
            await store.add_user(user, user.registered_event())
    assert raised.value.outcome_unknown is outcome_unknown


async def test_the_signing_key_comes_from_the_secret_store(
    sidecar_client: httpx.AsyncClient, sidecar: FakeSidecar
) -> None:
    assert (
        await DaprSecretKeySource(sidecar_client, "secretstore", "jwt-signing-key").private_key_pem()
        == (sidecar.secrets["jwt-signing-key"])
    )
    with pytest.raises(StoreUnavailableError):
        await DaprSecretKeySource(sidecar_client, "secretstore", "no-such-key").private_key_pem()


async def test_the_probe_is_ready_only_when_the_sidecar_answers(sidecar_client: httpx.AsyncClient) -> None:
    assert await DaprSidecarProbe(sidecar_client).is_ready()

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    async with create_sidecar_client(Settings(), transport=httpx.MockTransport(refuse)) as down:
        assert not await DaprSidecarProbe(down).is_ready()


async def test_the_api_token_and_the_trace_go_to_the_sidecar(sidecar: FakeSidecar) -> None:
    settings = Settings(DAPR_API_TOKEN="api-token")
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    async with create_sidecar_client(settings, transport=httpx.MockTransport(sidecar)) as token_client:
        token = current_traceparent.set(traceparent)
        try:
            await DaprSidecarProbe(token_client).is_ready()
        finally:
            current_traceparent.reset(token)

    [request] = sidecar.requests
    assert request.headers["dapr-api-token"] == "api-token"
    assert request.headers["traceparent"] == traceparent


# --- the whole app, started (lifespan included) against the fake sidecar ---------------------------------


def test_the_app_starts_with_the_key_from_the_secret_store_and_serves_a_sign_up(
    sidecar: FakeSidecar, private_key: RSAPrivateKey
) -> None:
    sidecar.secrets["jwt-signing-key"] = private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    app = create_app(Settings(), sidecar_transport=httpx.MockTransport(sidecar))

    with TestClient(app) as client:  # runs the lifespan: key, hasher, adapters
        signed_up = client.post("/users", json={"email": "ann@example.com", "password": "correct horse", "name": "A"})
        token = client.post("/auth/token", json={"email": "ann@example.com", "password": "correct horse"})
        jwks = client.get("/.well-known/jwks.json").json()

    assert signed_up.status_code == 201, signed_up.text
    assert token.status_code == 200, token.text
    [operations] = sidecar.transactions
    assert operations[1]["request"]["value"]["user_id"] == signed_up.json()["id"]
    public_key = jwt.PyJWKSet.from_dict(jwks).keys[0]
    claims = jwt.decode(token.json()["access_token"], public_key, algorithms=["RS256"], audience="sidecart")
    assert (claims["sub"], claims["iss"]) == (signed_up.json()["id"], "sidecart-users")
