"""Fakes of the ingest ports (no network, nothing patched) and a maker of valid events."""

import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import pytest

from contracts.telemetry import TelemetryEvent
from ingest.handlers import PublishFailedError


class FakePublisher:
    """Records each bulk publish; fails every call while `available` is False."""

    def __init__(self) -> None:
        self.batches: list[tuple[TelemetryEvent, ...]] = []
        self.available = True

    async def publish(self, events: Sequence[TelemetryEvent]) -> None:
        if not self.available:
            raise PublishFailedError("1 of 2 entries failed")
        self.batches.append(tuple(events))

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
def publisher() -> FakePublisher:
    return FakePublisher()


@pytest.fixture
def make_event() -> Callable[..., dict[str, Any]]:
    return valid_event
