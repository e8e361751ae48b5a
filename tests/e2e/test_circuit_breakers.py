"""Circuit breakers on the real platform (components/<profile>/resiliency.yaml, outage-breaker): an app that is down
opens its callers' breaker, which then fails their calls at once and closes again once the app is back; a burst of
a caller's mistakes (4xx answers, access-control denials) never opens it."""

import time
import uuid

import httpx
import pytest

from devstack.platform_run import Platform
from tests.e2e.journeys import eventually
from tests.e2e.shop import assert_quiet_invariants, create_product, final_state, funded_shopper, place_order

pytestmark = pytest.mark.e2e

# The breaker opens after this many failures in a row (trip: consecutiveFailures >= 5).
TRIP = 5
OPEN = "circuit breaker is open"
# A charge the payments app refuses with 422: the body names no order.
NOT_A_CHARGE = {"not": "a charge"}


async def charge_through_orders(platform: Platform) -> httpx.Response:
    """A call the orders app is allowed to make to payments, through orders' own sidecar (its breaker)."""
    async with platform.async_sidecar_client("orders", timeout=15) as sidecar:
        return await sidecar.post("/v1.0/invoke/payments/method/charges", json=NOT_A_CHARGE)


async def payments_ready(platform: Platform) -> bool:
    try:
        async with httpx.AsyncClient(timeout=2) as client:
            app_port = platform.run_file.app("payments").app_port
            return (await client.get(f"http://127.0.0.1:{app_port}/readyz")).status_code == 200
    except httpx.HTTPError:
        return False


async def test_a_burst_of_a_callers_mistakes_never_opens_the_breaker(platform: Platform) -> None:
    async with platform.async_sidecar_client("orders", timeout=15) as sidecar:
        for _ in range(TRIP * 3):
            refused = await sidecar.post("/v1.0/invoke/payments/method/charges", json=NOT_A_CHARGE)
            assert refused.status_code == 422, refused.text
            # Not an operation orders may call: payments' sidecar denies it.
            denied = await sidecar.get(f"/v1.0/invoke/payments/method/wallets/{uuid.uuid4()}")
            assert denied.status_code == 403, denied.text

    # Still closed: the call reaches payments, which answers for itself.
    after = await charge_through_orders(platform)
    assert after.status_code == 422, after.text


async def test_an_app_down_opens_its_callers_breaker_which_closes_when_it_is_back(
    platform: Platform, gateway: httpx.AsyncClient
) -> None:
    sku = await create_product(platform, price_cents=300, stock=3)
    shopper = await funded_shopper(gateway)
    snapshot = platform.kill("payments", "app")
    try:
        # Orders' calls fail while payments is down, until the breaker opens.
        started = time.monotonic()
        answers = [await charge_through_orders(platform) for _ in range(TRIP + 2)]
        failing_ms = (time.monotonic() - started) * 1000 / len(answers)
        assert all(answer.status_code >= 500 for answer in answers), [a.text for a in answers]
        assert OPEN in answers[-1].text, answers[-1].text
        # Open: a call fails at once, without reaching payments' sidecar or waiting for a timeout.
        started = time.monotonic()
        short_circuited = await charge_through_orders(platform)
        failed_in_ms = (time.monotonic() - started) * 1000
        assert OPEN in short_circuited.text, short_circuited.text
        # Figures for the reader (pytest -rP), not asserted: timings are for benchmarks.
        print(f"calls until the breaker opened: {failing_ms:.1f} ms each; with it open: {failed_in_ms:.1f} ms")  # noqa: T201

        # An order placed now is accepted; its saga's charge meets the open breaker and waits per its policy.
        accepted = await place_order(gateway, shopper, [{"sku": sku, "quantity": 1}])
        assert accepted.status_code == 202, accepted.text
    finally:
        platform.restart(snapshot)

    assert await eventually(lambda: payments_ready(platform), bool, within=60), platform.restarted_status()
    # The breaker lets one call through after its open period; that call succeeding closes it.
    closed = await eventually(lambda: charge_through_orders(platform), lambda r: r.status_code == 422, within=60)
    assert closed.status_code == 422, closed.text
    # The saga ends, by completing or by compensating, and leaves nothing held.
    order = await final_state(gateway, shopper, accepted.json()["order_id"], within=120)
    assert (order["status"], order["reason"]) in {("completed", None), ("cancelled", "step_failed")}, order
    await assert_quiet_invariants(platform, gateway, {sku: 3}, [shopper])
