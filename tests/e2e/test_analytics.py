"""Telemetry to reports, end to end: exact figures, redeliveries counted once, a crash caught up, poison dead-lettered.

Every test writes events into a minute of its own and a sku of its own, so the figures it reads are exactly its own
whatever else the platform has seen: one reservation for the module hands out minutes of yesterday, never the same one
twice (no other module writes into past minutes), and only minutes that the read models show empty (earlier runs may
have left figures on the same data).
"""

import asyncio
import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from devstack.platform_run import Platform
from tests.e2e.journeys import bearer, eventually, log_in, sign_up
from tests.e2e.shop import own_method

pytestmark = pytest.mark.e2e

TELEMETRY_TYPES = ("page_view", "product_view", "search", "add_to_cart")


@pytest.fixture(scope="module")
async def token(gateway: httpx.AsyncClient) -> str:
    return await log_in(gateway, await sign_up(gateway))


class Minutes:
    """Hands out minutes of yesterday that no other test of this module gets and that hold no events yet."""

    def __init__(self, gateway: httpx.AsyncClient, token: str) -> None:
        self._gateway, self._token = gateway, token
        yesterday = (datetime.now(UTC) - timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
        # A random start keeps consecutive runs on the same data apart; the walk from it never repeats a minute.
        start = random.randrange(1440)
        self._candidates = (yesterday + timedelta(minutes=(start + n) % 1440) for n in range(1440))

    async def reserve(self) -> datetime:
        for minute in self._candidates:
            if not any([await minute_count(self._gateway, self._token, kind, minute) for kind in TELEMETRY_TYPES]):
                return minute
        raise AssertionError("no empty minute left in yesterday's read models")


@pytest.fixture(scope="module")
def minutes(gateway: httpx.AsyncClient, token: str) -> Minutes:
    return Minutes(gateway, token)


def events(minute: datetime, sku: str, views: int, carts: int, searches: int) -> list[dict[str, Any]]:
    def one(kind: str, second: int, **fields: Any) -> dict[str, Any]:
        ts = (minute + timedelta(seconds=second)).isoformat()
        return {"id": str(uuid.uuid4()), "type": kind, "ts": ts, **fields}

    return (
        [one("product_view", n % 60, sku=sku) for n in range(views)]
        + [one("add_to_cart", n % 60, sku=sku) for n in range(carts)]
        + [one("search", n % 60, properties={"q": sku}) for n in range(searches)]
    )


async def post(gateway: httpx.AsyncClient, token: str, batch: list[dict[str, Any]]) -> None:
    response = await gateway.post("/api/v1/events", json={"events": batch}, headers=bearer(token))
    assert response.status_code == 202, response.text
    assert response.json()["accepted"] == len(batch), response.text


async def minute_count(gateway: httpx.AsyncClient, token: str, kind: str, minute: datetime) -> int:
    params = {"type": kind, "from": minute.isoformat(), "to": (minute + timedelta(minutes=1)).isoformat()}
    response = await gateway.get("/api/v1/analytics/timeseries", params=params, headers=bearer(token))
    assert response.status_code == 200, response.text
    return sum(int(point["count"]) for point in response.json()["points"])


async def sku_views(gateway: httpx.AsyncClient, token: str, sku: str) -> int:
    response = await gateway.get("/api/v1/analytics/top-products", params={"limit": 100}, headers=bearer(token))
    assert response.status_code == 200, response.text
    return next((int(item["views"]) for item in response.json()["items"] if item["sku"] == sku), 0)


async def test_known_events_give_exact_figures(gateway: httpx.AsyncClient, token: str, minutes: Minutes) -> None:
    minute, sku = await minutes.reserve(), f"AN-{uuid.uuid4().hex[:8].upper()}"

    await post(gateway, token, events(minute, sku, views=7, carts=3, searches=5))

    assert await eventually(lambda: sku_views(gateway, token, sku), lambda n: n >= 7, within=60) == 7
    assert await eventually(lambda: minute_count(gateway, token, "add_to_cart", minute), lambda n: n >= 3) == 3
    assert await minute_count(gateway, token, "search", minute) == 5
    assert await minute_count(gateway, token, "product_view", minute) == 7
    assert await minute_count(gateway, token, "page_view", minute) == 0


async def test_a_batch_sent_twice_counts_once(gateway: httpx.AsyncClient, token: str, minutes: Minutes) -> None:
    minute, sku = await minutes.reserve(), f"AN-{uuid.uuid4().hex[:8].upper()}"
    batch = events(minute, sku, views=4, carts=0, searches=0)
    sentinel = events(minute, sku, views=0, carts=0, searches=1)

    await post(gateway, token, batch)
    await post(gateway, token, batch)  # what a client does after a 503: the same events again
    await post(gateway, token, sentinel)

    assert await eventually(lambda: minute_count(gateway, token, "search", minute), lambda n: n >= 1) == 1
    # top-products may answer from documents read up to a second before (ANALYTICS_REPORT_MAX_AGE_SECONDS).
    assert await eventually(lambda: sku_views(gateway, token, sku), lambda n: n >= 4) == 4


async def test_bad_report_queries_are_422(gateway: httpx.AsyncClient, token: str) -> None:
    now = datetime.now(UTC)
    bad = [
        {"type": "nonsense", "from": now.isoformat(), "to": (now + timedelta(minutes=5)).isoformat()},
        {"type": "search", "from": now.isoformat(), "to": (now - timedelta(minutes=5)).isoformat()},
        {"type": "search", "from": "yesterday", "to": now.isoformat()},
    ]
    for params in bad:
        response = await gateway.get("/api/v1/analytics/timeseries", params=params, headers=bearer(token))
        assert response.status_code == 422, (params, response.text)
    response = await gateway.get("/api/v1/analytics/top-products", params={"limit": 0}, headers=bearer(token))
    assert response.status_code == 422, response.text


async def test_totals_are_exact_after_analytics_is_killed_mid_stream(
    platform: Platform, gateway: httpx.AsyncClient, token: str, minutes: Minutes
) -> None:
    minute, sku = await minutes.reserve(), f"AN-{uuid.uuid4().hex[:8].upper()}"
    batches = [events(minute, sku, views=50, carts=0, searches=0) for _ in range(8)]

    for batch in batches[:4]:
        await post(gateway, token, batch)
    snapshot = platform.kill("analytics", "app")
    for batch in batches[4:]:
        await post(gateway, token, batch)  # accepted by the broker while analytics is down
    await asyncio.sleep(1)
    platform.restart(snapshot)
    await asyncio.to_thread(platform.wait_until_ready, "analytics")

    assert await eventually(lambda: sku_views(gateway, token, sku), lambda n: n >= 400, within=90) == 400
    assert await minute_count(gateway, token, "product_view", minute) == 400


async def test_a_poison_message_lands_in_the_dead_letter_topic(platform: Platform) -> None:
    poison_id = f"poison-{uuid.uuid4()}"
    envelope = {
        "specversion": "1.0",
        "id": poison_id,
        "source": "e2e",
        "type": "sidecart.telemetry.event.v1",
        "datacontenttype": "application/json",
        "data": {"id": "not-a-uuid", "type": "teleport", "ts": "whenever"},
    }
    async with httpx.AsyncClient(timeout=10) as client:
        published = await client.post(
            # Through ingest's sidecar: the one app the pubsub's publishing scopes let publish telemetry.
            f"{platform.sidecar_url('ingest')}/v1.0/publish/pubsub/telemetry",
            json=envelope,
            headers={"content-type": "application/cloudevents+json", **platform.sidecar_headers("ingest")},
        )
        assert published.status_code == 204, published.text

        async def dead_letter_ids() -> list[str]:
            response = await client.get(
                f"{platform.sidecar_url('analytics')}{own_method('analytics', 'admin/dead-letters')}",
                headers=platform.sidecar_headers("analytics"),
            )
            assert response.status_code == 200, response.text
            return [str(item["id"]) for item in response.json()["items"]]

        assert poison_id in await eventually(dead_letter_ids, lambda ids: poison_id in ids, within=60)
