"""Fakes of the notifications ports (no network, nothing patched)."""

import asyncio
import uuid
from typing import Any
from uuid import UUID

import pytest

from notifications.domain import Inbox
from notifications.handlers import ConcurrencyConflictError, StoreUnavailableError, VersionedInbox


class FakeInboxRepository:
    """An in-memory state store that enforces ETags like Dapr's first-write concurrency.

    - `interleave`: yield to the event loop between steps, so concurrent deliveries really interleave.
    - `insert_race_as_failure`: report a lost insert-only race as a plain failure, as Dapr on Redis does.
    - `available`, `writable`: simulate an outage of the whole store or of writes only.
    """

    def __init__(self) -> None:
        self.documents: dict[UUID, tuple[dict[str, Any], int]] = {}
        self.interleave = False
        self.insert_race_as_failure = False
        self.available = True
        self.writable = True
        self.saves = 0
        self.conflicts = 0

    async def _pause(self) -> None:
        if self.interleave:
            await asyncio.sleep(0)

    async def get(self, user_id: UUID) -> VersionedInbox:
        await self._pause()
        if not self.available:
            raise StoreUnavailableError("store down")
        if user_id not in self.documents:
            return VersionedInbox(Inbox(), None)
        document, version = self.documents[user_id]
        return VersionedInbox(Inbox.from_document(document), str(version))

    async def save(self, user_id: UUID, inbox: Inbox, etag: str | None) -> None:
        await self._pause()
        if not self.available or not self.writable:
            raise StoreUnavailableError("store down")
        stored = self.documents.get(user_id)
        current_etag = None if stored is None else str(stored[1])
        if etag != current_etag:
            self.conflicts += 1
            if etag is None and self.insert_race_as_failure:
                raise StoreUnavailableError("failed to set key")
            raise ConcurrencyConflictError("etag mismatch")
        self.saves += 1
        self.documents[user_id] = (inbox.to_document(), 1 if stored is None else stored[1] + 1)

    def inbox(self, user_id: UUID) -> Inbox:
        return Inbox.from_document(self.documents[user_id][0])


class FakeSleep:
    """Records back-off delays instead of sleeping (but still yields, so other deliveries run)."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        await asyncio.sleep(0)


@pytest.fixture
def repository() -> FakeInboxRepository:
    return FakeInboxRepository()


@pytest.fixture
def sleep() -> FakeSleep:
    return FakeSleep()


@pytest.fixture
def user_id() -> UUID:
    return uuid.uuid4()
