"""The HTTP contract with the order saga and the tests' admin calls, via TestClient over a fake store."""

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from inventory.main import create_app
from inventory.settings import Settings
from sidecart_kit.service import Fakes
from sidecart_kit.testing import FakeSidecarHealth, FakeStateStore


@pytest.fixture
def client(store: FakeStateStore, sidecar_health: FakeSidecarHealth) -> Iterator[TestClient]:
    settings = Settings(seed_demo_catalogue=False, reconcile_interval_seconds=0)
    app = create_app(settings, Fakes(store=store, sidecar_health=sidecar_health))
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def _create(client: TestClient, sku: str, stock: int, price_cents: int = 1200, **extra: Any) -> Any:
    return client.put(
        f"/admin/products/{sku}", json={"name": f"name of {sku}", "price_cents": price_cents, "stock": stock, **extra}
    )


def _reserve(client: TestClient, order_id: str, *lines: tuple[str, int]) -> Any:
    body = {"order_id": order_id, "lines": [{"sku": sku, "quantity": quantity} for sku, quantity in lines]}
    return client.post("/reservations", json=body)


def _error(response: Any) -> dict[str, Any]:
    error: dict[str, Any] = response.json()["error"]
    return error


# --- catalogue -------------------------------------------------------------------------------------------------


def test_create_then_read_a_product(client: TestClient) -> None:
    response = _create(client, "SC-MUG-01", 5)
    product = {"sku": "SC-MUG-01", "name": "name of SC-MUG-01", "price_cents": 1200, "currency": "EUR", "available": 5}
    assert (response.status_code, response.json()) == (201, product)
    assert client.get("/products/SC-MUG-01").json() == product
    assert client.get("/products").json() == {"items": [product]}
    stock = client.get("/admin/products/SC-MUG-01/stock").json()
    assert stock == {"sku": "SC-MUG-01", "initial": 5, "available": 5, "reserved": 0, "sold": 0}


def test_a_sku_exists_once(client: TestClient) -> None:
    assert _create(client, "A-1", 5).status_code == 201
    response = _create(client, "A-1", 9)
    assert (response.status_code, _error(response)["code"]) == (409, "product_exists")


def test_an_unknown_product_is_404(client: TestClient) -> None:
    for path in ("/products/NOPE", "/admin/products/NOPE/stock"):
        response = client.get(path)
        assert (response.status_code, _error(response)["code"]) == (404, "product_not_found")


@pytest.mark.parametrize(
    ("sku", "body", "field"),
    [
        ("A-1", {"name": "a", "price_cents": -1, "stock": 1}, "price_cents"),
        ("A-1", {"name": "a", "price_cents": 1, "stock": -1}, "stock"),
        ("A-1", {"name": "a", "price_cents": 1, "stock": 1, "currency": "eur"}, "currency"),
        ("A-1", {"name": "", "price_cents": 1, "stock": 1}, "name"),
        ("A-1", {"price_cents": 1, "stock": 1}, "name"),
        ("a" * 65, {"name": "a", "price_cents": 1, "stock": 1}, "sku"),
        ("bad sku!", {"name": "a", "price_cents": 1, "stock": 1}, "sku"),
    ],
)
def test_invalid_products_are_422_naming_the_field(client: TestClient, sku: str, body: Any, field: str) -> None:
    response = client.put(f"/admin/products/{sku}", json=body)
    assert (response.status_code, _error(response)["code"]) == (422, "validation_error")
    assert field in [detail["field"] for detail in _error(response)["details"]]


# --- reservations ----------------------------------------------------------------------------------------------


def test_reserve_answers_lines_at_current_prices(client: TestClient) -> None:
    _create(client, "A-1", 5, price_cents=1200)
    _create(client, "B-1", 5, price_cents=550)
    order_id = str(uuid.uuid4())
    response = _reserve(client, order_id, ("A-1", 2), ("B-1", 1))
    assert response.status_code == 200
    assert response.json() == {
        "order_id": order_id,
        "status": "reserved",
        "lines": [
            {"sku": "A-1", "quantity": 2, "unit_price_cents": 1200},
            {"sku": "B-1", "quantity": 1, "unit_price_cents": 550},
        ],
        "total_cents": 2950,
        "currency": "EUR",
    }
    assert _reserve(client, order_id, ("A-1", 2), ("B-1", 1)).json() == response.json()
    assert client.get("/admin/products/A-1/stock").json()["reserved"] == 2
    assert client.get("/products/A-1").json()["available"] == 3


def test_out_of_stock_is_409_naming_the_skus_and_holds_nothing(client: TestClient) -> None:
    _create(client, "A-1", 5)
    _create(client, "B-1", 1)
    order_id = str(uuid.uuid4())
    response = _reserve(client, order_id, ("A-1", 2), ("B-1", 3))
    assert (response.status_code, _error(response)["code"]) == (409, "out_of_stock")
    assert [detail["reason"] for detail in _error(response)["details"]] == ["B-1: 3 requested, 1 available"]
    assert client.get("/admin/products/A-1/stock").json()["reserved"] == 0
    again = _reserve(client, order_id, ("A-1", 2), ("B-1", 3))
    assert (again.status_code, _error(again)["details"]) == (409, _error(response)["details"])


def test_unknown_sku_is_422(client: TestClient) -> None:
    _create(client, "A-1", 5)
    response = _reserve(client, str(uuid.uuid4()), ("A-1", 1), ("NOPE-1", 1))
    assert (response.status_code, _error(response)["code"]) == (422, "unknown_sku")
    assert "NOPE-1" in _error(response)["details"][0]["reason"]


@pytest.mark.parametrize(
    "body",
    [
        {"order_id": "not-a-uuid", "lines": [{"sku": "A-1", "quantity": 1}]},
        {"order_id": str(uuid.uuid4()), "lines": []},
        {"order_id": str(uuid.uuid4()), "lines": [{"sku": "A-1", "quantity": 0}]},
        {"order_id": str(uuid.uuid4()), "lines": [{"sku": "A-1", "quantity": 1}, {"sku": "A-1", "quantity": 2}]},
        {"order_id": str(uuid.uuid4()), "lines": [{"sku": f"S-{number}", "quantity": 1} for number in range(21)]},
        {"order_id": str(uuid.uuid4()), "lines": [{"sku": "bad sku", "quantity": 1}]},
        {"order_id": str(uuid.uuid4())},
    ],
)
def test_invalid_reservations_are_422(client: TestClient, body: Any) -> None:
    response = client.post("/reservations", json=body)
    assert (response.status_code, _error(response)["code"]) == (422, "validation_error")


def test_malformed_json_is_422_not_500(client: TestClient) -> None:
    response = client.post("/reservations", content=b"{nope", headers={"content-type": "application/json"})
    assert (response.status_code, _error(response)["code"]) == (422, "validation_error")


def test_release_gives_back_and_refuses_a_late_reserve(client: TestClient) -> None:
    _create(client, "A-1", 5)
    order_id = str(uuid.uuid4())
    _reserve(client, order_id, ("A-1", 2))
    for _ in range(2):
        response = client.post(f"/reservations/{order_id}/release")
        assert (response.status_code, response.json()) == (200, {"order_id": order_id, "status": "released"})
    assert client.get("/admin/products/A-1/stock").json()["available"] == 5
    late = _reserve(client, order_id, ("A-1", 2))
    assert (late.status_code, _error(late)["code"]) == (409, "reservation_released")


def test_release_of_an_unknown_order_is_200_and_leaves_a_tombstone(client: TestClient) -> None:
    _create(client, "A-1", 5)
    order_id = str(uuid.uuid4())
    response = client.post(f"/reservations/{order_id}/release")
    assert (response.status_code, response.json()["status"]) == (200, "released")
    late = _reserve(client, order_id, ("A-1", 1))
    assert (late.status_code, _error(late)["code"]) == (409, "reservation_released")
    assert client.get("/admin/products/A-1/stock").json()["available"] == 5


def test_commit_sells_and_then_refuses_a_release(client: TestClient) -> None:
    _create(client, "A-1", 5)
    order_id = str(uuid.uuid4())
    reserved = _reserve(client, order_id, ("A-1", 2)).json()
    for _ in range(2):
        response = client.post(f"/reservations/{order_id}/commit")
        assert (response.status_code, response.json()) == (200, {"order_id": order_id, "status": "committed"})
    assert client.get("/admin/products/A-1/stock").json() == {
        "sku": "A-1",
        "initial": 5,
        "available": 3,
        "reserved": 0,
        "sold": 2,
    }
    release = client.post(f"/reservations/{order_id}/release")
    assert (release.status_code, _error(release)["code"]) == (409, "reservation_committed")
    assert _reserve(client, order_id, ("A-1", 2)).json() == reserved


def test_commit_of_an_unknown_or_released_order_is_refused(client: TestClient) -> None:
    unknown = client.post(f"/reservations/{uuid.uuid4()}/commit")
    assert (unknown.status_code, _error(unknown)["code"]) == (404, "reservation_not_found")
    order_id = str(uuid.uuid4())
    client.post(f"/reservations/{order_id}/release")
    released = client.post(f"/reservations/{order_id}/commit")
    assert (released.status_code, _error(released)["code"]) == (409, "reservation_released")


def test_the_same_order_with_other_lines_is_409(client: TestClient) -> None:
    _create(client, "A-1", 5)
    order_id = str(uuid.uuid4())
    _reserve(client, order_id, ("A-1", 1))
    response = _reserve(client, order_id, ("A-1", 3))
    assert (response.status_code, _error(response)["code"]) == (409, "reservation_mismatch")


def test_invalid_order_id_in_the_path_is_422(client: TestClient) -> None:
    response = client.post("/reservations/nope/release")
    assert (response.status_code, _error(response)["details"][0]["field"]) == (422, "order_id")


def test_a_store_outage_is_503_with_retry_after(client: TestClient, store: Any) -> None:
    _create(client, "A-1", 5)
    store.available = False
    response = _reserve(client, str(uuid.uuid4()), ("A-1", 1))
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert _error(response)["code"] == "unavailable"
    assert client.get("/products").status_code == 503


def test_outcomes_are_counted(client: TestClient) -> None:
    _create(client, "A-1", 1)
    _reserve(client, str(uuid.uuid4()), ("A-1", 1))
    _reserve(client, str(uuid.uuid4()), ("A-1", 1))
    text = client.get("/metrics").text
    assert 'inventory_operations_total{operation="reserve",outcome="reserved"} 1.0' in text
    assert 'inventory_operations_total{operation="reserve",outcome="out_of_stock"} 1.0' in text


# --- health and errors -----------------------------------------------------------------------------------------


def test_healthz(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}


def test_readyz_follows_the_sidecar_and_the_seeding(client: TestClient, sidecar_health: Any) -> None:
    assert (client.get("/readyz").status_code, client.get("/readyz").json()) == (200, {"status": "ready"})
    client.app.state.seeded = False  # type: ignore[attr-defined]
    response = client.get("/readyz")
    assert (response.status_code, _error(response)["code"]) == (503, "not_ready")
    client.app.state.seeded = True  # type: ignore[attr-defined]
    sidecar_health.ready = False
    response = client.get("/readyz")
    assert (response.status_code, _error(response)["code"]) == (503, "not_ready")


def test_errors_carry_the_request_id(client: TestClient) -> None:
    response = client.get("/products/NOPE", headers={"X-Request-ID": "req-1"})
    assert _error(response)["request_id"] == "req-1"
    assert response.headers["x-request-id"] == "req-1"


def test_unknown_route_is_404_in_the_error_shape(client: TestClient) -> None:
    response = client.get("/nope")
    assert (response.status_code, _error(response)["code"]) == (404, "not_found")


def test_unexpected_exception_is_500_internal_error(client: TestClient, store: Any) -> None:
    store.documents["catalogue"] = ("corrupt", 1)
    response = client.get("/products")
    assert (response.status_code, _error(response)["code"]) == (500, "internal_error")
