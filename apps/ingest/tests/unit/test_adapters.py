"""The bulk publisher over the kit's client and a fake sidecar: the request it sends, how Dapr's answers are read."""

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from contracts.telemetry import TelemetryEvent
from ingest.adapters import DaprBulkPublisher
from ingest.handlers import PublishFailedError
from ingest.settings import Settings
from sidecart_kit.testing import fake_sidecar_client

Handler = Callable[[httpx.Request], httpx.Response]


def _publisher(handler: Handler, outcomes: list[str] | None = None) -> DaprBulkPublisher:
    def record(outcome: str, seconds: float) -> None:
        if outcomes is not None:
            outcomes.append(outcome)

    return DaprBulkPublisher(
        fake_sidecar_client(handler), pubsub_name="pubsub", topic="telemetry", source="ingest", on_publish=record
    )


def _events(make_event: Callable[..., dict[str, Any]], count: int = 2) -> list[TelemetryEvent]:
    return [TelemetryEvent.model_validate(make_event()) for _ in range(count)]


async def test_bulk_publish_request_shape(make_event: Callable[..., dict[str, Any]]) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(204)

    outcomes: list[str] = []
    events = _events(make_event)
    await _publisher(handler, outcomes).publish(events)
    [sent] = seen
    assert (sent.method, sent.url.path) == ("POST", "/v1.0-alpha1/publish/bulk/pubsub/telemetry")
    assert sent.headers["content-type"] == "application/json"
    entries = json.loads(sent.content)
    assert [entry["entryId"] for entry in entries] == [str(event.id) for event in events]
    for entry, event in zip(entries, events, strict=True):
        assert entry["contentType"] == "application/cloudevents+json"
        envelope = entry["event"]
        assert envelope["id"] == str(event.id)
        assert envelope["type"] == "sidecart.telemetry.event.v1"
        assert (envelope["specversion"], envelope["source"], envelope["datacontenttype"]) == (
            "1.0",
            "ingest",
            "application/json",
        )
        assert TelemetryEvent.model_validate(envelope["data"]) == event
    assert outcomes == ["published"]


async def test_partial_failure_is_a_failure(make_event: Callable[..., dict[str, Any]]) -> None:
    events = _events(make_event)
    body = {
        "failedEntries": [{"entryId": str(events[1].id), "error": "boom"}],
        "errorCode": "ERR_PUBSUB_PUBLISH_MESSAGE",
    }
    outcomes: list[str] = []
    with pytest.raises(PublishFailedError, match="1 of 2"):
        await _publisher(lambda request: httpx.Response(500, json=body), outcomes).publish(events)
    assert outcomes == ["failed"]


async def test_a_success_status_that_lists_failures_is_a_failure(make_event: Callable[..., dict[str, Any]]) -> None:
    events = _events(make_event)
    body = {"failedEntries": [{"entryId": str(events[0].id), "error": "boom"}]}
    with pytest.raises(PublishFailedError):
        await _publisher(lambda request: httpx.Response(200, json=body)).publish(events)


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(404, json={"errorCode": "ERR_PUBSUB_NOT_FOUND", "message": "pubsub not found"}),
        httpx.Response(403, json={"errorCode": "ERR_PUBSUB_FORBIDDEN", "message": "not allowed"}),
        httpx.Response(500, text="oops"),
    ],
)
async def test_any_other_answer_is_a_failure(
    make_event: Callable[..., dict[str, Any]], response: httpx.Response
) -> None:
    with pytest.raises(PublishFailedError):
        await _publisher(lambda request: response).publish(_events(make_event))


async def test_an_unreachable_sidecar_is_a_failure(make_event: Callable[..., dict[str, Any]]) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    outcomes: list[str] = []
    with pytest.raises(PublishFailedError):
        await _publisher(handler, outcomes).publish(_events(make_event))
    assert outcomes == ["unreachable"]


async def test_the_alpha_api_is_reached_on_the_same_sidecar_with_its_token(
    make_event: Callable[..., dict[str, Any]],
) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(204)

    client = fake_sidecar_client(handler, Settings(dapr_http_port=3999, dapr_api_token="s3cret"))
    await DaprBulkPublisher(client, pubsub_name="pubsub", topic="telemetry", source="ingest").publish(
        _events(make_event)
    )
    [sent] = seen
    assert str(sent.url) == "http://127.0.0.1:3999/v1.0-alpha1/publish/bulk/pubsub/telemetry"
    assert sent.headers["dapr-api-token"] == "s3cret"
