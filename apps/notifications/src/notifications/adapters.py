"""The only module that talks to the sidecar: the inbox in the Dapr state store, and the sidecar's health."""

from typing import Any
from uuid import UUID

import httpx
import structlog

from notifications.domain import Inbox, MalformedInboxError, inbox_key
from notifications.handlers import ConcurrencyConflictError, StoreUnavailableError, VersionedInbox
from notifications.settings import Settings

log = structlog.get_logger("notifications.adapters")


def sidecar_client(settings: Settings) -> httpx.AsyncClient:
    """One pooled client to the sidecar for the app's lifetime."""
    headers = {}
    if settings.dapr_api_token is not None:
        headers["dapr-api-token"] = settings.dapr_api_token.get_secret_value()
    return httpx.AsyncClient(
        base_url=f"http://{settings.dapr_host}:{settings.dapr_http_port}",
        headers=headers,
        timeout=httpx.Timeout(settings.state_timeout_seconds, connect=settings.sidecar_connect_timeout_seconds),
        limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
        trust_env=False,  # a proxy from the environment must never sit between an app and its sidecar
    )


def _dapr_error(response: httpx.Response) -> str:
    try:
        body: Any = response.json()
    except ValueError:
        return response.text[:300]
    if isinstance(body, dict):
        return f"{body.get('errorCode')}: {str(body.get('message'))[:300]}"
    return response.text[:300]


class DaprInboxRepository:
    """Inboxes in a Dapr state store over the sidecar's HTTP state API, with ETags and first-write concurrency.

    Works on any Dapr state store that supports ETags: no transactions, no store-specific queries.
    """

    def __init__(self, client: httpx.AsyncClient, store_name: str) -> None:
        self._client = client
        self._store = store_name

    async def get(self, user_id: UUID) -> VersionedInbox:
        key = inbox_key(user_id)
        try:
            response = await self._client.get(f"/v1.0/state/{self._store}/{key}", params={"consistency": "strong"})
        except httpx.HTTPError as exc:
            raise StoreUnavailableError(f"reading {key}: {exc!r}") from exc
        if response.status_code == 204 or (response.status_code == 200 and not response.content):
            return VersionedInbox(Inbox(), None)
        if response.status_code != 200:
            raise StoreUnavailableError(f"reading {key}: {response.status_code} {_dapr_error(response)}")
        try:
            inbox = Inbox.from_document(response.json())
        except (ValueError, MalformedInboxError) as exc:
            # Retrying cannot repair it; the event ends in the dead-letter topic where someone will look.
            log.error("inbox_unreadable", key=key, error=str(exc))
            raise StoreUnavailableError(f"reading {key}: unreadable document") from exc
        return VersionedInbox(inbox, response.headers.get("etag"))

    async def save(self, user_id: UUID, inbox: Inbox, etag: str | None) -> None:
        key = inbox_key(user_id)
        item: dict[str, Any] = {
            "key": key,
            "value": inbox.to_document(),
            # first-write: with an ETag, only over that version; without one, only if the key does not exist.
            "options": {"concurrency": "first-write", "consistency": "strong"},
        }
        if etag is not None:
            item["etag"] = etag
        try:
            response = await self._client.post(f"/v1.0/state/{self._store}", json=[item])
        except httpx.HTTPError as exc:
            raise StoreUnavailableError(f"writing {key}: {exc!r}") from exc
        if response.is_success:
            return
        if response.status_code == 409:  # Dapr's answer to an ETag mismatch
            raise ConcurrencyConflictError(f"writing {key}: the stored version changed")
        raise StoreUnavailableError(f"writing {key}: {response.status_code} {_dapr_error(response)}")


class DaprSidecarHealth:
    """Whether the sidecar is up and its components ready (GET /v1.0/healthz/outbound, 204 when so)."""

    def __init__(self, client: httpx.AsyncClient, timeout: float) -> None:
        self._client = client
        self._timeout = timeout

    async def is_ready(self) -> bool:
        try:
            response = await self._client.get("/v1.0/healthz/outbound", timeout=self._timeout)
        except httpx.HTTPError:
            return False
        return response.is_success
