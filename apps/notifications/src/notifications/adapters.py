"""Each user's inbox as one JSON document in the state store (the kit's DaprStateStore in the app)."""

from uuid import UUID

from notifications.domain import Inbox, MalformedInboxError, inbox_key
from notifications.handlers import VersionedInbox
from sidecart_kit.logs import get_logger
from sidecart_kit.state import StateStore, StoreUnavailableError

log = get_logger(__name__)


class StoredInboxRepository:
    """Inboxes in a state store, ETag-guarded; its lost races and outages are the store's errors, as they are."""

    def __init__(self, store: StateStore) -> None:
        self._store = store

    async def get(self, user_id: UUID) -> VersionedInbox:
        key = inbox_key(user_id)
        stored = await self._store.get(key)
        if stored is None:
            return VersionedInbox(Inbox(), None)
        try:
            inbox = Inbox.from_document(stored.document)
        except MalformedInboxError as exc:
            # Retrying cannot repair it; the event ends in the dead-letter topic where someone will look.
            log.error("inbox_unreadable", key=key, error=str(exc))
            raise StoreUnavailableError(f"reading {key}: unreadable document") from exc
        return VersionedInbox(inbox, stored.etag)

    async def save(self, user_id: UUID, inbox: Inbox, etag: str | None) -> None:
        await self._store.save(inbox_key(user_id), inbox.to_document(), etag)
