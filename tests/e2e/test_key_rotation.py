"""A signing-key rotation on the running platform logs no one out: the token signed before it still works, a new login
is signed with the key users had published ahead, the gateway accepts both, and a key users does not publish is 401.

The rotation is the one `make rotate-keys` does; the platform is left as later tests need it: every key that signed a
token is still published, and users is restarted and ready.
"""

import asyncio
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from devstack.keys import restart_users, rotate_signing_keys
from devstack.platform_run import Platform
from gateway.settings import Settings as GatewaySettings
from tests.e2e.journeys import SignedUpUser, bearer, eventually, log_in, sign_up

pytestmark = pytest.mark.e2e

GATEWAY = GatewaySettings()


async def published_kids(platform: Platform) -> list[str]:
    """The key ids of the JWKS users serves, in its order (current, next, previous)."""
    users = f"http://127.0.0.1:{platform.run_file.app('users').app_port}"
    headers = {"dapr-api-token": platform.tokens["users"].app_api_token}
    async with httpx.AsyncClient(base_url=users, headers=headers, timeout=5) as client:
        response = await client.get("/.well-known/jwks.json")
    assert response.status_code == 200, response.text
    return [key["kid"] for key in response.json()["keys"]]


async def successful_jwks_fetches() -> float:
    """How many times the gateway has fetched users' JWKS (its metrics, on their own port)."""
    async with httpx.AsyncClient(timeout=5) as client:
        metrics = (await client.get(f"http://127.0.0.1:{GATEWAY.metrics_port}/metrics")).text
    found = re.search(r'^gateway_jwks_fetches_total\{outcome="ok"\} (\S+)$', metrics, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def kid_of(token: str) -> str:
    kid: str = jwt.get_unverified_header(token)["kid"]
    return kid


def token_signed_by_an_unpublished_key(user: SignedUpUser, kid: str) -> str:
    """A token right in every claim, signed by a key users never had."""
    now = datetime.now(UTC)
    claims = {
        "sub": user.id,
        "email": user.email,
        "iss": GATEWAY.jwt_issuer,
        "aud": GATEWAY.jwt_audience,
        "iat": now,
        "nbf": now,
        "exp": now + timedelta(minutes=5),
        "jti": uuid.uuid4().hex,
    }
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid})


async def profile_status(gateway: httpx.AsyncClient, token: str, user: SignedUpUser) -> int:
    response = await gateway.get("/api/v1/users/me", headers=bearer(token))
    if response.status_code == 200:
        assert response.json()["id"] == user.id
    return response.status_code


async def log_in_once_users_answers(gateway: httpx.AsyncClient, user: SignedUpUser) -> str:
    """A login, retried while the gateway's route to the restarted users still fails (5xx)."""

    async def attempt() -> httpx.Response:
        return await gateway.post("/api/v1/auth/token", json={"email": user.email, "password": user.password})

    response: Any = await eventually(attempt, lambda r: r.status_code < 500, within=30)
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


@pytest.mark.timeout(180)
async def test_a_rotation_keeps_old_tokens_valid_and_signs_new_ones_with_the_key_published_ahead(
    platform: Platform, gateway: httpx.AsyncClient
) -> None:
    before = await published_kids(platform)
    assert len(before) >= 2, before  # a next key is published ahead (and a previous one after any rotation)
    current, upcoming = before[0], before[1]
    user = await sign_up(gateway)
    old_token = await log_in(gateway, user)
    assert kid_of(old_token) == current
    assert await profile_status(gateway, old_token, user) == 200

    rotate_signing_keys(platform.layout)
    await asyncio.to_thread(restart_users, platform)

    after = await published_kids(platform)
    assert after[0] == upcoming  # the key verifiers already held now signs
    assert after[2] == current  # the key that signed old_token is still published
    assert after[1] not in before  # a new next key
    new_token = await log_in_once_users_answers(gateway, user)
    assert kid_of(new_token) == upcoming

    # A key users does not publish is refused, whether the token names an unknown key id or a published one. The
    # unknown id makes the gateway fetch the JWKS again (at most once per jwks_min_refetch_seconds); waiting that long
    # and asking again makes sure it did, so the two tokens below are judged against the JWKS after the rotation.
    fetches = await successful_jwks_fetches()
    impostor_kid = f"impostor-{uuid.uuid4().hex[:8]}"
    assert await profile_status(gateway, token_signed_by_an_unpublished_key(user, impostor_kid), user) == 401
    await asyncio.sleep(GATEWAY.jwks_min_refetch_seconds + 0.5)
    assert await profile_status(gateway, token_signed_by_an_unpublished_key(user, impostor_kid), user) == 401
    assert await successful_jwks_fetches() > fetches
    assert await profile_status(gateway, token_signed_by_an_unpublished_key(user, upcoming), user) == 401

    assert await profile_status(gateway, old_token, user) == 200
    assert await profile_status(gateway, new_token, user) == 200
