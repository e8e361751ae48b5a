"""What analytics adds to the kit's sidecar client: bounded bulk reads of the state store, and publishing."""

import json
from collections.abc import Mapping
from typing import Any

import httpx

from analytics.handlers import PublishFailedError
from sidecart_kit.sidecar import dapr_error

CLOUDEVENT_MEDIA_TYPE = "application/cloudevents+json"


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
