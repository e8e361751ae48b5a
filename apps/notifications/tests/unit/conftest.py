"""The kit's fake state store with faults of its own (the kit's fixtures give the rest: sleep, sidecar_health); no
network, nothing patched."""

import uuid
from typing import Any
from uuid import UUID

import pytest

from notifications.domain import Inbox, inbox_key
from sidecart_kit.state import StoreUnavailableError
from sidecart_kit.testing import FakeStateStore


class InboxStore(FakeStateStore):
    """The kit's fake store, whose writes alone can fail (`writable`), and which reads inboxes back."""

    def __init__(self) -> None:
        super().__init__()
        self.writable = True

    async def save(self, key: str, document: Any, etag: str | None) -> None:
        if not self.writable:
            raise StoreUnavailableError("store down")
        await super().save(key, document, etag)

    def inbox(self, user_id: UUID) -> Inbox:
        return Inbox.from_document(self.document(inbox_key(user_id)))


@pytest.fixture
def store() -> InboxStore:
    return InboxStore()


@pytest.fixture
def user_id() -> UUID:
    return uuid.uuid4()
