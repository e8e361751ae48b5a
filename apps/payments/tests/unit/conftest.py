"""Fakes of the payments ports (no network, nothing patched)."""

import asyncio
import copy
from collections.abc import Mapping
from typing import Any

import pytest

from payments.handlers import ConcurrencyConflictError, StoreUnavailableError, Versioned


class SimulatedCrash(BaseException):
    """The process dies between two writes (BaseException, so no handler can swallow it)."""


class FakeStateStore:
    """An in-memory state store that enforces ETags like Dapr's first-write concurrency.

    - `interleave`: yield to the event loop before each read and write, so concurrent calls really interleave.
    - `available`: False simulates an outage of the whole store.
    - `crash_after_writes`: after that many more successful writes, the next write raises SimulatedCrash.
    """

    def __init__(self) -> None:
        self.documents: dict[str, tuple[Any, int]] = {}
        self.interleave = False
        self.available = True
        self.crash_after_writes: int | None = None
        self.writes = 0
        self.conflicts = 0

    async def _pause(self) -> None:
        if self.interleave:
            await asyncio.sleep(0)

    async def get(self, key: str) -> Versioned | None:
        await self._pause()
        if not self.available:
            raise StoreUnavailableError("store down")
        if key not in self.documents:
            return None
        document, version = self.documents[key]
        return Versioned(copy.deepcopy(document), str(version))

    async def save(self, key: str, document: Mapping[str, Any], etag: str | None) -> None:
        await self._pause()
        if not self.available:
            raise StoreUnavailableError("store down")
        if self.crash_after_writes is not None:
            if self.crash_after_writes == 0:
                self.crash_after_writes = None
                raise SimulatedCrash(f"crashed before writing {key}")
            self.crash_after_writes -= 1
        stored = self.documents.get(key)
        if etag != (None if stored is None else str(stored[1])):
            self.conflicts += 1
            raise ConcurrencyConflictError("etag mismatch")
        self.writes += 1
        self.documents[key] = (copy.deepcopy(dict(document)), 1 if stored is None else stored[1] + 1)

    def document(self, key: str) -> Any:
        return self.documents[key][0]


class FakeSleep:
    """Records back-off delays instead of sleeping (but still yields, so other calls run)."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        await asyncio.sleep(0)


class FakeSidecarHealth:
    def __init__(self) -> None:
        self.ready = True

    async def is_ready(self) -> bool:
        return self.ready


@pytest.fixture
def store() -> FakeStateStore:
    return FakeStateStore()


@pytest.fixture
def new_store() -> type[FakeStateStore]:
    """For tests that need a fresh store more than once."""
    return FakeStateStore


@pytest.fixture
def sleep() -> FakeSleep:
    return FakeSleep()


@pytest.fixture
def health() -> FakeSidecarHealth:
    return FakeSidecarHealth()


@pytest.fixture
def crash() -> type[SimulatedCrash]:
    return SimulatedCrash
