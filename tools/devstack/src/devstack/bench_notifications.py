"""Event -> notice: `user.registered` events published at a fixed rate, counted once notifications recorded them.

Open loop: every 100 ms a bulk publish of rate/10 events goes to the `users` topic through users' sidecar (with
users' API token: the topic is users' to publish), whether or not notifications keeps up. What notifications has
recorded is read from its own counter (`notifications_events_total{route="/events/user-registered",
outcome="recorded"}` at its /metrics), sampled every 100 ms. Throughput: events recorded per second from the first
publish until the last was recorded; latency (freshness): from a publish until the counter reached it. The other
subscribers of `users` (payments grants a starting credit, analytics counts a sign-up) do their work too, as they
would for a real sign-up.
"""

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx

from devstack.measures import lags_ms, percentile
from devstack.platform_run import Platform

TICK_S = 0.1
CATCH_UP_LIMIT_S = 60
RECORDED_LABELS = ('route="/events/user-registered"', 'outcome="recorded"')


@dataclass
class NoticeResult:
    rate: int
    published: int = 0
    recorded: int = 0
    seconds: float = 0.0  # first publish until the last event was recorded (or the catch-up limit)
    published_at: list[tuple[float, int]] = field(default_factory=list)
    recorded_at: list[tuple[float, int]] = field(default_factory=list)

    def latencies_ms(self) -> list[float]:
        return lags_ms(self.published_at, self.recorded_at)

    def percentile(self, q: float) -> float:
        return percentile(self.latencies_ms(), q)


def _registered(n: int) -> dict[str, object]:
    user_id = str(uuid.uuid4())
    return {
        "entryId": str(n),
        "contentType": "application/cloudevents+json",
        "event": {
            "specversion": "1.0",
            "id": str(uuid.uuid4()),
            "source": "bench",
            "type": "sidecart.user.registered.v1",
            "datacontenttype": "application/json",
            "data": {
                "user_id": user_id,
                "email": f"bench-{user_id[:12]}@example.com",
                "name": "Bench",
                "registered_at": datetime.now(UTC).isoformat(),
            },
        },
    }


async def _recorded(client: httpx.AsyncClient, metrics_url: str) -> int:
    text = (await client.get(metrics_url)).text
    line = next(
        (
            line
            for line in text.splitlines()
            if line.startswith("notifications_events_total{") and all(label in line for label in RECORDED_LABELS)
        ),
        None,
    )
    return int(float(line.rsplit(" ", 1)[1])) if line else 0


async def bench(platform: Platform, rate: int, seconds: float) -> NoticeResult:
    result = NoticeResult(rate)
    metrics_url = f"http://127.0.0.1:{platform.run_file.app('notifications').app_port}/metrics"
    per_tick = max(1, int(rate * TICK_S))
    async with platform.async_sidecar_client("users", timeout=30) as users, httpx.AsyncClient(timeout=5) as client:
        baseline = await _recorded(client, metrics_url)
        started = time.monotonic()
        posting_done = asyncio.Event()

        async def publish() -> None:
            tick = 0
            while (now := time.monotonic()) < started + seconds:
                entries = [_registered(n) for n in range(per_tick)]
                response = await users.post("/v1.0-alpha1/publish/bulk/pubsub/users", json=entries)
                response.raise_for_status()
                result.published += per_tick
                result.published_at.append((now, result.published))
                tick += 1
                await asyncio.sleep(max(0.0, started + tick * TICK_S - time.monotonic()))
            posting_done.set()

        async def watch() -> None:
            while True:
                recorded = await _recorded(client, metrics_url) - baseline
                result.recorded_at.append((time.monotonic(), recorded))
                result.recorded = recorded
                if posting_done.is_set() and recorded >= result.published:
                    return
                if time.monotonic() - started > seconds + CATCH_UP_LIMIT_S:
                    return
                await asyncio.sleep(TICK_S)

        await asyncio.gather(publish(), watch())
        result.seconds = result.recorded_at[-1][0] - started
    return result
