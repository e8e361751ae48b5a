"""A fake of ingest's sidecar (no network, nothing patched) and a maker of valid events."""

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from contracts.telemetry import TelemetryEvent

BULK_PUBLISH_PATH = "/v1.0-alpha1/publish/bulk/pubsub/telemetry"


class FakeSidecar:
    """Records each bulk publish; fails every one while `available` is False (as Dapr does when the broker is down)
    and answers the health probe as not ready while `ready` is False."""

    def __init__(self) -> None:
        self.batches: list[tuple[TelemetryEvent, ...]] = []
        self.available = True
        self.ready = True

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1.0/healthz/outbound":
            return httpx.Response(204 if self.ready else 500)
        assert (request.method, request.url.path) == ("POST", BULK_PUBLISH_PATH)
        entries = json.loads(request.content)
        if not self.available:
            failed = [{"entryId": entry["entryId"], "error": "broker down"} for entry in entries[1:]]
            return httpx.Response(500, json={"failedEntries": failed, "errorCode": "ERR_PUBSUB_PUBLISH_MESSAGE"})
        self.batches.append(tuple(TelemetryEvent.model_validate(entry["event"]["data"]) for entry in entries))
        return httpx.Response(204)

    @property
    def published(self) -> list[TelemetryEvent]:
        return [event for batch in self.batches for event in batch]


def valid_event(**overrides: Any) -> dict[str, Any]:
    """A valid event as a client sends it; an override given as None is left out."""
    event: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "type": "product_view",
        "ts": datetime.now(UTC).isoformat(),
        "user_id": str(uuid.uuid4()),
        "sku": "sku-1",
        "properties": {"referrer": "home"},
    }
    event.update(overrides)
    return {name: value for name, value in event.items() if value is not None}


@pytest.fixture
def sidecar() -> FakeSidecar:
    return FakeSidecar()


@pytest.fixture
def make_event() -> Callable[..., dict[str, Any]]:
    return valid_event
