"""The only module that talks to the sidecar: Dapr's bulk publish API, and the sidecar's health."""

import time
from collections.abc import Callable, Sequence
from typing import Any

import httpx
import structlog

from contracts.telemetry import TelemetryEvent
from ingest.domain import bulk_publish_entries
from ingest.handlers import PublishFailedError
from ingest.settings import Settings

log = structlog.get_logger("ingest.adapters")


def sidecar_client(settings: Settings) -> httpx.AsyncClient:
    """One pooled client to the sidecar for the app's lifetime."""
    headers = {}
    if settings.dapr_api_token is not None:
        headers["dapr-api-token"] = settings.dapr_api_token.get_secret_value()
    return httpx.AsyncClient(
        base_url=f"http://{settings.dapr_host}:{settings.dapr_http_port}",
        headers=headers,
        timeout=httpx.Timeout(settings.publish_timeout_seconds, connect=settings.sidecar_connect_timeout_seconds),
        limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
        trust_env=False,  # a proxy from the environment must never sit between an app and its sidecar
    )


def _failed_entries(response: httpx.Response) -> tuple[list[Any], str | None]:
    """Dapr's bulk publish failure body: {"failedEntries": [{"entryId", "error"}], "errorCode": ...}."""
    try:
        body: Any = response.json()
    except ValueError:
        return [], None
    if not isinstance(body, dict):
        return [], None
    failed = body.get("failedEntries")
    code = body.get("errorCode")
    return (failed if isinstance(failed, list) else []), (str(code) if code is not None else None)


class DaprBulkPublisher:
    """Bulk publish over the sidecar's HTTP API: POST /v1.0-alpha1/publish/bulk/{pubsub}/{topic}.

    Each entry is a complete CloudEvent (contentType application/cloudevents+json) whose id is the event id, so
    every consumer can dedupe on it whichever broker the pub/sub component uses.
    """

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        pubsub_name: str,
        topic: str,
        source: str,
        on_publish: Callable[[str, float], None] | None = None,
    ) -> None:
        self._client = client
        self._url = f"/v1.0-alpha1/publish/bulk/{pubsub_name}/{topic}"
        self._source = source
        self._on_publish = on_publish

    async def publish(self, events: Sequence[TelemetryEvent]) -> None:
        entries = bulk_publish_entries(events, self._source)
        started = time.perf_counter()
        try:
            response = await self._client.post(self._url, json=entries)
        except httpx.HTTPError as exc:
            self._record("unreachable", started)
            raise PublishFailedError(f"the sidecar did not answer: {exc!r}") from exc
        failed, error_code = _failed_entries(response)
        # 204 when every entry was published; a 2xx that still lists failed entries is a failure all the same.
        if response.is_success and not failed:
            self._record("published", started)
            return
        self._record("failed", started)
        log.warning(
            "bulk_publish_failed",
            status=response.status_code,
            error_code=error_code,
            failed_entries=len(failed),
            entries=len(entries),
            message=response.text[:300] if not failed else None,
        )
        raise PublishFailedError(
            f"bulk publish answered {response.status_code} ({error_code}): {len(failed)} of {len(entries)} failed"
        )

    def _record(self, outcome: str, started: float) -> None:
        if self._on_publish is not None:
            self._on_publish(outcome, time.perf_counter() - started)


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
