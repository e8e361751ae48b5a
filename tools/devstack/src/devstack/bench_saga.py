"""`python -m devstack bench-saga`: order sagas per second and 202→completed latency at several concurrencies.

Closed loop: each client places an order through the gateway, polls it (backing off from 100 ms to 500 ms) until
it is final, then places the next.
Latency is the order's own updated_at - created_at (server clocks: no polling granularity in it). Bounded: each
concurrency level runs for --seconds, then waits for its last sagas to end. Prints a table and writes a report.
"""

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import httpx

from devstack.layout import Layout
from devstack.measures import percentile
from devstack.platform_run import Platform
from devstack.processes import log

PRICE_CENTS = 1  # starting credit 100.00 EUR pays for 10,000 orders: credit never limits the run
STOCK = 1_000_000
POLL_FIRST_S, POLL_MAX_S = 0.1, 0.5


@dataclass
class LevelResult:
    clients: int
    seconds: float
    completed: int = 0
    cancelled: int = 0
    errors: int = 0
    latencies_ms: list[float] = field(default_factory=list)

    @property
    def per_second(self) -> float:
        return self.completed / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        return percentile(self.latencies_ms, q)


async def _shopper(client: httpx.AsyncClient) -> dict[str, str]:
    email = f"bench-{uuid.uuid4().hex[:12]}@example.com"
    await client.post("/api/v1/users", json={"email": email, "password": "bench-password", "name": "Bench"})
    token = (await client.post("/api/v1/auth/token", json={"email": email, "password": "bench-password"})).json()
    headers = {"Authorization": f"Bearer {token['access_token']}"}
    for _ in range(100):  # the starting credit arrives by event
        if (await client.get("/api/v1/users/me/wallet", headers=headers)).status_code == 200:
            return headers
        await asyncio.sleep(0.1)
    raise RuntimeError("starting credit never arrived")


async def _client_loop(
    client: httpx.AsyncClient, headers: dict[str, str], sku: str, until: float, result: LevelResult
) -> None:
    while time.monotonic() < until:
        placed = await client.post(
            "/api/v1/orders",
            json={"items": [{"sku": sku, "quantity": 1}]},
            headers={**headers, "Idempotency-Key": uuid.uuid4().hex},
        )
        if placed.status_code != 202:
            result.errors += 1
            await asyncio.sleep(0.1)
            continue
        order_id = placed.json()["order_id"]
        pause = POLL_FIRST_S
        while True:
            # Polling is load too (gateway, orders, their sidecars): back off so it does not drown the sagas.
            await asyncio.sleep(pause)
            pause = min(pause * 1.5, POLL_MAX_S)
            order = (await client.get(f"/api/v1/orders/{order_id}", headers=headers)).json()
            if order.get("status") in ("completed", "cancelled"):
                break
        took = datetime.fromisoformat(order["updated_at"]) - datetime.fromisoformat(order["created_at"])
        if order["status"] == "completed":
            result.completed += 1
            result.latencies_ms.append(took.total_seconds() * 1000)
        else:
            result.cancelled += 1


async def _run_level(
    client: httpx.AsyncClient, shoppers: list[dict[str, str]], sku: str, clients: int, seconds: float
) -> LevelResult:
    result = LevelResult(clients, seconds)
    started = time.monotonic()
    until = started + seconds
    await asyncio.gather(*(_client_loop(client, shoppers[n], sku, until, result) for n in range(clients)))
    result.seconds = time.monotonic() - started  # includes draining the last sagas
    return result


async def bench(platform: Platform, levels: list[int], seconds: float) -> list[LevelResult]:
    limits = httpx.Limits(max_connections=max(levels) * 2, max_keepalive_connections=max(levels) * 2)
    async with httpx.AsyncClient(base_url=platform.gateway_url, timeout=60, limits=limits) as client:
        admin = f"{platform.sidecar_url('inventory')}/v1.0/invoke/inventory/method/admin/products"
        sku = f"BENCH-{uuid.uuid4().hex[:8].upper()}"
        created = await client.put(
            f"{admin}/{sku}",
            json={"name": "Bench", "price_cents": PRICE_CENTS, "stock": STOCK},
            headers=platform.sidecar_headers("inventory"),
        )
        created.raise_for_status()
        log(f"creating {max(levels)} shoppers")
        shoppers = list(await asyncio.gather(*(_shopper(client) for _ in range(max(levels)))))
        log("warm-up: 20 sagas")
        await _run_level(client, shoppers, sku, 5, 2)
        results = []
        for clients in levels:
            log(f"{clients} concurrent clients for {seconds:.0f} s")
            results.append(await _run_level(client, shoppers, sku, clients, seconds))
        return results


def report(results: list[LevelResult]) -> str:
    lines = [
        "| clients | sagas completed | sagas/s | p50 202→completed (ms) | p99 (ms) | cancelled | errors |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r.clients} | {r.completed} | {r.per_second:.1f} | {r.percentile(0.5):.0f} | "
            f"{r.percentile(0.99):.0f} | {r.cancelled} | {r.errors} |"
        )
    return "\n".join(lines)


def run(layout: Layout, profile: str, levels: list[int], seconds: float) -> Path:
    with Platform(layout, profile=profile) as platform:
        results = asyncio.run(bench(platform, levels, seconds))
    table = report(results)
    text = (
        f"# Order saga benchmark ({profile} profile)\n\n"
        f"Measured {time.strftime('%Y-%m-%d %H:%M:%S %Z')} with `make bench-saga` on this machine "
        f"({len(results)} levels, {seconds:.0f} s each, closed loop through the gateway; load generator on the same "
        "2 cores as the platform). Latency: the order's updated_at - created_at.\n\n" + table + "\n"
    )
    out = layout.repo / "reports" / f"bench-saga-{profile}.md"
    out.parent.mkdir(exist_ok=True)
    out.write_text(text)
    print(text, flush=True)
    return out
