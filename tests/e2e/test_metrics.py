"""Metrics on the real platform: the Prometheus the dev stack starts scrapes every app and every sidecar, counts the
orders the test completes, and sees an app go down and come back, with nothing edited by hand."""

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from devstack import prometheus
from devstack.platform_run import Platform
from tests.e2e.journeys import eventually
from tests.e2e.shop import create_product, final_state, funded_shopper, place_order

pytestmark = pytest.mark.e2e

# Two scrape intervals and a little: what Prometheus needs to see a change.
SEEN_WITHIN_S = 15


@pytest.fixture
async def metrics(platform: Platform) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=prometheus.url(), timeout=10) as client:
        yield client


async def query(metrics: httpx.AsyncClient, expression: str) -> list[dict[str, Any]]:
    """The instant vector `expression` evaluates to now."""
    response = await metrics.get("/api/v1/query", params={"query": expression})
    assert response.status_code == 200, response.text
    result: list[dict[str, Any]] = response.json()["data"]["result"]
    return result


async def value(metrics: httpx.AsyncClient, expression: str) -> float:
    """The value of an expression aggregated to no labels (`sum(...)`, `max(...)`), 0 when it has no series yet."""
    result = await query(metrics, f"({expression}) or vector(0)")
    assert len(result) == 1, result
    return float(result[0]["value"][1])


async def app_targets(metrics: httpx.AsyncClient) -> dict[tuple[str, str], dict[str, Any]]:
    """Prometheus' active app and sidecar targets by (job, app_id)."""
    response = await metrics.get("/api/v1/targets", params={"state": "active"})
    assert response.status_code == 200, response.text
    return {
        (target["labels"]["job"], target["labels"]["app_id"]): target
        for target in response.json()["data"]["activeTargets"]
        if target["labels"].get("job") in ("app", "sidecar")
    }


async def scraped_after(metrics: httpx.AsyncClient, app_id: str, moment: float) -> None:
    """Waits until Prometheus has scraped `app_id`'s app after `moment` (time.time())."""

    async def last_scrape() -> float:
        return await value(metrics, f'max(timestamp(up{{job="app", app_id="{app_id}"}}))')

    assert await eventually(last_scrape, lambda at: at > moment, within=SEEN_WITHIN_S) > moment


async def test_every_app_and_every_sidecar_is_an_up_target(platform: Platform, metrics: httpx.AsyncClient) -> None:
    expected = {(job, app.app_id) for app in platform.run_file.apps for job in ("app", "sidecar")}

    def all_up(targets: dict[tuple[str, str], dict[str, Any]]) -> bool:
        return all(key in targets and targets[key]["health"] == "up" for key in expected)

    targets = await eventually(lambda: app_targets(metrics), all_up, within=SEEN_WITHIN_S)

    not_up = {key: targets[key]["lastError"] if key in targets else "not a target" for key in expected}
    assert {key: error for key, error in not_up.items() if targets.get(key, {}).get("health") != "up"} == {}
    assert set(targets) == expected
    assert all(target["scrapeUrl"].startswith("http://127.0.0.1:") for target in targets.values())


async def counted_since(metrics: httpx.AsyncClient, selector: str, moment: float) -> float:
    """The sum of the series `selector` picks that were scraped after `moment`. Prometheus shows a series for 5
    minutes after its last sample: a counter of an app an earlier test restarted would otherwise still count."""
    return await value(metrics, f"sum({selector} and timestamp({selector}) > {moment})")


async def test_the_orders_counters_rise_by_exactly_the_orders_the_test_finished(
    platform: Platform, gateway: httpx.AsyncClient, metrics: httpx.AsyncClient
) -> None:
    completed = 'orders_sagas_finished_total{job="app", status="completed"}'
    out_of_stock = 'orders_sagas_finished_total{job="app", status="cancelled", reason="out_of_stock"}'
    sku = await create_product(platform, price_cents=100, stock=3)
    shopper = await funded_shopper(gateway)
    moment = time.time()
    await scraped_after(metrics, "orders", moment)
    before = [await counted_since(metrics, selector, moment) for selector in (completed, out_of_stock)]

    # Three orders take the whole stock, one at a time; the fourth finds none left.
    for _ in range(3):
        accepted = await place_order(gateway, shopper, [{"sku": sku, "quantity": 1}])
        assert accepted.status_code == 202, accepted.text
        assert (await final_state(gateway, shopper, accepted.json()["order_id"]))["status"] == "completed"
    refused = await place_order(gateway, shopper, [{"sku": sku, "quantity": 1}])
    assert (await final_state(gateway, shopper, refused.json()["order_id"]))["reason"] == "out_of_stock"
    moment = time.time()
    await scraped_after(metrics, "orders", moment)

    after = [await counted_since(metrics, selector, moment) for selector in (completed, out_of_stock)]
    assert (after[0] - before[0], after[1] - before[1]) == (3, 1)


async def test_an_app_killed_and_restarted_shows_down_then_up(platform: Platform, metrics: httpx.AsyncClient) -> None:
    up = 'max(up{job="app", app_id="ingest"})'
    assert await eventually(lambda: value(metrics, up), lambda seen: seen == 1, within=SEEN_WITHIN_S) == 1

    snapshot = platform.kill("ingest", "app")
    try:
        assert await eventually(lambda: value(metrics, up), lambda seen: seen == 0, within=SEEN_WITHIN_S) == 0

        # The alerting rules are loaded and evaluated: AppDown is pending (it fires after 30 s down).
        async def alert_states() -> list[str]:
            alerts = await query(metrics, 'ALERTS{alertname="AppDown", app_id="ingest"}')
            return [alert["metric"]["alertstate"] for alert in alerts]

        assert await eventually(alert_states, lambda states: states != [], within=SEEN_WITHIN_S) in (
            ["pending"],
            ["firing"],
        )
    finally:
        platform.restart(snapshot)
    await asyncio.to_thread(platform.wait_until_ready, "ingest")

    assert await eventually(lambda: value(metrics, up), lambda seen: seen == 1, within=SEEN_WITHIN_S) == 1
    targets = await app_targets(metrics)
    assert targets[("app", "ingest")]["health"] == "up"
