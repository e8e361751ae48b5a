"""Pub/sub as an app sees it through its sidecar: subscriptions declared beside their handlers, the CloudEvent
envelopes and bulk deliveries the sidecar sends, and the answers it expects."""

import base64
import json
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict


class DeliveryStatus(StrEnum):
    """What the sidecar does next with a delivered event."""

    SUCCESS = "SUCCESS"  # done (or nothing to do): acknowledged
    RETRY = "RETRY"  # not done: delivered again (then dead-lettered, per the resiliency policy)
    DROP = "DROP"  # never doable: acknowledged and logged by the sidecar as dropped


def delivery_answer(status: DeliveryStatus) -> JSONResponse:
    """The answer to one delivered event (200 with its status: Dapr acts on the status, not the HTTP code)."""
    return JSONResponse({"status": status.value})


def bulk_answer(statuses: dict[str, DeliveryStatus]) -> JSONResponse:
    """The answer to a bulk delivery: one status per entry id."""
    return JSONResponse(
        {"statuses": [{"entryId": entry_id, "status": status.value} for entry_id, status in statuses.items()]}
    )


@dataclass(frozen=True)
class BulkSettings:
    max_messages: int = 100
    max_await_ms: int = 1000


@dataclass(frozen=True)
class Subscription:
    """One topic an app subscribes to (the sidecar reads them from GET /dapr/subscribe at start), routed by
    CloudEvent type; types without a rule go to `default_route`, so a newer version's events are seen, not lost."""

    pubsub: str
    topic: str
    routes_by_type: dict[str, str] = field(default_factory=dict)
    default_route: str | None = None
    dead_letter_topic: str | None = None
    bulk: BulkSettings | None = None

    def to_dapr(self) -> dict[str, Any]:
        routes: dict[str, Any] = {
            "rules": [
                {"match": f'event.type == "{event_type}"', "path": path}
                for event_type, path in self.routes_by_type.items()
            ]
        }
        if self.default_route is not None:
            routes["default"] = self.default_route
        declared: dict[str, Any] = {"pubsubname": self.pubsub, "topic": self.topic, "routes": routes}
        if self.dead_letter_topic is not None:
            declared["deadLetterTopic"] = self.dead_letter_topic
        if self.bulk is not None:
            declared["bulkSubscribe"] = {
                "enabled": True,
                "maxMessagesCount": self.bulk.max_messages,
                "maxAwaitDurationMs": self.bulk.max_await_ms,
            }
        return declared


class CloudEvent(BaseModel):
    """The envelope the sidecar delivers; only what apps read. Unknown attributes are ignored (tolerant reader)."""

    model_config = ConfigDict(extra="ignore")

    id: str = ""
    type: str = ""
    source: str = ""
    data: Any = None
    data_base64: str | None = None

    def payload(self) -> Any:
        """The event data, whether the sidecar sent it as JSON, as a JSON string or base64-encoded."""
        if self.data is None and self.data_base64 is not None:
            return json.loads(base64.b64decode(self.data_base64, validate=True))
        if isinstance(self.data, str | bytes):
            return json.loads(self.data)
        return self.data


class BulkEntry(BaseModel):
    model_config = ConfigDict(extra="ignore")

    entryId: str  # noqa: N815 - Dapr's field name
    event: Any = None
    contentType: str | None = None  # noqa: N815 - Dapr's field name

    def envelope(self) -> Any:
        """The entry's CloudEvent as a JSON object (tolerating one sent as a JSON string or base64 text)."""
        raw = self.event
        if not isinstance(raw, str):
            return raw
        try:
            return json.loads(raw)
        except ValueError:
            try:
                return json.loads(base64.b64decode(raw, validate=True))
            except ValueError:
                return raw


class BulkDelivery(BaseModel):
    model_config = ConfigDict(extra="ignore")

    entries: list[BulkEntry]
    id: str | None = None
    topic: str | None = None
