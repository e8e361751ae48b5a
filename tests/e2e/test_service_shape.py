"""Every app is the same shape on the outside: the same HTTP metrics at /metrics, request ids on every answer, one
error shape, and the app-token guard the same way on every internal app."""

import httpx
import pytest

from devstack.platform_run import Platform
from gateway.settings import Settings as GatewaySettings

pytestmark = pytest.mark.e2e

HTTP_METRICS = ("http_requests_total", "http_request_duration_seconds_bucket", "process_resident_memory_bytes")


async def test_every_app_serves_the_same_http_metrics_and_request_ids(platform: Platform) -> None:
    async with httpx.AsyncClient(timeout=5) as client:
        for app in platform.run_file.apps:
            base = f"http://127.0.0.1:{app.app_port}"
            health = await client.get(f"{base}/healthz", headers={"X-Request-ID": f"shape-{app.app_id}"})
            assert health.status_code == 200, (app.app_id, health.text)
            assert health.headers["X-Request-ID"] == f"shape-{app.app_id}", app.app_id
            metrics_base = base
            if app.app_id == "gateway":
                # The public app serves its metrics on a port of its own; nothing for operators is public.
                for internal in ("/metrics", "/docs", "/openapi.json"):
                    assert (await client.get(f"{base}{internal}")).status_code == 404, internal
                metrics_base = f"http://127.0.0.1:{GatewaySettings().metrics_port}"
            metrics = (await client.get(f"{metrics_base}/metrics")).text
            missing = [name for name in HTTP_METRICS if name not in metrics]
            assert missing == [], f"{app.app_id} lacks {missing}"


async def test_an_unknown_route_is_the_same_404_everywhere(platform: Platform) -> None:
    async with httpx.AsyncClient(timeout=5) as client:
        for app in platform.run_file.apps:
            response = await client.get(
                f"http://127.0.0.1:{app.app_port}/no-such-route", headers={"X-Request-ID": "shape-404"}
            )
            assert response.status_code in (401, 404), (app.app_id, response.text)
            error = response.json()["error"]
            assert error["request_id"] == "shape-404", app.app_id
            assert set(error) == {"code", "message", "details", "request_id"}, app.app_id
