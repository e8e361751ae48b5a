"""A domain error answered as passing: the one error shape, 503, and when to try again."""

from fastapi import FastAPI
from fastapi.testclient import TestClient

from sidecart_kit.errors import install_error_handlers, unavailable


class StoreDownError(Exception):
    pass


def test_an_error_that_passes_is_a_503_with_retry_after() -> None:
    app = FastAPI()
    install_error_handlers(
        app, {StoreDownError: unavailable("Down for now.", retry_after_seconds=2, code="store_down")}
    )

    @app.get("/thing")
    async def thing() -> None:
        raise StoreDownError("the store did not answer")

    response = TestClient(app).get("/thing")

    assert (response.status_code, response.headers["retry-after"]) == (503, "2")
    assert response.json()["error"] | {"request_id": None} == {
        "code": "store_down",
        "message": "Down for now.",
        "details": [],
        "request_id": None,
    }


def test_the_code_says_unavailable_unless_told_otherwise() -> None:
    assert unavailable("Down.", retry_after_seconds=1)(RuntimeError()).code == "unavailable"
