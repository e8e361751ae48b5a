"""The only module that talks to the sidecar: Dapr's bulk publish API, over the kit's sidecar client."""

import time
from collections.abc import Callable, Sequence
from typing import Any

import httpx

from contracts.telemetry import TelemetryEvent
from ingest.domain import bulk_publish_entries
from ingest.handlers import PublishFailedError
from sidecart_kit.logs import get_logger
from sidecart_kit.sidecar import dapr_error_code

log = get_logger(__name__)


def _failed_entries(response: httpx.Response) -> list[Any]:
    """The entries Dapr's bulk publish failure body lists: {"failedEntries": [{"entryId", "error"}], ...}."""
    try:
        body: Any = response.json()
    except ValueError:
        return []
    failed = body.get("failedEntries") if isinstance(body, dict) else None
    return failed if isinstance(failed, list) else []


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
        # Bulk publish is still an alpha API, outside the client's /v1.0 base: an absolute URL on the same sidecar.
        self._url = client.base_url.join(f"/v1.0-alpha1/publish/bulk/{pubsub_name}/{topic}")
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
        failed, error_code = _failed_entries(response), dapr_error_code(response)
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
