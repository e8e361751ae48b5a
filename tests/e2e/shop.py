"""Shop steps the saga tests share: products with chosen stock, funded users, orders and their final state."""

import uuid
from dataclasses import dataclass
from typing import Any

import httpx

from devstack.platform_run import Platform
from tests.e2e.journeys import SignedUpUser, bearer, eventually, log_in, sign_up

FINAL = {"completed", "cancelled"}
STARTING_CREDIT_CENTS = 10_000


@dataclass(frozen=True)
class Shopper:
    user: SignedUpUser
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return bearer(self.token)


def own_method(app_id: str, method: str) -> str:
    """An app's internal method, reached through its own sidecar (with that app's API token): the one caller Dapr's
    access policies never stop, as an operator acting for the app would."""
    return f"/v1.0/invoke/{app_id}/method/{method}"


async def create_product(platform: Platform, price_cents: int, stock: int) -> str:
    sku = f"E2E-{uuid.uuid4().hex[:10].upper()}"
    async with platform.async_sidecar_client("inventory", timeout=10) as client:
        created = await client.put(
            own_method("inventory", f"admin/products/{sku}"),
            json={"name": f"Test product {sku}", "price_cents": price_cents, "currency": "EUR", "stock": stock},
        )
    assert created.status_code == 201, created.text
    return sku


async def stock_of(platform: Platform, sku: str) -> dict[str, int]:
    async with platform.async_sidecar_client("inventory", timeout=10) as client:
        response = await client.get(own_method("inventory", f"admin/products/{sku}/stock"))
    assert response.status_code == 200, response.text
    ledger: dict[str, int] = response.json()
    return ledger


async def funded_shopper(gateway: httpx.AsyncClient) -> Shopper:
    """A new user whose starting credit (granted by payments on user.registered) has arrived."""
    user = await sign_up(gateway)
    shopper = Shopper(user, await log_in(gateway, user))

    async def wallet_status() -> int:
        return (await gateway.get("/api/v1/users/me/wallet", headers=shopper.headers)).status_code

    assert await eventually(wallet_status, lambda status: status == 200) == 200, "the starting credit never arrived"
    return shopper


async def wallet_of(gateway: httpx.AsyncClient, shopper: Shopper) -> dict[str, Any]:
    response = await gateway.get("/api/v1/users/me/wallet", headers=shopper.headers)
    assert response.status_code == 200, response.text
    wallet: dict[str, Any] = response.json()
    return wallet


async def place_order(
    gateway: httpx.AsyncClient, shopper: Shopper, items: list[dict[str, Any]], key: str | None = None
) -> httpx.Response:
    headers = {**shopper.headers, "Idempotency-Key": key or uuid.uuid4().hex}
    return await gateway.post("/api/v1/orders", json={"items": items}, headers=headers)


async def final_state(
    gateway: httpx.AsyncClient, shopper: Shopper, order_id: str, within: float = 60
) -> dict[str, Any]:
    async def read() -> dict[str, Any]:
        response = await gateway.get(f"/api/v1/orders/{order_id}", headers=shopper.headers)
        if response.status_code == 503:  # orders is coming back after a crash: the client is told to retry
            return {"status": "unavailable"}
        assert response.status_code == 200, response.text
        order: dict[str, Any] = response.json()
        return order

    order: dict[str, Any] = await eventually(read, lambda o: o["status"] in FINAL, within=within)
    assert order["status"] in FINAL, f"order {order_id} still {order['status']} after {within:.0f} s: {order}"
    return order


async def assert_quiet_invariants(
    platform: Platform, gateway: httpx.AsyncClient, skus: dict[str, int], shoppers: list[Shopper]
) -> None:
    """With no saga in flight: no stock held, stock conserved, and every cent of credit accounted for."""
    for sku, initial in skus.items():
        ledger = await stock_of(platform, sku)
        assert ledger["reserved"] == 0, ledger
        assert ledger["available"] >= 0, ledger
        assert ledger["available"] + ledger["sold"] == initial == ledger["initial"], ledger
    for shopper in shoppers:
        wallet = await wallet_of(gateway, shopper)
        assert wallet["balance_cents"] >= 0, wallet
        assert wallet["balance_cents"] + wallet["captured_cents"] == wallet["credits_granted_cents"], wallet
        assert wallet["credits_granted_cents"] == STARTING_CREDIT_CENTS, wallet
