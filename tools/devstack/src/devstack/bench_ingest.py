"""`python -m devstack bench-ingest`: telemetry events/s accepted through the gateway, and end to end into analytics.

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
from devstack.measures import lags_ms, percentile
from devstack.platform_run import Platform
from devstack.processes import log

EVENT_TYPES = ("page_view", "product_view", "search", "add_to_cart")
CATCH_UP_LIMIT_S = 180


@dataclass
class IngestResult:
    clients: int
    batch: int
    seconds: float = 0.0
    accepted: int = 0
    batches: int = 0
    errors: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    # (monotonic time, events accepted so far) and (monotonic time, events counted by analytics so far)
    accepted_at: list[tuple[float, int]] = field(default_factory=list)
    counted_at: list[tuple[float, int]] = field(default_factory=list)
    caught_up_s: float | None = None

    def freshness_ms(self) -> list[float]:
        """For each accepted sample: how long until analytics had counted that many events."""
        return sorted(lags_ms(self.accepted_at, self.counted_at))

    def percentile(self, q: float) -> float:
        return percentile(self.latencies_ms, q)


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
        result.accepted_at.append((time.monotonic(), result.accepted))
        result.batches += 1


async def _events_total(client: httpx.AsyncClient, headers: dict[str, str]) -> int:
    response = await client.get("/api/v1/analytics/summary", headers=headers)
    response.raise_for_status()
    return int(response.json()["events_total"])


async def _watch(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    baseline: int,
    result: IngestResult,
    posting_done: asyncio.Event,
    caught_up: asyncio.Event,
) -> None:
    """Samples analytics' event total; sets `caught_up` once it has counted everything accepted."""
    while True:
        counted = await _events_total(client, headers) - baseline
        result.counted_at.append((time.monotonic(), counted))
        if posting_done.is_set() and counted >= result.accepted:
            caught_up.set()
            return
        await asyncio.sleep(0.25)


async def bench(platform: Platform, key: str, clients: int, size: int, seconds: float) -> IngestResult:
    result = IngestResult(clients, size)
    async with httpx.AsyncClient(base_url=platform.gateway_url, timeout=60) as client:
        email = f"bench-{uuid.uuid4().hex[:12]}@example.com"
        await client.post("/api/v1/users", json={"email": email, "password": "bench-password", "name": "B"})
        token = (await client.post("/api/v1/auth/token", json={"email": email, "password": "bench-password"})).json()
        reader = {"Authorization": f"Bearer {token['access_token']}"}
        warm = time.monotonic() + 2
        await asyncio.gather(*(_client(client, key, size, warm, IngestResult(clients, size)) for _ in range(clients)))
        await asyncio.sleep(3)  # let analytics take in the warm-up before the baseline
        baseline = await _events_total(client, reader)
        posting_done, caught_up = asyncio.Event(), asyncio.Event()
        watcher = asyncio.create_task(_watch(client, reader, baseline, result, posting_done, caught_up))
        started = time.monotonic()
        await asyncio.gather(*(_client(client, key, size, started + seconds, result) for _ in range(clients)))
        result.seconds = time.monotonic() - started
        posting_done.set()
        try:
            await asyncio.wait_for(caught_up.wait(), CATCH_UP_LIMIT_S)
            result.caught_up_s = result.counted_at[-1][0] - started
        except TimeoutError:
            watcher.cancel()
    return result


def _cloudevent(event: dict[str, object]) -> dict[str, object]:
    return {
        "specversion": "1.0",
        "id": event["id"],
        "source": "bench",
        "type": "sidecart.telemetry.event.v1",
        "datacontenttype": "application/json",
        "data": event,
    }


async def _publish_modes(platform: Platform, events: int, concurrency: int) -> dict[str, float]:
    """Events/s through ingest's sidecar into the broker: one publish per event against Dapr bulk publish."""
    sidecar = platform.sidecar_url("ingest")
    bodies = [json.loads(_batch(1000))["events"] for _ in range(events // 1000)]
    rates: dict[str, float] = {}
    async with httpx.AsyncClient(timeout=60, headers=platform.sidecar_headers("ingest")) as client:
        singles = [_cloudevent(e) for batch in bodies for e in batch]
        gate = asyncio.Semaphore(concurrency)

        async def one(envelope: dict[str, object]) -> None:
            async with gate:
                response = await client.post(
                    f"{sidecar}/v1.0/publish/pubsub/telemetry",
                    json=envelope,
                    headers={"content-type": "application/cloudevents+json"},
                )
                response.raise_for_status()

        started = time.monotonic()
        await asyncio.gather(*(one(envelope) for envelope in singles))
        rates["single"] = len(singles) / (time.monotonic() - started)
        fresh = [json.loads(_batch(1000))["events"] for _ in range(events // 1000)]
        started = time.monotonic()
        for batch in fresh:
            entries = [
                {"entryId": str(n), "event": _cloudevent(e), "contentType": "application/cloudevents+json"}
                for n, e in enumerate(batch)
            ]
            response = await client.post(f"{sidecar}/v1.0-alpha1/publish/bulk/pubsub/telemetry", json=entries)
            response.raise_for_status()
        rates["bulk"] = sum(len(b) for b in fresh) / (time.monotonic() - started)
    return rates


def run(layout: Layout, profile: str, clients: list[int], size: int, seconds: float) -> Path:
    key = json.loads((layout.run_dir / "secrets" / "secrets.json").read_text())["ingest-api-keys"].split(",")[0]
    with Platform(layout, profile=profile) as platform:
        results = []
        for n in clients:
            log(f"{n} clients posting batches of {size} for {seconds:.0f} s")
            results.append(asyncio.run(bench(platform, key, n, size, seconds)))
        log("single-event publish against bulk publish: 20,000 events each through ingest's sidecar")
        modes = asyncio.run(_publish_modes(platform, 20_000, 50))
    lines = [
        "| clients | batch | accepted | accepted/s | p50 / p99 batch (ms) | errors | end to end events/s "
        "| p50 / p99 freshness (ms) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        fresh = r.freshness_ms()
        e2e = f"{r.accepted / r.caught_up_s:.0f}" if r.caught_up_s else f"not caught up in {CATCH_UP_LIMIT_S} s"
        p50 = fresh[len(fresh) // 2] if fresh else float("nan")
        p99 = fresh[min(len(fresh) - 1, int(0.99 * len(fresh)))] if fresh else float("nan")
        lines.append(
            f"| {r.clients} | {r.batch} | {r.accepted} | {r.accepted / r.seconds:.0f} | "
            f"{r.percentile(0.5):.0f} / {r.percentile(0.99):.0f} | {r.errors} | {e2e} | {p50:.0f} / {p99:.0f} |"
        )
    text = (
        f"# Telemetry benchmark ({profile} profile)\n\n"
        f"Measured {time.strftime('%Y-%m-%d %H:%M:%S %Z')} with `make bench-ingest` (closed loop through the gateway "
        "with an API key; load generator on the same 2 cores as the platform). Accepted = taken by the broker "
        "through Dapr bulk publish. End to end = accepted events / time until analytics' summary counted them all "
        "(polled every 250 ms); freshness = time from a batch's 202 until the summary counted up to it.\n\n"
        + "\n".join(lines)
        + "\n\n## Single-event publish against bulk publish\n\n"
        "20,000 events published to `telemetry` through ingest's sidecar, straight at the Dapr API: one "
        "`/v1.0/publish` per event (50 in flight) against `/v1.0-alpha1/publish/bulk` in batches of 1,000.\n\n"
        "| publish | events/s |\n|---|---:|\n"
        f"| single-event | {modes['single']:.0f} |\n| bulk (1,000 per call) | {modes['bulk']:.0f} |\n"
    )
    out = layout.repo / "reports" / f"bench-ingest-{profile}.md"
    out.parent.mkdir(exist_ok=True)
    out.write_text(text)
    print(text, flush=True)
    return out
