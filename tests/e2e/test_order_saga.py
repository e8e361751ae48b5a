"""The order saga on Dapr Workflow, end to end: success, compensation, idempotency and concurrency."""

import asyncio
import uuid

import httpx
import pytest

from devstack.platform_run import Platform
from tests.e2e.journeys import eventually
from tests.e2e.shop import (
    assert_quiet_invariants,
    create_product,
    final_state,
    funded_shopper,
    place_order,
    stock_of,
    wallet_of,
)

pytestmark = pytest.mark.e2e

NOTICE_WITHIN_S = 90


def step_names(order: dict[str, object], status: str) -> list[str]:
    steps = order["steps"]
    assert isinstance(steps, list)
    return [step["name"] for step in steps if step["status"] == status]


async def test_an_order_is_accepted_at_once_and_completes(platform: Platform, gateway: httpx.AsyncClient) -> None:
    sku = await create_product(platform, price_cents=1250, stock=10)
    shopper = await funded_shopper(gateway)

    accepted = await place_order(gateway, shopper, [{"sku": sku, "quantity": 2}])

    assert accepted.status_code == 202, accepted.text
    order_id = accepted.json()["order_id"]
    assert accepted.headers["location"] == f"/api/v1/orders/{order_id}"
    order = await final_state(gateway, shopper, order_id)
    assert order["status"] == "completed", order
    assert order["reason"] is None
    assert order["total_cents"] == 2500
    assert step_names(order, "succeeded") == ["reserve_stock", "charge_payment", "confirm"]
    assert await stock_of(platform, sku) == {"sku": sku, "initial": 10, "available": 8, "reserved": 0, "sold": 2}
    wallet = await wallet_of(gateway, shopper)
    assert (wallet["balance_cents"], wallet["captured_cents"]) == (10_000 - 2500, 2500)
    listed = (await gateway.get("/api/v1/orders", headers=shopper.headers)).json()["items"]
    assert [o["order_id"] for o in listed] == [order_id]

    async def notice_kinds() -> list[str]:
        items = (await gateway.get("/api/v1/users/me/notifications", headers=shopper.headers)).json()["items"]
        return [str(item["kind"]) for item in items]

    # Notices follow through the broker: on data an earlier run left behind, Kafka delivers that run's unconsumed
    # events first, one at a time per partition, so the notice may trail by tens of seconds.
    assert "order_completed" in await eventually(
        notice_kinds, lambda kinds: "order_completed" in kinds, within=NOTICE_WITHIN_S
    )


async def test_insufficient_funds_cancels_and_releases_the_stock(
    platform: Platform, gateway: httpx.AsyncClient
) -> None:
    sku = await create_product(platform, price_cents=6000, stock=5)
    shopper = await funded_shopper(gateway)

    accepted = await place_order(gateway, shopper, [{"sku": sku, "quantity": 2}])

    order = await final_state(gateway, shopper, accepted.json()["order_id"])
    assert (order["status"], order["reason"]) == ("cancelled", "insufficient_funds"), order
    assert "release_stock" in step_names(order, "succeeded")
    await assert_quiet_invariants(platform, gateway, {sku: 5}, [shopper])
    assert (await stock_of(platform, sku))["available"] == 5
    assert (await wallet_of(gateway, shopper))["balance_cents"] == 10_000


async def test_out_of_stock_cancels_without_charging(platform: Platform, gateway: httpx.AsyncClient) -> None:
    sku = await create_product(platform, price_cents=100, stock=1)
    shopper = await funded_shopper(gateway)

    accepted = await place_order(gateway, shopper, [{"sku": sku, "quantity": 2}])

    order = await final_state(gateway, shopper, accepted.json()["order_id"])
    assert (order["status"], order["reason"]) == ("cancelled", "out_of_stock"), order
    assert "charge_payment" not in step_names(order, "succeeded")
    wallet = await wallet_of(gateway, shopper)
    assert wallet["balance_cents"] == 10_000
    assert [entry["kind"] for entry in wallet["entries"]] == ["credit"]
    await assert_quiet_invariants(platform, gateway, {sku: 1}, [shopper])


async def test_the_same_idempotency_key_gives_the_same_order_and_one_charge(
    platform: Platform, gateway: httpx.AsyncClient
) -> None:
    sku = await create_product(platform, price_cents=700, stock=10)
    shopper = await funded_shopper(gateway)
    key = uuid.uuid4().hex
    items = [{"sku": sku, "quantity": 1}]

    first, again, concurrent = (
        await place_order(gateway, shopper, items, key),
        *await asyncio.gather(place_order(gateway, shopper, items, key), place_order(gateway, shopper, items, key)),
    )
    other_body = await place_order(gateway, shopper, [{"sku": sku, "quantity": 3}], key)

    assert {first.status_code, again.status_code, concurrent.status_code} == {202}
    assert first.json()["order_id"] == again.json()["order_id"] == concurrent.json()["order_id"]
    assert other_body.status_code == 409, other_body.text
    assert other_body.json()["error"]["code"] == "idempotency_key_reused"
    await final_state(gateway, shopper, first.json()["order_id"])
    wallet = await wallet_of(gateway, shopper)
    assert [entry["kind"] for entry in wallet["entries"]].count("charge") == 1
    assert wallet["balance_cents"] == 10_000 - 700
    assert (await stock_of(platform, sku))["sold"] == 1


async def test_bad_orders_are_refused_before_any_saga_starts(platform: Platform, gateway: httpx.AsyncClient) -> None:
    sku = await create_product(platform, price_cents=100, stock=5)
    shopper = await funded_shopper(gateway)

    no_key = await gateway.post(
        "/api/v1/orders", json={"items": [{"sku": sku, "quantity": 1}]}, headers=shopper.headers
    )
    unknown_sku = await place_order(gateway, shopper, [{"sku": "NO-SUCH-SKU", "quantity": 1}])
    zero = await place_order(gateway, shopper, [{"sku": sku, "quantity": 0}])
    empty = await place_order(gateway, shopper, [])
    too_many = await place_order(gateway, shopper, [{"sku": f"{sku}-{n}", "quantity": 1} for n in range(21)])

    assert no_key.status_code == 400, no_key.text
    for refused in (unknown_sku, zero, empty, too_many):
        assert refused.status_code == 422, refused.text
        assert refused.json()["error"]["details"]
    assert (await gateway.get("/api/v1/orders", headers=shopper.headers)).json()["items"] == []
    assert await stock_of(platform, sku) == {"sku": sku, "initial": 5, "available": 5, "reserved": 0, "sold": 0}


async def test_another_users_order_is_not_found(platform: Platform, gateway: httpx.AsyncClient) -> None:
    sku = await create_product(platform, price_cents=100, stock=5)
    owner, stranger = await funded_shopper(gateway), await funded_shopper(gateway)
    order_id = (await place_order(gateway, owner, [{"sku": sku, "quantity": 1}])).json()["order_id"]

    response = await gateway.get(f"/api/v1/orders/{order_id}", headers=stranger.headers)

    assert response.status_code == 404, response.text
    await final_state(gateway, owner, order_id)


async def test_twenty_concurrent_orders_for_five_units_sell_exactly_five(
    platform: Platform, gateway: httpx.AsyncClient
) -> None:
    sku = await create_product(platform, price_cents=100, stock=5)
    shoppers = list(await asyncio.gather(*(funded_shopper(gateway) for _ in range(4))))

    accepted = await asyncio.gather(
        *(place_order(gateway, shoppers[n % 4], [{"sku": sku, "quantity": 1}]) for n in range(20))
    )

    assert all(response.status_code == 202 for response in accepted), [r.text for r in accepted]
    orders = await asyncio.gather(
        *(final_state(gateway, shoppers[n % 4], r.json()["order_id"]) for n, r in enumerate(accepted))
    )
    outcomes = sorted((o["status"], o["reason"]) for o in orders)
    assert outcomes == [("cancelled", "out_of_stock")] * 15 + [("completed", None)] * 5
    await assert_quiet_invariants(platform, gateway, {sku: 5}, shoppers)
