"""Traces on the real platform: one order is one trace in the Zipkin the dev stack starts, holding the spans of every
app and sidecar the order went through, its saga steps in order, and the request id leads to it in the logs too."""

import argparse
import io
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from devstack import logs, zipkin
from devstack.platform_run import Platform
from tests.e2e.journeys import eventually
from tests.e2e.shop import create_product, final_state, funded_shopper

pytestmark = pytest.mark.e2e

# The scope daprd's spans carry; the apps' spans carry their library's (sidecart_kit, fastapi, the workflow SDK's).
SIDECAR_SCOPE = "dapr-diagnostics"
# Notifications and analytics take the order's events in bulk deliveries, whose one request sits in the trace of one
# of the events it carries; the kit gives each other event's trace a span of the batch (spans_in_event_traces), and
# the sidecar a span of its own per event, so the order's trace holds them whatever else the batch carried.
EVERY_APP_ON_AN_ORDERS_PATH = {"gateway", "orders", "inventory", "payments", "notifications", "analytics"}
SAGA_STEPS = ["saga reserve_stock", "saga charge_payment", "saga confirm"]


@pytest.fixture
async def traces(platform: Platform) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{zipkin.port()}", timeout=10) as client:
        yield client


async def traces_tagged(traces: httpx.AsyncClient, request_id: str) -> list[list[dict[str, Any]]]:
    """The traces whose gateway span carries this request id (the kit tags every request's span with its id)."""
    params: dict[str, str | int] = {
        "serviceName": "gateway",
        "annotationQuery": f"request.id={request_id}",
        "lookback": 3_600_000,
    }
    response = await traces.get("/api/v2/traces", params=params)
    assert response.status_code == 200, response.text
    found: list[list[dict[str, Any]]] = response.json()
    return found


async def whole_trace(traces: httpx.AsyncClient, trace_id: str) -> list[dict[str, Any]]:
    response = await traces.get(f"/api/v2/trace/{trace_id}")
    assert response.status_code == 200, response.text
    spans: list[dict[str, Any]] = response.json()
    return spans


def services(spans: list[dict[str, Any]], *, sidecars: bool) -> set[str]:
    return {
        span["localEndpoint"]["serviceName"]
        for span in spans
        if (span.get("tags", {}).get("otel.scope.name") == SIDECAR_SCOPE) == sidecars
    }


async def test_an_order_is_one_trace_through_every_app_and_sidecar_with_its_saga_steps_in_order(
    platform: Platform, gateway: httpx.AsyncClient, traces: httpx.AsyncClient
) -> None:
    sku = await create_product(platform, price_cents=700, stock=5)
    shopper = await funded_shopper(gateway)
    request_id = f"trace-{uuid.uuid4().hex}"
    headers = {**shopper.headers, "Idempotency-Key": uuid.uuid4().hex, "X-Request-ID": request_id}

    accepted = await gateway.post("/api/v1/orders", json={"items": [{"sku": sku, "quantity": 1}]}, headers=headers)

    assert accepted.status_code == 202, accepted.text
    assert accepted.headers["x-request-id"] == request_id
    order = await final_state(gateway, shopper, accepted.json()["order_id"])
    assert order["status"] == "completed", order
    (tagged,) = await eventually(lambda: traces_tagged(traces, request_id), lambda found: len(found) == 1, within=30)
    trace_id = tagged[0]["traceId"]

    # Spans arrive in batches from every process, each on its own schedule: wait for every piece the test reads.
    def complete(spans: list[dict[str, Any]]) -> bool:
        apps_and_sidecars = all(services(spans, sidecars=side) >= EVERY_APP_ON_AN_ORDERS_PATH for side in (False, True))
        return apps_and_sidecars and {span["name"] for span in spans} >= set(SAGA_STEPS)

    spans = await eventually(lambda: whole_trace(traces, trace_id), complete, within=90)
    assert services(spans, sidecars=False) >= EVERY_APP_ON_AN_ORDERS_PATH, services(spans, sidecars=False)
    assert services(spans, sidecars=True) >= EVERY_APP_ON_AN_ORDERS_PATH, services(spans, sidecars=True)
    assert len({span["traceId"] for span in spans}) == 1
    # A real trace to open in Zipkin (shown with pytest -rP).
    print(f"order trace {trace_id}: {len(spans)} spans from {len(services(spans, sidecars=False))} apps")  # noqa: T201

    # The saga's steps: children of the orders app's span of the POST, one after the other.
    (placed,) = [
        span
        for span in spans
        if span["localEndpoint"]["serviceName"] == "orders"
        and span.get("kind") == "SERVER"
        and span.get("tags", {}).get("http.route") == "/users/{user_id}/orders"
    ]
    steps = sorted((span for span in spans if span["name"] in SAGA_STEPS), key=lambda span: span["timestamp"])
    assert [span["name"] for span in steps] == SAGA_STEPS
    assert {span["parentId"] for span in steps} == {placed["id"]}

    # The same request id finds the same trace in the logs of every process.
    command = argparse.ArgumentParser()
    logs.add_arguments(command)
    merged = io.StringIO()
    assert logs.run(platform.layout, command.parse_args(["--request", request_id, "--json"]), merged) == 0
    lines = [json.loads(line) for line in merged.getvalue().splitlines()]
    assert {line.get("trace_id") for line in lines} >= {trace_id}
    assert {"gateway", "orders"} <= {line.get("service") for line in lines}
