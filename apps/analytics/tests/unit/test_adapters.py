"""The adapters against a fake sidecar (httpx.MockTransport): publishing, and the settings."""

import json
from collections.abc import Callable

import httpx
import pytest

from analytics.adapters import DaprPublisher
from analytics.handlers import PublishFailedError
from analytics.settings import Settings
from sidecart_kit.testing import fake_sidecar_client

Handler = Callable[[httpx.Request], httpx.Response]


async def test_a_dead_letter_is_published_as_the_cloud_event_it_is() -> None:
    seen: list[httpx.Request] = []

    def sidecar(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(204)

    event = {"specversion": "1.0", "id": "e-1", "type": "t", "source": "s", "data": {"a": 1}}
    await DaprPublisher(fake_sidecar_client(sidecar), "pubsub").publish("telemetry-deadletter", event)
    [request] = seen
    assert (request.method, request.url.path) == ("POST", "/v1.0/publish/pubsub/telemetry-deadletter")
    assert request.headers["content-type"] == "application/cloudevents+json"
    assert json.loads(request.content) == event


def _raise(exc: Exception) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    return handler


@pytest.mark.parametrize(
    "handler",
    [
        lambda request: httpx.Response(500, json={"errorCode": "ERR_PUBSUB_PUBLISH_MESSAGE", "message": "down"}),
        lambda request: httpx.Response(403, json={"errorCode": "ERR_PUBSUB_FORBIDDEN", "message": "no"}),
        _raise(httpx.ConnectError("refused")),
    ],
)
async def test_a_failed_publish_is_reported(handler: Handler) -> None:
    with pytest.raises(PublishFailedError):
        await DaprPublisher(fake_sidecar_client(handler), "pubsub").publish("deadletter", {"id": "e-1"})


def test_settings_defaults_and_the_variables_they_read(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings()
    assert (settings.state_store, settings.sidecar_timeout_seconds) == ("analytics-store", 20.0)
    monkeypatch.setenv("APP_PORT", "9107")
    monkeypatch.setenv("ANALYTICS_STATE_STORE", "other-store")
    monkeypatch.setenv("ANALYTICS_MALFORMED_ENTRY_ACTION", "publish")
    settings = Settings()
    assert (settings.app_port, settings.state_store, settings.malformed_entry_action) == (
        9107,
        "other-store",
        "publish",
    )
