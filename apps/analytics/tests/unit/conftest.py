"""Fakes of the analytics ports (no network, nothing patched) and makers of valid events."""

import asyncio
import copy
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import pytest

from analytics.handlers import ConcurrencyConflictError, PublishFailedError, StoreUnavailableError, Versioned
from contracts.telemetry import TelemetryEvent

NOW = datetime(2026, 11, 22, 12, 30, 15, tzinfo=UTC)


class FakeStateStore:
    """An in-memory state store that enforces ETags like Dapr's first-write concurrency.

    - `interleave`: yield to the event loop between read and write, so concurrent deliveries really interleave.
    - `available`: simulate an outage; `failing_keys`: writes to these keys fail; `stale_keys`: always conflict.
    """

    def __init__(self) -> None:
        self.documents: dict[str, tuple[Any, int]] = {}
        self.interleave = False
        self.available = True
        self.failing_keys: set[str] = set()
        self.stale_keys: set[str] = set()  # another process writes these keys between every read and write
        self.saves = 0
        self.conflicts = 0
        self.bulk_reads = 0

    async def _pause(self) -> None:
        if self.interleave:
            await asyncio.sleep(0)

    async def get(self, key: str) -> Versioned:
        await self._pause()
        if not self.available:
            raise StoreUnavailableError("store down")
        if key not in self.documents:
            return Versioned(None, None)
        document, version = self.documents[key]
        return Versioned(copy.deepcopy(document), str(version))

    async def save(self, key: str, document: Any, etag: str | None) -> None:
        await self._pause()
        if not self.available or key in self.failing_keys:
            raise StoreUnavailableError("store down")
        if key in self.stale_keys and key in self.documents:
            self.touch(key)
        stored = self.documents.get(key)
        current = None if stored is None else str(stored[1])
        if etag != current:
            self.conflicts += 1
            raise ConcurrencyConflictError("etag mismatch")
        self.saves += 1
        self.documents[key] = (copy.deepcopy(document), 1 if stored is None else stored[1] + 1)

    async def get_many(self, keys: Sequence[str]) -> dict[str, Any]:
        if not self.available:
            raise StoreUnavailableError("store down")
        self.bulk_reads += 1
        return {key: copy.deepcopy(self.documents[key][0]) for key in keys if key in self.documents}

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


class FakeSleep:
    """Records back-off delays instead of sleeping (but still yields, so other deliveries run)."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        await asyncio.sleep(0)


def telemetry(**overrides: Any) -> TelemetryEvent:
    fields: dict[str, Any] = {"id": str(uuid.uuid4()), "type": "product_view", "ts": NOW, "sku": "sku-1"}
    fields.update(overrides)
    return TelemetryEvent.model_validate({k: v for k, v in fields.items() if v is not None}, context={"now": NOW})


@pytest.fixture
def store() -> FakeStateStore:
    return FakeStateStore()


@pytest.fixture
def publisher() -> FakePublisher:
    return FakePublisher()


@pytest.fixture
def sleep() -> FakeSleep:
    return FakeSleep()
