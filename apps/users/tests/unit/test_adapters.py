"""The Dapr adapters against the fake sidecar (conftest.FakeSidecar), which answers like daprd 1.18 on Redis."""

import json
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import httpx
import pytest

from contracts.users import UserRegistered
from sidecart_kit.state import OutcomeUnknownError, StoreUnavailableError
from users.adapters import DaprSecretKeySource, DaprUserRepository, SigningKeyPems
from users.domain import EmailClaim, User

STORE = "users-store"
NOW = datetime(2026, 1, 1, tzinfo=UTC)


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


async def test_a_failed_claim_on_a_free_key_is_an_unavailable_store(store: DaprUserRepository, sidecar: Any) -> None:
    sidecar.failing.add("save")

    with pytest.raises(StoreUnavailableError) as raised:
        await store.save_claim(claim(), etag=None)
    assert not isinstance(raised.value, OutcomeUnknownError)


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


async def test_keys_with_url_characters_reach_the_store_unchanged(store: DaprUserRepository, sidecar: Any) -> None:
    email = "a+b/c?d#e%f@example.com"

    await store.save_claim(claim(email), etag=None)

    assert f"email:{email}" in sidecar.state
    stored = await store.get_claim(email)
    assert stored is not None
    assert stored.claim.email == email


async def test_a_user_and_its_event_go_in_one_outbox_transaction(store: DaprUserRepository, sidecar: Any) -> None:
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


async def test_every_write_asks_for_strong_consistency(store: DaprUserRepository, sidecar: Any) -> None:
    user = User(id=uuid4(), email="ann@example.com", name="Ann", password_hash="h", created_at=NOW)
    await store.save_claim(claim(), etag=None)
    await store.delete_claim("ann@example.com", etag="1")
    await store.add_user(user, user.registered_event())

    save, delete, transaction = (request for request in sidecar.requests if request.method != "GET")
    assert json.loads(save.content)[0]["options"] == {"concurrency": "first-write", "consistency": "strong"}
    assert delete.url.params["consistency"] == "strong"
    record = json.loads(transaction.content)["operations"][0]["request"]
    assert record["options"] == {"consistency": "strong"}


async def test_a_failed_transaction_is_unavailable_with_a_known_outcome(
    store: DaprUserRepository, sidecar: Any
) -> None:
    sidecar.failing.add("transaction")
    user = User(id=uuid4(), email="ann@example.com", name="Ann", password_hash="h", created_at=NOW)

    with pytest.raises(StoreUnavailableError) as raised:
        await store.add_user(user, user.registered_event())
    assert not isinstance(raised.value, OutcomeUnknownError)
    assert await store.get_user(user.id) is None


def _key_source(client: httpx.AsyncClient) -> DaprSecretKeySource:
    return DaprSecretKeySource(
        client,
        "secretstore",
        current="jwt-signing-key",
        next_key="jwt-next-signing-key",
        previous="jwt-previous-signing-key",
    )


async def test_the_signing_keys_come_from_the_secret_store(sidecar_client: httpx.AsyncClient, sidecar: Any) -> None:
    sidecar.secrets |= {"jwt-next-signing-key": "next-pem", "jwt-previous-signing-key": "previous-pem"}
    sidecar.secrets["ingest-api-keys"] = "not ours"

    keys = await _key_source(sidecar_client).signing_keys()

    assert keys == SigningKeyPems(
        current_pem=sidecar.secrets["jwt-signing-key"], next_pem="next-pem", previous_pem="previous-pem"
    )


async def test_a_fresh_install_has_no_previous_key(sidecar_client: httpx.AsyncClient, sidecar: Any) -> None:
    sidecar.secrets["jwt-next-signing-key"] = "next-pem"

    keys = await _key_source(sidecar_client).signing_keys()

    assert (keys.next_pem, keys.previous_pem) == ("next-pem", None)


async def test_without_the_current_key_the_keys_are_unavailable(
    sidecar_client: httpx.AsyncClient, sidecar: Any
) -> None:
    sidecar.secrets = {"jwt-next-signing-key": "next-pem"}
    with pytest.raises(StoreUnavailableError, match="jwt-signing-key"):
        await _key_source(sidecar_client).signing_keys()


async def test_a_failing_secret_store_is_unavailable_not_an_absent_key(
    sidecar_client: httpx.AsyncClient, sidecar: Any
) -> None:
    sidecar.failing.add("secrets")
    with pytest.raises(StoreUnavailableError):
        await _key_source(sidecar_client).signing_keys()
