"""`python -m devstack bench-ingest`: telemetry events accepted per second through the gateway (bulk publish).

Closed loop: each client posts batches of --batch events (with an API key, as a machine client would) and posts
the next as soon as the 202 arrives. Counts the events the platform accepted, i.e. that the broker took (ingest
answers 202 only after Dapr's bulk publish succeeded). Bounded by --seconds. Prints a table and writes a report.
"""

import asyncio
import json
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx

from devstack.layout import Layout
from devstack.platform_run import Platform
from devstack.processes import log

EVENT_TYPES = ("page_view", "product_view", "search", "add_to_cart")


@dataclass
class IngestResult:
    clients: int
    batch: int
    seconds: float = 0.0
    accepted: int = 0
    batches: int = 0
    errors: int = 0
    latencies_ms: list[float] = field(default_factory=list)

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies_ms) or [float("nan")]
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _batch(size: int) -> bytes:
    now = datetime.now(UTC).isoformat()
    events = [
        {"id": str(uuid.uuid4()), "type": kind, "ts": now, "sku": "SC-MUG-01", "properties": {"bench": True}}
        for kind in (EVENT_TYPES[n % 4] for n in range(size))
    ]
    return json.dumps({"events": events}).encode()


async def _client(client: httpx.AsyncClient, key: str, size: int, until: float, result: IngestResult) -> None:
    headers = {"X-API-Key": key, "content-type": "application/json"}
    while time.monotonic() < until:
        body = _batch(size)
        started = time.monotonic()
        response = await client.post("/api/v1/events", content=body, headers=headers)
        if response.status_code != 202:
            result.errors += 1
            await asyncio.sleep(0.1)
            continue
        result.latencies_ms.append((time.monotonic() - started) * 1000)
        result.accepted += response.json()["accepted"]
        result.batches += 1


async def _bench(platform: Platform, key: str, clients: int, size: int, seconds: float) -> IngestResult:
    result = IngestResult(clients, size)
    async with httpx.AsyncClient(base_url=platform.gateway_url, timeout=60) as client:
        warm = time.monotonic() + 2
        await asyncio.gather(*(_client(client, key, size, warm, IngestResult(clients, size)) for _ in range(clients)))
        started = time.monotonic()
        await asyncio.gather(*(_client(client, key, size, started + seconds, result) for _ in range(clients)))
        result.seconds = time.monotonic() - started
    return result


def run(layout: Layout, clients: list[int], size: int, seconds: float) -> Path:
    key = json.loads((layout.run_dir / "secrets" / "secrets.json").read_text())["ingest-api-keys"].split(",")[0]
    with Platform(layout) as platform:
        results = []
        for n in clients:
            log(f"{n} clients posting batches of {size} for {seconds:.0f} s")
            results.append(asyncio.run(_bench(platform, key, n, size, seconds)))
    lines = [
        "| clients | batch | events accepted | events/s accepted | batches | p50 batch (ms) | p99 batch (ms) "
        "| errors |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r.clients} | {r.batch} | {r.accepted} | {r.accepted / r.seconds:.0f} | {r.batches} | "
            f"{r.percentile(0.5):.0f} | {r.percentile(0.99):.0f} | {r.errors} |"
        )
    text = (
        "# Telemetry ingest benchmark (local profile)\n\n"
        f"Measured {time.strftime('%Y-%m-%d %H:%M:%S %Z')} with `make bench-ingest` (closed loop through the gateway "
        "with an API key; load generator on the same 2 cores as the platform). Accepted = taken by the broker "
        "through Dapr bulk publish. End-to-end figures (accepted → visible in reports) need the analytics read "
        "models, which are not built yet.\n\n" + "\n".join(lines) + "\n"
    )
    out = layout.repo / "reports" / "bench-ingest.md"
    out.parent.mkdir(exist_ok=True)
    out.write_text(text)
    print(text, flush=True)
    return out
