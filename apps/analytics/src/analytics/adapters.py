"""The only module that talks to the sidecar: the state API (ETags, bulk get), publishing, and health."""

import asyncio
import json
from collections.abc import Mapping, Sequence
from typing import Any

import httpx
import structlog

from analytics.handlers import (
    ConcurrencyConflictError,
    PublishFailedError,
    StoreUnavailableError,
    Versioned,
)
from analytics.settings import Settings

log = structlog.get_logger("analytics.adapters")
CLOUDEVENT_MEDIA_TYPE = "application/cloudevents+json"


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


class DaprStateStore:
    """Documents in a Dapr state store over the sidecar's HTTP state API, with ETags and first-write concurrency.

    Works on any Dapr state store that supports ETags: single-key writes only, no transactions, no queries.
    """

    def __init__(self, client: httpx.AsyncClient, store_name: str, *, chunk: int = 500, parallelism: int = 8) -> None:
        self._client = client
        self._store = store_name
        self._chunk = chunk
        self._parallelism = asyncio.Semaphore(parallelism)

    async def get(self, key: str) -> Versioned:
        try:
            response = await self._client.get(f"/v1.0/state/{self._store}/{key}", params={"consistency": "strong"})
        except httpx.HTTPError as exc:
            raise StoreUnavailableError(f"reading {key}: {exc!r}") from exc
        if response.status_code == 204 or (response.status_code == 200 and not response.content):
            return Versioned(None, None)
        if response.status_code != 200:
            raise StoreUnavailableError(f"reading {key}: {response.status_code} {_dapr_error(response)}")
        try:
            document = response.json()
        except ValueError as exc:
            raise StoreUnavailableError(f"reading {key}: not JSON") from exc
        return Versioned(document, response.headers.get("etag"))

    async def save(self, key: str, document: Any, etag: str | None) -> None:
        item: dict[str, Any] = {
            "key": key,
            "value": document,
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

    async def get_many(self, keys: Sequence[str]) -> dict[str, Any]:
        chunks = [list(keys[start : start + self._chunk]) for start in range(0, len(keys), self._chunk)]
        found: dict[str, Any] = {}
        for part in await asyncio.gather(*(self._bulk_get(chunk) for chunk in chunks)):
            found.update(part)
        return found

    async def _bulk_get(self, keys: list[str]) -> dict[str, Any]:
        """POST /v1.0/state/{store}/bulk: [{"key", "data", "etag"} | {"key", "error"}] in one round trip."""
        async with self._parallelism:
            try:
                response = await self._client.post(
                    f"/v1.0/state/{self._store}/bulk", json={"keys": keys, "parallelism": 16}
                )
            except httpx.HTTPError as exc:
                raise StoreUnavailableError(f"bulk reading {len(keys)} keys: {exc!r}") from exc
        if response.status_code != 200:
            raise StoreUnavailableError(f"bulk reading: {response.status_code} {_dapr_error(response)}")
        try:
            items: Any = response.json()
        except ValueError as exc:
            raise StoreUnavailableError("bulk reading: not JSON") from exc
        if not isinstance(items, list):
            raise StoreUnavailableError("bulk reading: not a list")
        found: dict[str, Any] = {}
        for item in items:
            if not isinstance(item, dict) or not isinstance(item.get("key"), str):
                continue
            if item.get("error"):
                raise StoreUnavailableError(f"bulk reading {item['key']}: {str(item['error'])[:300]}")
            data = item.get("data")
            if data is None:
                continue  # not stored
            if isinstance(data, str):  # stores that keep bytes hand them back as a JSON string
                try:
                    data = json.loads(data)
                except ValueError:
                    log.error("document_not_json", key=item["key"])
                    continue
            found[item["key"]] = data
        return found


class DaprPublisher:
    """Publishes a complete CloudEvent as is (its id and type kept), over POST /v1.0/publish/{pubsub}/{topic}."""

    def __init__(self, client: httpx.AsyncClient, pubsub_name: str) -> None:
        self._client = client
        self._pubsub = pubsub_name

    async def publish(self, topic: str, cloud_event: Mapping[str, Any]) -> None:
        try:
            response = await self._client.post(
                f"/v1.0/publish/{self._pubsub}/{topic}",
                content=json.dumps(cloud_event).encode(),
                headers={"content-type": CLOUDEVENT_MEDIA_TYPE},
            )
        except httpx.HTTPError as exc:
            raise PublishFailedError(f"publishing to {topic}: {exc!r}") from exc
        if not response.is_success:
            raise PublishFailedError(f"publishing to {topic}: {response.status_code} {_dapr_error(response)}")


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
