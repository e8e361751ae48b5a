"""Each user's inbox as one JSON document in the state store (the kit's DaprStateStore in the app)."""

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from uuid import UUID

from notifications.domain import Inbox, MalformedInboxError, inbox_key
from notifications.handlers import VersionedInbox
from sidecart_kit.logs import get_logger
from sidecart_kit.retry import RetryPolicy
from sidecart_kit.state import StateStore, StoreUnavailableError, update_document

log = get_logger(__name__)
Result = TypeVar("Result")


def _inbox(key: str, document: Any) -> Inbox:
    try:
        return Inbox.from_document(document)
    except MalformedInboxError as exc:
        # Retrying cannot repair it; the event ends in the dead-letter topic where someone will look.
        log.error("inbox_unreadable", key=key, error=str(exc))
        raise StoreUnavailableError(f"reading {key}: unreadable document") from exc


class StoredInboxRepository:
    """Inboxes in a state store, ETag-guarded; its outages are the store's errors, as they are."""

    def __init__(self, store: StateStore) -> None:
        self._store = store

    async def get(self, user_id: UUID) -> VersionedInbox:
        key = inbox_key(user_id)
        stored = await self._store.get(key)
        if stored is None:
            return VersionedInbox(Inbox(), None)
        return VersionedInbox(_inbox(key, stored.document), stored.etag)

    async def update(
        self,
        user_id: UUID,
        decide: Callable[[Inbox], tuple[Inbox | None, Result]],
        *,
        retry: RetryPolicy,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> Result:
        key = inbox_key(user_id)

        def on_document(document: Any) -> tuple[dict[str, Any] | None, Result]:
            updated, result = decide(Inbox() if document is None else _inbox(key, document))
            return (None if updated is None else updated.to_document()), result

        return await update_document(self._store, key, on_document, retry=retry, sleep=sleep)
