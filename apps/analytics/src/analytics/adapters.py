"""What analytics adds to the kit's sidecar client: bounded bulk reads of the state store, and publishing."""

import asyncio
import json
from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from analytics.handlers import PublishFailedError
from sidecart_kit.sidecar import dapr_error
from sidecart_kit.state import DaprStateStore, Versioned

CLOUDEVENT_MEDIA_TYPE = "application/cloudevents+json"


class BoundedBulkStateStore(DaprStateStore):
    """The kit's state store, whose bulk reads run at most `bulk_parallelism` round trips at once, so a report
    over the whole retention window leaves call slots to the deliveries being folded meanwhile."""

    def __init__(
        self, client: httpx.AsyncClient, store_name: str, *, bulk_chunk: int = 500, bulk_parallelism: int = 8
    ) -> None:
        super().__init__(client, store_name, bulk_chunk=bulk_chunk)
        self._chunk = bulk_chunk
        self._bulk_slots = asyncio.Semaphore(bulk_parallelism)

    async def get_many(self, keys: Sequence[str]) -> dict[str, Versioned]:
        chunks = [keys[start : start + self._chunk] for start in range(0, len(keys), self._chunk)]
        parts = await asyncio.gather(*(self._get_chunk(chunk) for chunk in chunks))
        return {key: found for part in parts for key, found in part.items()}

    async def _get_chunk(self, keys: Sequence[str]) -> dict[str, Versioned]:
        async with self._bulk_slots:
            return await super().get_many(keys)


class DaprPublisher:
    """Publishes a complete CloudEvent as is (its id and type kept), over POST /v1.0/publish/{pubsub}/{topic}."""

    def __init__(self, client: httpx.AsyncClient, pubsub_name: str) -> None:
        self._client = client
        self._pubsub = pubsub_name

    async def publish(self, topic: str, cloud_event: Mapping[str, Any]) -> None:
        try:
            response = await self._client.post(
                f"/publish/{self._pubsub}/{topic}",
                content=json.dumps(cloud_event).encode(),
                headers={"content-type": CLOUDEVENT_MEDIA_TYPE},
            )
        except httpx.HTTPError as exc:
            raise PublishFailedError(f"publishing to {topic}: {exc!r}") from exc
        if not response.is_success:
            raise PublishFailedError(f"publishing to {topic}: {dapr_error(response)}")
