"""The composition root: the lifespan wires the real adapters (against a fake sidecar) and the workflow worker,
and activities get sidecar clients of their own."""

import time
from typing import Any

import httpx
from fastapi.testclient import TestClient

from orders.main import create_app, saga_steps_factory
from orders.settings import Settings
from sidecart_kit.service import Fakes


class FakeRuntime:
    def __init__(self) -> None:
        self.started = False
        self.stopped = False

    def start(self) -> None:
        self.started = True

    def shutdown(self) -> None:
        self.stopped = True


RUNNING = {"runtimeStatus": "RUNNING", "placement": "placement: connected"}


def test_the_lifespan_starts_the_workflow_runtime_and_stops_it() -> None:
    runtimes: list[FakeRuntime] = []

    def make_runtime(settings: Settings, open_steps: Any) -> FakeRuntime:
        runtimes.append(FakeRuntime())
        return runtimes[-1]

    def sidecar(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1.0/healthz/outbound":
            return httpx.Response(204)
        if request.url.path == "/v1.0/metadata":
            workflows = {"connectedWorkers": len(runtimes)}
            return httpx.Response(200, json={"id": "orders", "workflows": workflows, "actorRuntime": RUNNING})
        return httpx.Response(404)

    app = create_app(
        Settings(workflow_check_interval_seconds=0.01),
        Fakes(sidecar_transport=httpx.MockTransport(sidecar)),
        runtime_factory=make_runtime,
    )
    with TestClient(app) as client:
        for _ in range(200):
            if client.get("/readyz").status_code == 200:
                break
            time.sleep(0.01)
        assert client.get("/readyz").json() == {"status": "ready"}
        assert runtimes[0].started

    assert runtimes[0].stopped


async def test_activities_wait_for_participants_as_long_as_the_invoke_timeout() -> None:
    open_steps = saga_steps_factory(Settings(invoke_timeout_seconds=12.5, sidecar_connect_timeout_seconds=1.5), None)
    async with open_steps() as first, open_steps() as second:
        client = first._repository._client  # type: ignore[attr-defined]
        assert second._repository._client is client  # type: ignore[attr-defined]  # one client per event loop
    assert (client.timeout.read, client.timeout.connect) == (12.5, 1.5)
