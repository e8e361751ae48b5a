"""A state store with a few more faults than the kit's, a publisher, and makers of valid events (the kit's
fixtures give the rest: sleep, sidecar_health)."""

import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import pytest

from analytics.handlers import PublishFailedError
from contracts.telemetry import TelemetryEvent
from sidecart_kit.state import StoreUnavailableError, Versioned
from sidecart_kit.testing import FakeStateStore

NOW = datetime(2026, 11, 22, 12, 30, 15, tzinfo=UTC)


class DocumentStore(FakeStateStore):
    """The kit's fake store (ETags enforced like Dapr's first-write), where writes to `failing_keys` fail, keys in
    `stale_keys` are written by another process between every read and write, and bulk reads are counted."""

    def __init__(self) -> None:
        super().__init__()
        self.failing_keys: set[str] = set()
        self.stale_keys: set[str] = set()
        self.bulk_reads = 0

    async def save(self, key: str, document: Any, etag: str | None) -> None:
        if key in self.failing_keys:
            raise StoreUnavailableError("store down")
        if key in self.stale_keys and key in self.documents:
            self.touch(key)
        await super().save(key, document, etag)

    async def get_many(self, keys: Sequence[str]) -> dict[str, Versioned]:
        found = await super().get_many(keys)
        self.bulk_reads += 1
        return found

    def touch(self, key: str) -> None:
        """Another process wrote the key: its ETag changes."""
        document, version = self.documents[key]
        self.documents[key] = (document, version + 1)


class FakePublisher:
    def __init__(self) -> None:
        self.published: list[tuple[str, dict[str, Any]]] = []
        self.available = True

    async def publish(self, topic: str, cloud_event: Mapping[str, Any]) -> None:
        if not self.available:
            raise PublishFailedError("sidecar down")
        self.published.append((topic, dict(cloud_event)))


def telemetry(**overrides: Any) -> TelemetryEvent:
    fields: dict[str, Any] = {"id": str(uuid.uuid4()), "type": "product_view", "ts": NOW, "sku": "sku-1"}
    fields.update(overrides)
    return TelemetryEvent.model_validate({k: v for k, v in fields.items() if v is not None}, context={"now": NOW})


@pytest.fixture
def store() -> DocumentStore:
    return DocumentStore()


@pytest.fixture
def publisher() -> FakePublisher:
    return FakePublisher()
