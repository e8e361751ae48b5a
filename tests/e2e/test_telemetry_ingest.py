"""Telemetry batches through the gateway: per-event validation, limits, and bearer or API-key access."""

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from devstack.layout import Layout
from tests.e2e.journeys import bearer, log_in, sign_up

pytestmark = pytest.mark.e2e


def event(kind: str = "page_view", **fields: Any) -> dict[str, Any]:
    return {"id": str(uuid.uuid4()), "type": kind, "ts": datetime.now(UTC).isoformat(), **fields}


def api_key() -> str:
    secrets = json.loads((Layout.discover().run_dir / "secrets" / "secrets.json").read_text())
    return str(secrets["ingest-api-keys"]).split(",")[0]


@pytest.fixture(scope="module")
async def token(gateway: httpx.AsyncClient) -> str:
    return await log_in(gateway, await sign_up(gateway))


async def test_each_event_is_validated_on_its_own(gateway: httpx.AsyncClient, token: str) -> None:
    batch = [
        event(),
        event("product_view", sku="SC-MUG-01"),
        event("add_to_cart"),
        event("search", properties={"q": "mug"}),
    ]

    response = await gateway.post("/api/v1/events", json={"events": batch}, headers=bearer(token))

    assert response.status_code == 202, response.text
    body = response.json()
    assert body["accepted"] == 3
    assert [r["index"] for r in body["rejected"]] == [2]
    assert "sku" in body["rejected"][0]["reason"]


async def test_machine_clients_use_an_api_key(gateway: httpx.AsyncClient) -> None:
    accepted = await gateway.post("/api/v1/events", json={"events": [event()]}, headers={"X-API-Key": api_key()})
    refused = await gateway.post("/api/v1/events", json={"events": [event()]}, headers={"X-API-Key": "not-a-key"})
    anonymous = await gateway.post("/api/v1/events", json={"events": [event()]})

    assert accepted.status_code == 202, accepted.text
    assert accepted.json()["accepted"] == 1
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "invalid_api_key"
    assert anonymous.status_code == 401


async def test_batches_outside_the_limits_are_refused_whole(gateway: httpx.AsyncClient, token: str) -> None:
    headers = bearer(token)

    too_many = await gateway.post("/api/v1/events", json={"events": [event() for _ in range(1001)]}, headers=headers)
    near_limits = await gateway.post(
        "/api/v1/events",
        json={"events": [event(properties={"blob": "x" * 200}) for _ in range(1000)]},
        headers=headers,
    )
    oversized = await gateway.post(
        "/api/v1/events",
        content=b'{"events": [' + b" " * (1024 * 1024) + b"]}",
        headers={**headers, "content-type": "application/json"},
    )
    empty = await gateway.post("/api/v1/events", json={"events": []}, headers=headers)
    not_json = await gateway.post("/api/v1/events", content=b"id,type", headers={**headers, "content-type": "text/csv"})

    assert too_many.status_code == 413, too_many.text
    assert near_limits.status_code == 202, near_limits.text  # 1,000 events of ~300 bytes: inside both limits
    assert near_limits.json()["accepted"] == 1000
    assert oversized.status_code == 413, oversized.text
    assert empty.status_code == 422, empty.text
    assert not_json.status_code == 415, not_json.text
    for refused in (too_many, oversized, empty, not_json):
        assert refused.json()["error"]["code"]
