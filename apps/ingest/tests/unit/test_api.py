"""POST /events and health through TestClient: the whole app (its lifespan, the kit's sidecar client) over a fake
sidecar."""

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from ingest.main import create_app
from ingest.settings import Settings
from sidecart_kit.service import Fakes
from sidecart_kit.testing import assert_probes_follow_the_sidecar

MakeEvent = Callable[..., dict[str, Any]]
MIB = 1024 * 1024


@pytest.fixture
def client(sidecar: Any) -> Iterator[TestClient]:
    app = create_app(Settings(), Fakes(sidecar_transport=httpx.MockTransport(sidecar)))
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


def _post(client: TestClient, body: object, content_type: str = "application/json") -> Any:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post("/events", content=content, headers={"content-type": content_type})


def _assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert body["error"]["request_id"] == response.headers["x-request-id"]
    return body


def test_a_valid_batch_is_accepted_and_published(client: TestClient, sidecar: Any, make_event: MakeEvent) -> None:
    events = [make_event(), make_event(type="search", sku=None)]
    response = _post(client, {"events": events})
    assert (response.status_code, response.json()) == (202, {"accepted": 2, "rejected": []})
    assert [str(event.id) for event in sidecar.published] == [event["id"] for event in events]
    assert len(sidecar.batches) == 1  # one bulk call per batch


def test_bad_events_are_rejected_one_by_one(client: TestClient, sidecar: Any, make_event: MakeEvent) -> None:
    good = [make_event(), make_event()]
    events = [good[0], make_event(sku=None), good[1], "junk", make_event(ts="2026-01-01T00:00:00")]
    response = _post(client, {"events": events})
    assert response.status_code == 202
    body = response.json()
    assert body["accepted"] == 2
    assert [(item["index"], item["reason"].split(":")[0]) for item in body["rejected"]] == [
        (1, "sku"),
        (3, "<event>"),
        (4, "ts"),
    ]
    assert [str(event.id) for event in sidecar.published] == [good[0]["id"], good[1]["id"]]


def test_a_batch_without_a_valid_event_publishes_nothing(
    client: TestClient, sidecar: Any, make_event: MakeEvent
) -> None:
    response = _post(client, {"events": [make_event(sku=None)]})
    assert (response.status_code, response.json()["accepted"]) == (202, 0)
    assert sidecar.batches == []


def test_duplicate_ids_accept_the_first(client: TestClient, sidecar: Any, make_event: MakeEvent) -> None:
    first = make_event(sku="first")
    response = _post(client, {"events": [first, make_event(id=first["id"], sku="again")]})
    assert response.json() == {
        "accepted": 1,
        "rejected": [{"index": 1, "reason": "id: duplicate of the event at index 0"}],
    }
    assert [event.sku for event in sidecar.published] == ["first"]


def test_1000_events_are_accepted(client: TestClient, sidecar: Any, make_event: MakeEvent) -> None:
    response = _post(client, {"events": [make_event() for _ in range(1000)]})
    assert (response.status_code, response.json()["accepted"]) == (202, 1000)
    assert len(sidecar.published) == 1000


def test_1001_events_are_too_many(client: TestClient, sidecar: Any, make_event: MakeEvent) -> None:
    _assert_error(_post(client, {"events": [make_event() for _ in range(1001)]}), 413, "too_many_events")
    assert sidecar.batches == []


def test_a_body_over_1_mib_is_too_large(client: TestClient, sidecar: Any, make_event: MakeEvent) -> None:
    padding = "x" * (MIB - 100)
    body = json.dumps({"events": [make_event()], "padding": padding}).encode()
    assert len(body) > MIB
    _assert_error(_post(client, body), 413, "payload_too_large")
    assert sidecar.batches == []


def test_a_body_of_exactly_1_mib_is_read(client: TestClient, make_event: MakeEvent) -> None:
    body = json.dumps({"events": [make_event()], "padding": ""}).encode()
    body = body.replace(b'"padding": ""', b'"padding": "' + b"x" * (MIB - len(body)) + b'"')
    assert len(body) == MIB
    assert _post(client, body).status_code == 202


def test_the_bytes_read_count_whatever_content_length_says(client: TestClient) -> None:
    def chunks() -> Any:
        for _ in range(5):
            yield b" " * (MIB // 4)

    # A generator body is sent chunked, without Content-Length: only the count of bytes read can stop it.
    response = client.post("/events", content=chunks(), headers={"content-type": "application/json"})
    _assert_error(response, 413, "payload_too_large")


def test_a_declared_length_over_the_limit_is_refused_before_reading(client: TestClient) -> None:
    headers = {"content-type": "application/json", "content-length": str(MIB + 1)}
    response = client.post("/events", content=b"{}", headers=headers)
    _assert_error(response, 413, "payload_too_large")


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", ""])
def test_a_body_not_sent_as_json_is_415(client: TestClient, make_event: MakeEvent, content_type: str) -> None:
    _assert_error(_post(client, {"events": [make_event()]}, content_type), 415, "unsupported_media_type")


def test_json_with_a_charset_is_fine(client: TestClient, make_event: MakeEvent) -> None:
    assert _post(client, {"events": [make_event()]}, "application/json; charset=utf-8").status_code == 202


@pytest.mark.parametrize(
    "body", [b'{"events": []}', b"{}", b'{"events": "x"}', b"not json", b"", b"[1, 2]", b"[" * 200_000]
)
def test_a_body_that_is_no_batch_is_422(client: TestClient, sidecar: Any, body: bytes) -> None:
    _assert_error(_post(client, body), 422, "validation_error")
    assert sidecar.batches == []


def test_a_publish_failure_accepts_nothing(client: TestClient, sidecar: Any, make_event: MakeEvent) -> None:
    sidecar.available = False
    body = _assert_error(_post(client, {"events": [make_event(), make_event(sku=None)]}), 503, "unavailable")
    assert "accepted" not in body
    response = _post(client, {"events": [make_event()]})
    assert response.headers["retry-after"] == "2"
    metrics = client.get("/metrics").text
    assert 'ingest_events_total{outcome="failed"} 2.0' in metrics
    assert 'ingest_events_total{outcome="accepted"}' not in metrics


def test_metrics_count_accepted_and_rejected(client: TestClient, make_event: MakeEvent) -> None:
    _post(client, {"events": [make_event(), make_event(), make_event(sku=None)]})
    metrics = client.get("/metrics").text
    assert 'ingest_events_total{outcome="accepted"} 2.0' in metrics
    assert 'ingest_events_total{outcome="rejected"} 1.0' in metrics


def test_probes_follow_the_sidecar(client: TestClient, sidecar: Any) -> None:
    assert_probes_follow_the_sidecar(client, sidecar)


def test_only_the_sidecar_is_answered_when_it_sends_an_app_token(sidecar: Any, make_event: MakeEvent) -> None:
    app = create_app(Settings(app_api_token="from-the-sidecar"), Fakes(sidecar_transport=httpx.MockTransport(sidecar)))
    body = json.dumps({"events": [make_event()]})
    with TestClient(app) as client:
        refused = client.post("/events", content=body, headers={"content-type": "application/json"})
        headers = {"content-type": "application/json", "dapr-api-token": "from-the-sidecar"}
        accepted = client.post("/events", content=body, headers=headers)
        probe = client.get("/healthz")
    _assert_error(refused, 401, "unauthorized")
    assert (accepted.status_code, probe.status_code) == (202, 200)
