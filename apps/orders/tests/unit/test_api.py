"""The HTTP API through TestClient, with the ports behind its dependencies replaced by fakes."""

from collections.abc import Callable
from typing import Any
from uuid import uuid4

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr

from contracts.api import ErrorDetail, ErrorResponse
from orders.domain import RequestedLine
from orders.saga import SagaInput
from orders.settings import Settings

USER = str(uuid4())
BODY = {"items": [{"sku": "SKU-A", "quantity": 2}, {"sku": "SKU-B", "quantity": 1}]}


def assert_error(response: httpx.Response, status: int, code: str) -> list[ErrorDetail]:
    """The one error shape, the contract's ErrorResponse to the letter, with the request id echoed in the header."""
    assert response.status_code == status, response.text
    error = ErrorResponse.model_validate_json(response.content).error
    assert {"error": error.model_dump(mode="json")} == response.json()
    assert (error.code, error.request_id) == (code, response.headers["x-request-id"])
    assert error.message
    return error.details


def post(
    client: TestClient, body: Any = None, key: str | None = "key-1", user: str = USER, **headers: str
) -> httpx.Response:
    if key is not None:
        headers["Idempotency-Key"] = key
    response: httpx.Response = client.post(
        f"/users/{user}/orders", json=BODY if body is None else body, headers=headers
    )
    return response


# --- placing --------------------------------------------------------------------------------------------------


def test_place_accepts_with_202_and_the_order_id(client: TestClient, workflows: Any) -> None:
    response = post(client)

    assert response.status_code == 202, response.text
    body = response.json()
    assert body["status"] == "pending"
    assert response.headers["location"] == f"/users/{USER}/orders/{body['order_id']}"
    assert [str(order_id) for order_id in workflows.starts] == [body["order_id"]]


def test_the_same_key_again_gives_the_same_order(client: TestClient, workflows: Any) -> None:
    first, again = post(client), post(client)

    assert again.status_code == 202
    assert again.json()["order_id"] == first.json()["order_id"]
    assert len(workflows.starts) == 1


def test_the_same_key_with_another_body_is_409(client: TestClient) -> None:
    post(client)
    assert_error(post(client, {"items": [{"sku": "SKU-A", "quantity": 3}]}), 409, "idempotency_key_reused")


def test_a_missing_idempotency_key_is_400(client: TestClient) -> None:
    assert_error(post(client, key=None), 400, "idempotency_key_required")


@pytest.mark.parametrize("key", ["k" * 129, "tab\there"])
def test_an_invalid_idempotency_key_is_400(client: TestClient, key: str) -> None:
    assert_error(post(client, key=key), 400, "idempotency_key_invalid")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"items": []}, "items"),
        ({"items": [{"sku": f"S{n}", "quantity": 1} for n in range(21)]}, "items"),
        ({"items": [{"sku": "SKU-A", "quantity": 0}]}, "items.0.quantity"),
        ({"items": [{"sku": "SKU-A", "quantity": 101}]}, "items.0.quantity"),
        ({"items": [{"sku": "SKU-A", "quantity": "2"}]}, "items.0.quantity"),
        ({"items": [{"sku": "SKU-A", "quantity": 1}, {"sku": " ", "quantity": 1}]}, "items.1.sku"),
        ({"items": [{"sku": "S" * 65, "quantity": 1}]}, "items.0.sku"),
        # Anything outside the catalogue's SKU rule: a control character, a path separator, a dot segment, unicode.
        ({"items": [{"sku": "SKU\u0001A", "quantity": 1}]}, "items.0.sku"),
        ({"items": [{"sku": "SKU/../A", "quantity": 1}]}, "items.0.sku"),
        ({"items": [{"sku": "..", "quantity": 1}]}, "items.0.sku"),
        ({"items": [{"sku": "SKÜ-A", "quantity": 1}]}, "items.0.sku"),
        ({"items": [{"quantity": 1}]}, "items.0.sku"),
        ({}, "items"),
    ],
)
def test_invalid_bodies_are_422_naming_the_field(client: TestClient, body: Any, field: str) -> None:
    details = assert_error(post(client, body), 422, "validation_error")
    assert field in [detail.field for detail in details]


def test_a_duplicate_sku_is_422_naming_the_repeated_line(client: TestClient, workflows: Any) -> None:
    body = {
        "items": [{"sku": "SKU-A", "quantity": 1}, {"sku": "SKU-B", "quantity": 1}, {"sku": "SKU-A", "quantity": 2}]
    }
    details = assert_error(post(client, body), 422, "validation_error")
    assert [detail.field for detail in details] == ["items.2.sku"]
    assert workflows.starts == []


def test_an_unknown_sku_is_422_before_any_saga(client: TestClient, workflows: Any, repository: Any) -> None:
    body = {"items": [{"sku": "SKU-A", "quantity": 1}, {"sku": "NOPE", "quantity": 1}]}
    details = assert_error(post(client, body), 422, "unknown_sku")
    assert [detail.field for detail in details] == ["items.1.sku"]
    assert workflows.starts == []
    assert repository.claims == {}


def test_a_user_id_that_is_not_a_uuid_is_422(client: TestClient) -> None:
    details = assert_error(post(client, user="not-a-uuid"), 422, "validation_error")
    assert details[0].field == "user_id"


def test_a_store_outage_is_503_with_retry_after(client: TestClient, repository: Any) -> None:
    repository.fail_next.append("get_claim")
    response = post(client)
    assert_error(response, 503, "unavailable")
    assert response.headers["retry-after"] == "1"


# --- reading ------------------------------------------------------------------------------------------------


def test_get_shows_status_steps_lines_and_total(client: TestClient) -> None:
    order_id = post(client).json()["order_id"]

    response = client.get(f"/users/{USER}/orders/{order_id}")

    assert response.status_code == 200, response.text
    order = response.json()
    assert set(order) == {
        "order_id",
        "user_id",
        "status",
        "steps",
        "reason",
        "lines",
        "total_cents",
        "currency",
        "created_at",
        "updated_at",
    }
    assert (order["order_id"], order["user_id"], order["status"]) == (order_id, USER, "pending")
    assert (order["steps"], order["reason"], order["total_cents"], order["currency"]) == ([], None, 2250, "EUR")
    assert order["lines"][0] == {"sku": "SKU-A", "quantity": 2, "unit_price_cents": 500}


async def test_get_shows_saga_steps(client: TestClient, steps: Any, repository: Any) -> None:
    order_id = post(client).json()["order_id"]
    order = next(iter(repository.orders.values()))[0]
    await steps.reserve_stock(SagaInput(order.id, order.user_id, (RequestedLine("SKU-A", 2),)))

    body = client.get(f"/users/{USER}/orders/{order_id}").json()

    assert body["status"] == "reserving"
    assert [(s["name"], s["status"]) for s in body["steps"]] == [("reserve_stock", "succeeded")]
    assert body["steps"][0]["at"]


@pytest.mark.parametrize("path", [f"/users/{uuid4()}/orders/{{id}}", f"/users/{USER}/orders/{uuid4()}"])
def test_another_users_or_an_unknown_order_is_404(client: TestClient, path: str) -> None:
    order_id = post(client).json()["order_id"]
    assert_error(client.get(path.format(id=order_id)), 404, "order_not_found")


@pytest.mark.parametrize("path", [f"/users/{USER}/orders/not-a-uuid", "/users/nobody/orders/{id}"])
def test_malformed_ids_are_404(client: TestClient, path: str) -> None:
    order_id = post(client).json()["order_id"]
    assert_error(client.get(path.format(id=order_id)), 404, "order_not_found")


def test_list_is_newest_first(client: TestClient, clock: Any) -> None:
    ids = []
    for n in range(3):
        ids.append(post(client, key=f"key-{n}").json()["order_id"])
        clock.advance(1)

    response = client.get(f"/users/{USER}/orders")

    assert response.status_code == 200
    assert [item["order_id"] for item in response.json()["items"]] == list(reversed(ids))
    assert client.get(f"/users/{uuid4()}/orders").json() == {"items": []}


# --- probes, metrics, app token -----------------------------------------------------------------------------


def test_healthz(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}


def test_readyz_needs_the_sidecar_and_the_workflow_worker(
    client: TestClient, sidecar_health: Any, worker_state: Any
) -> None:
    assert client.get("/readyz").json() == {"status": "ready"}

    worker_state.connected = False
    details = assert_error(client.get("/readyz"), 503, "not_ready")
    assert ["workflow worker" in detail.reason for detail in details] == [True]

    sidecar_health.ready = False
    assert len(assert_error(client.get("/readyz"), 503, "not_ready")) == 2


def test_the_saga_metrics_are_served_beside_the_http_metrics(client: TestClient) -> None:
    text = client.get("/metrics").text
    assert "orders_sagas_finished" in text
    assert "orders_saga_duration_seconds" in text


def test_app_token_guards_the_api_but_not_the_probes(make_app: Callable[[Settings], FastAPI]) -> None:
    client = TestClient(make_app(Settings(app_api_token=SecretStr("s3cret"))), raise_server_exceptions=False)

    assert_error(post(client), 401, "unauthorized")
    assert post(client, **{"dapr-api-token": "s3cret"}).status_code == 202
    assert client.get("/healthz").status_code == 200
