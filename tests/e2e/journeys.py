"""Small steps the end-to-end tests share: a fresh user, a token, waiting for an eventually consistent read."""

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass(frozen=True)
class SignedUpUser:
    id: str
    email: str
    password: str
    name: str


def new_email() -> str:
    return f"e2e-{uuid.uuid4().hex[:12]}@example.com"


async def sign_up(gateway: httpx.AsyncClient, email: str | None = None) -> SignedUpUser:
    email = email or new_email()
    password = f"pw-{uuid.uuid4().hex[:10]}"
    response = await gateway.post("/api/v1/users", json={"email": email, "password": password, "name": "E2E User"})
    assert response.status_code == 201, response.text
    body = response.json()
    return SignedUpUser(id=body["id"], email=email, password=password, name="E2E User")


async def log_in(gateway: httpx.AsyncClient, user: SignedUpUser) -> str:
    response = await gateway.post("/api/v1/auth/token", json={"email": user.email, "password": user.password})
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def eventually(read: Callable[[], Awaitable[Any]], holds: Callable[[Any], bool], within: float = 20.0) -> Any:
    """Reads until `holds(value)` or the timeout; returns the last value read, so the caller asserts on it."""
    deadline = time.monotonic() + within
    value = await read()
    while not holds(value) and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        value = await read()
    return value
