"""Sign-up → login → me → notifications, through the gateway over HTTP, on the real platform."""

import asyncio
import uuid

import httpx
import jwt
import pytest

from tests.e2e.journeys import bearer, eventually, log_in, new_email, sign_up

pytestmark = pytest.mark.e2e


async def test_a_new_user_signs_up_logs_in_sees_the_profile_and_a_welcome_notice(gateway: httpx.AsyncClient) -> None:
    email = new_email()
    signed_up = await gateway.post(
        "/api/v1/users", json={"email": email.upper(), "password": "correct horse", "name": "Ada Lovelace"}
    )
    assert signed_up.status_code == 201, signed_up.text
    user = signed_up.json()
    assert user["email"] == email
    assert user["name"] == "Ada Lovelace"
    assert "password" not in signed_up.text
    uuid.UUID(user["id"])

    login = await gateway.post("/api/v1/auth/token", json={"email": email, "password": "correct horse"})
    assert login.status_code == 200, login.text
    token = login.json()
    assert token["token_type"] == "bearer"
    assert token["expires_in"] > 0
    claims = jwt.decode(token["access_token"], options={"verify_signature": False})
    assert claims["sub"] == user["id"]
    assert jwt.get_unverified_header(token["access_token"])["alg"] == "RS256"

    me = await gateway.get("/api/v1/users/me", headers=bearer(token["access_token"]))
    assert me.status_code == 200, me.text
    assert me.json()["id"] == user["id"]
    assert me.json()["email"] == email

    async def notices() -> list[dict[str, object]]:
        response = await gateway.get("/api/v1/users/me/notifications", headers=bearer(token["access_token"]))
        assert response.status_code == 200, response.text
        items: list[dict[str, object]] = response.json()["items"]
        return items

    # The outbox publishes user.registered; notifications stores the welcome notice: eventually consistent.
    # As in test_order_saga: a backlog an earlier run left on the broker is delivered first.
    items = await eventually(notices, lambda found: len(found) >= 1, within=90)
    assert len(items) == 1
    assert items[0]["kind"] == "welcome"


async def test_concurrent_sign_ups_with_one_email_give_one_201_and_the_rest_409(gateway: httpx.AsyncClient) -> None:
    email = new_email()
    attempts = [
        gateway.post("/api/v1/users", json={"email": email, "password": f"password-{n}", "name": f"Racer {n}"})
        for n in range(4)
    ]

    responses = await asyncio.gather(*attempts)

    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201, 409, 409, 409], [r.text for r in responses]
    conflict = next(r for r in responses if r.status_code == 409).json()
    assert conflict["error"]["code"] == "email_taken"
    # Exactly the winner can log in, with the winner's password.
    winner = next(r for r in responses if r.status_code == 201).json()
    racer = int(winner["name"].split()[-1])
    login = await gateway.post("/api/v1/auth/token", json={"email": email, "password": f"password-{racer}"})
    assert login.status_code == 200


async def test_each_user_sees_only_their_own_profile_and_notices(gateway: httpx.AsyncClient) -> None:
    alice, bob = await sign_up(gateway), await sign_up(gateway)
    alice_token, bob_token = await log_in(gateway, alice), await log_in(gateway, bob)

    alice_me = (await gateway.get("/api/v1/users/me", headers=bearer(alice_token))).json()
    bob_me = (await gateway.get("/api/v1/users/me", headers=bearer(bob_token))).json()

    assert (alice_me["id"], bob_me["id"]) == (alice.id, bob.id)
