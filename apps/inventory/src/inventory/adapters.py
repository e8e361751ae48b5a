"""The only module that talks to the sidecar: documents in the Dapr state store, and the sidecar's health.

Plain httpx over the sidecar's HTTP state API, with ETags and first-write concurrency: no transactions and no
store-specific queries, so it works on any Dapr state store that supports ETags.
"""

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import quote

import httpx
import structlog

from inventory.handlers import ConcurrencyConflictError, StoreUnavailableError, Versioned
from inventory.settings import Settings

log = structlog.get_logger("inventory.adapters")

# first-write: with an ETag, only over that version; without one, only if the key does not exist yet.
_OPTIONS = {"concurrency": "first-write", "consistency": "strong"}


def sidecar_client(settings: Settings, transport: httpx.AsyncBaseTransport | None = None) -> httpx.AsyncClient:
    """One pooled client to the sidecar for the app's lifetime (tests pass a fake sidecar as `transport`)."""
    headers = {}
    if settings.dapr_api_token is not None:
        headers["dapr-api-token"] = settings.dapr_api_token.get_secret_value()
    return httpx.AsyncClient(
        base_url=f"http://{settings.dapr_host}:{settings.dapr_http_port}",
        headers=headers,
        timeout=httpx.Timeout(settings.state_timeout_seconds, connect=settings.sidecar_connect_timeout_seconds),
        # More connections than DaprStateStore lets calls run at once: the pool never makes a call wait. A call
        # cancelled while waiting in httpcore 1.0.9's pool can leak its slot for good (encode/httpcore#1093).
        limits=httpx.Limits(
            max_connections=settings.sidecar_max_concurrent_calls + 16,
            max_keepalive_connections=settings.sidecar_max_concurrent_calls,
        ),
        trust_env=False,  # a proxy from the environment must never sit between an app and its sidecar
        transport=transport,
    )


def _dapr_error(response: httpx.Response) -> str:
    try:
        body: Any = response.json()
    except ValueError:
        return response.text[:300]
    if isinstance(body, dict):
        return f"{body.get('errorCode')}: {str(body.get('message'))[:300]}"
    return response.text[:300]


class DaprStateStore:
    """JSON documents with ETags in one Dapr state store, over the sidecar's HTTP API."""

    def __init__(
        self, client: httpx.AsyncClient, store_name: str, max_concurrent_calls: int = 64, queue_timeout: float = 5.0
    ) -> None:
        self._client = client
        self._store = store_name
        self._slots = asyncio.Semaphore(max_concurrent_calls)
        self._queue_timeout = queue_timeout

    @asynccontextmanager
    async def _slot(self, what: str) -> AsyncIterator[None]:
        """A turn to call the sidecar; calls beyond the limit queue here (where cancelling them is harmless)."""
        try:
            async with asyncio.timeout(self._queue_timeout):
                await self._slots.acquire()
        except TimeoutError as exc:
            raise StoreUnavailableError(f"{what}: too many calls to the sidecar waiting") from exc
        try:
            yield
        finally:
            self._slots.release()

    async def get(self, key: str) -> Versioned | None:
        try:
            async with self._slot(f"reading {key}"):
                response = await self._client.get(
                    f"/v1.0/state/{self._store}/{quote(key, safe='')}", params={"consistency": "strong"}
                )
        except httpx.HTTPError as exc:
            raise StoreUnavailableError(f"reading {key}: {exc!r}") from exc
        if response.status_code == 204 or (response.status_code == 200 and not response.content):
            return None
        if response.status_code != 200:
            raise StoreUnavailableError(f"reading {key}: {response.status_code} {_dapr_error(response)}")
        etag = response.headers.get("etag")
        if not etag:
            raise StoreUnavailableError(f"reading {key}: the store gave no ETag")
        try:
            return Versioned(response.json(), etag)
        except ValueError as exc:
            raise StoreUnavailableError(f"reading {key}: the stored value is not JSON") from exc

    async def get_many(self, keys: Sequence[str]) -> Mapping[str, Versioned]:
        if not keys:
            return {}
        try:
            async with self._slot(f"reading {len(keys)} keys"):
                response = await self._client.post(
                    f"/v1.0/state/{self._store}/bulk", json={"keys": list(keys), "parallelism": 10}
                )
        except httpx.HTTPError as exc:
            raise StoreUnavailableError(f"reading {len(keys)} keys: {exc!r}") from exc
        if response.status_code != 200:
            raise StoreUnavailableError(f"reading {len(keys)} keys: {response.status_code} {_dapr_error(response)}")
        try:
            items: Any = response.json()
        except ValueError as exc:
            raise StoreUnavailableError("bulk read: the answer is not JSON") from exc
        found: dict[str, Versioned] = {}
        for item in items if isinstance(items, list) else []:
            if not isinstance(item, dict):
                continue
            if item.get("error"):
                raise StoreUnavailableError(f"reading {item.get('key')}: {str(item['error'])[:300]}")
            if "data" in item and item.get("etag"):
                found[str(item["key"])] = Versioned(item["data"], str(item["etag"]))
        return found

    async def save(self, key: str, document: Mapping[str, Any], etag: str | None) -> None:
        item: dict[str, Any] = {"key": key, "value": dict(document), "options": _OPTIONS}
        if etag is not None:
            item["etag"] = etag
        try:
            async with self._slot(f"writing {key}"):
                response = await self._client.post(f"/v1.0/state/{self._store}", json=[item])
        except httpx.HTTPError as exc:
            # Maybe not sent, maybe written: what the key holds now tells.
            await self._decide_after_failure(key, etag, f"writing {key}: {exc!r}")
            return
        if response.is_success:
            return
        if response.status_code == 409:  # Dapr's answer to a stale ETag
            raise ConcurrencyConflictError(f"writing {key}: the stored version changed")
        await self._decide_after_failure(key, etag, f"writing {key}: {response.status_code} {_dapr_error(response)}")

    async def _decide_after_failure(self, key: str, etag: str | None, failure: str) -> None:
        """A failed conditional write is a lost race or an outage; a fresh read tells the two apart.

        Redis answers a first-write insert over an existing key with 500 ERR_STATE_SAVE, and a broken store looks
        the same. If the key now holds another version than the one we wrote over, it was a race (or our own
        write landed before the answer was lost): the caller reads again and decides again, which is safe
        because every change here is idempotent. If it holds the same version (or is still absent), nothing
        was written: an outage.
        """
        current = await self.get(key)
        current_etag = None if current is None else current.etag
        if current_etag != etag:
            raise ConcurrencyConflictError(f"{failure} (the stored version changed)")
        log.warning("state_write_failed", key=key, failure=failure)
        raise StoreUnavailableError(failure)


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
