"""Sagas survive a crash of the orders app or of its sidecar: each one still ends, and nothing leaks."""

import asyncio
import uuid
from typing import Any, Literal

import httpx
import pytest

from devstack.platform_run import Platform
from tests.e2e.journeys import eventually
from tests.e2e.shop import (
    Shopper,
    assert_quiet_invariants,
    create_product,
    final_state,
    funded_shopper,
    place_order,
)

pytestmark = pytest.mark.e2e

IN_FLIGHT = 20
RECOVERY_BOUND_S = 120
RETRYABLE = {500, 502, 503, 504}


async def _count_done(tasks: list["asyncio.Task[httpx.Response]"]) -> int:
    return sum(task.done() for task in tasks)


async def place_until_accepted(
    gateway: httpx.AsyncClient, shopper: Shopper, items: list[dict[str, Any]], key: str
) -> httpx.Response:
    """What a careful client does: on a 5xx or a broken connection, retry the same request with the same
    Idempotency-Key."""
    outcome = "no attempt"
    for _ in range(120):
        try:
            response = await place_order(gateway, shopper, items, key)
        except httpx.TransportError as error:
            outcome = repr(error)
        else:
            if response.status_code not in RETRYABLE:
                return response
            outcome = response.text
        await asyncio.sleep(0.5)
    raise AssertionError(f"order with key {key} never accepted: {outcome}")


async def orders_readiness(platform: Platform) -> str:
    """The app's own readiness ("ready": its sidecar answers and its workflow worker is connected again), or what
    its /readyz said instead, for the failure message."""
    try:
        async with httpx.AsyncClient(timeout=2) as client:
            app_port = platform.run_file.app("orders").app_port
            response = await client.get(f"http://127.0.0.1:{app_port}/readyz")
    except httpx.HTTPError as error:
        return repr(error)
    return "ready" if response.status_code == 200 else f"{response.status_code} {response.text}"


async def orders_state(platform: Platform) -> str:
    """What a failure message needs to tell a dead part from a wedged one: each restarted process, alive or not, and
    what the orders sidecar's metadata says of its actor runtime and workflow workers (or why it did not answer)."""
    try:
        async with platform.async_sidecar_client("orders", timeout=3) as client:
            metadata = (await client.get("/v1.0/metadata")).json()
        sidecar = f"actorRuntime {metadata.get('actorRuntime')}, workflows {metadata.get('workflows')}"
    except (httpx.HTTPError, ValueError) as error:
        sidecar = f"metadata: {error!r}"
    return f"{platform.restarted_status()}; orders sidecar: {sidecar}"


def is_ready(readiness: str) -> bool:
    return readiness == "ready"


@pytest.mark.parametrize("part", ["app", "sidecar"])
async def test_sagas_in_flight_finish_after_the_orders_process_is_killed(
    platform: Platform, gateway: httpx.AsyncClient, part: Literal["app", "sidecar"]
) -> None:
    sku = await create_product(platform, price_cents=150, stock=12)
    shoppers = list(await asyncio.gather(*(funded_shopper(gateway) for _ in range(4))))
    items = [{"sku": sku, "quantity": 1}]
    placing = [
        asyncio.create_task(place_until_accepted(gateway, shoppers[n % 4], items, key=uuid.uuid4().hex))
        for n in range(IN_FLIGHT)
    ]
    # Crash while orders are still arriving and earlier sagas are mid-flight; clients retry with their key.
    await eventually(lambda: _count_done(placing), lambda done: done >= IN_FLIGHT // 4, within=30)
    snapshot = platform.kill("orders", part)
    await asyncio.sleep(1)
    platform.restart(snapshot)
    accepted = await asyncio.gather(*placing)

    readiness = await eventually(lambda: orders_readiness(platform), is_ready, within=60)
    assert is_ready(readiness), f"orders {part} did not come back: {readiness} ({await orders_state(platform)})"
    orders = await asyncio.gather(
        *(
            final_state(gateway, shoppers[n % 4], r.json()["order_id"], within=RECOVERY_BOUND_S)
            for n, r in enumerate(accepted)
        )
    )
    completed = [o for o in orders if o["status"] == "completed"]
    assert len(completed) == 12
    assert all(o["reason"] == "out_of_stock" for o in orders if o["status"] == "cancelled")
    await assert_quiet_invariants(platform, gateway, {sku: 12}, shoppers)


RESTART_ROUNDS: tuple[tuple[Literal["app", "sidecar"], ...], ...] = (("app",), ("sidecar",), ("app", "sidecar")) * 4
IN_FLIGHT_PER_ROUND = 3


@pytest.mark.timeout(900)
async def test_the_workflow_worker_comes_back_after_every_restart(
    platform: Platform, gateway: httpx.AsyncClient
) -> None:
    """Twelve crashes in a row (the app, its sidecar, both), each with sagas in flight: after every one the worker
    reconnects, the sagas it had in hand finish, and a new order completes."""
    stock = len(RESTART_ROUNDS) * (IN_FLIGHT_PER_ROUND + 1)
    sku = await create_product(platform, price_cents=100, stock=stock)
    shopper = await funded_shopper(gateway)
    items = [{"sku": sku, "quantity": 1}]

    async def completes(key: str, what: str) -> None:
        accepted = await place_until_accepted(gateway, shopper, items, key)
        assert accepted.status_code == 202, f"{what}: {accepted.text}"
        order = await final_state(gateway, shopper, accepted.json()["order_id"], within=90)
        assert order["status"] == "completed", f"{what}: {order}"

    for round_number, parts in enumerate(RESTART_ROUNDS, start=1):
        what = f"round {round_number} ({' and '.join(parts)} restarted)"
        in_flight = [uuid.uuid4().hex for _ in range(IN_FLIGHT_PER_ROUND)]
        for key in in_flight:
            accepted = await place_order(gateway, shopper, items, key)
            assert accepted.status_code == 202, accepted.text
        snapshots = [platform.kill("orders", part) for part in parts]
        for snapshot in snapshots:
            platform.restart(snapshot)
        readiness = await eventually(lambda: orders_readiness(platform), is_ready, within=60)
        assert is_ready(readiness), f"{what}: orders not ready: {readiness} ({await orders_state(platform)})"
        # The sagas it held when it died, by their keys (the same key gives the same order), then a new one.
        await asyncio.gather(*(completes(key, what) for key in in_flight))
        await completes(uuid.uuid4().hex, what)

    await assert_quiet_invariants(platform, gateway, {sku: stock}, [shopper])
