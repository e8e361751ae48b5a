"""The gateway's rate limits, through the real platform: password guessing is held back at the edge, with an
honest Retry-After, while the account's owner, from another address, still logs in."""

import httpx
import pytest

from devstack.platform_run import Platform
from gateway.settings import Settings as GatewaySettings
from tests.e2e.journeys import log_in, sign_up

pytestmark = pytest.mark.e2e


async def test_guessing_a_password_meets_429_and_the_owner_still_logs_in_from_elsewhere(
    platform: Platform, gateway: httpx.AsyncClient
) -> None:
    owner = await sign_up(gateway)
    burst = int(GatewaySettings().login_limit_per_account_and_address.split("/")[0])
    guess = {"email": owner.email, "password": "not-the-password"}

    statuses = [(await gateway.post("/api/v1/auth/token", json=guess)).status_code for _ in range(burst + 3)]

    assert statuses[:burst] == [401] * burst  # wrong passwords, judged by users
    assert statuses[burst:] == [429] * 3  # held back at the gateway: users never sees them
    refused = await gateway.post("/api/v1/auth/token", json=guess)
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(refused.headers["retry-after"]) <= 60  # the limit's window is a minute
    # From this address even the right password waits; from another (127.0.0.2 is loopback too) it works.
    assert (await gateway.post("/api/v1/auth/token", json={**guess, "password": owner.password})).status_code == 429
    elsewhere = httpx.AsyncHTTPTransport(local_address="127.0.0.2")
    async with httpx.AsyncClient(base_url=platform.gateway_url, timeout=15, transport=elsewhere) as other_address:
        assert await log_in(other_address, owner)
