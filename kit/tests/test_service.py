"""A service's plumbing, end to end in one process: request ids, the error shape, the one 500, metrics, logs and
the trace context passed on to the sidecar."""

import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import httpx
import pytest
import uvicorn
from fastapi import APIRouter, Depends, FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr
from pydantic_settings import SettingsConfigDict

from sidecart_kit.errors import ApiError, DomainErrors
from sidecart_kit.logs import configure_logging, get_logger
from sidecart_kit.requests import REQUEST_ID_HEADER
from sidecart_kit.service import Fakes, Service, from_app_state, install_plumbing, probe_routes, serve, service_app
from sidecart_kit.sidecar import ServiceSettings
from sidecart_kit.state import StoreUnavailableError
from sidecart_kit.testing import FakeSidecarHealth, fake_sidecar_client

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
log = get_logger("kit.tests")


class OutOfStockError(Exception):
    pass


def build_app(seen_by_sidecar: list[httpx.Request]) -> FastAPI:
    app = FastAPI()
    install_plumbing(
        app, domain_errors={OutOfStockError: lambda exc: ApiError(409, "out_of_stock", f"no stock: {exc}")}
    )

    def sidecar(request: httpx.Request) -> httpx.Response:
        seen_by_sidecar.append(request)
        return httpx.Response(204)

    @app.get("/items/{item_id}")
    async def item(item_id: str) -> dict[str, str]:
        log.info("item_read", item_id=item_id)
        async with fake_sidecar_client(sidecar) as client:
            await client.get(f"/state/store/{item_id}")
        return {"id": item_id}

    @app.get("/refused")
    async def refused() -> None:
        raise ApiError(400, "bad_request", "No.")

    @app.get("/sold-out")
    async def sold_out() -> None:
        raise OutOfStockError("A-1")

    @app.get("/broken")
    async def broken() -> None:
        raise RuntimeError("a bug")

    return app


@pytest.fixture
def seen_by_sidecar() -> list[httpx.Request]:
    return []


@pytest.fixture
def client(seen_by_sidecar: list[httpx.Request]) -> Iterator[TestClient]:
    with TestClient(build_app(seen_by_sidecar), raise_server_exceptions=False) as test_client:
        yield test_client


def listen() -> None:
    """Logging to the stdout of the test being run (which pytest swaps per test phase)."""
    configure_logging("INFO", "kit-test")


def log_lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]


@pytest.mark.parametrize("offered", ["a/b+c=", "0af7651916cd43dd8448eb211c80319c", "req-1:2.3_4@gw"])
@pytest.mark.parametrize("path", ["/items/A-1", "/refused", "/sold-out", "/broken", "/nowhere"])
def test_a_plain_request_id_is_kept_everywhere(
    client: TestClient, capsys: pytest.CaptureFixture[str], offered: str, path: str
) -> None:
    listen()
    response = client.get(path, headers={REQUEST_ID_HEADER: offered})

    assert response.headers[REQUEST_ID_HEADER] == offered
    if response.status_code >= 400:
        assert response.json()["error"]["request_id"] == offered
    lines = log_lines(capsys)
    assert lines, "nothing was logged"
    assert {line.get("request_id") for line in lines} == {offered}


@pytest.mark.parametrize("offered", ["x" * 129, "a\tb", "has space", "é-accented"])
def test_any_other_request_id_is_replaced_and_the_new_one_is_used_everywhere(
    client: TestClient, capsys: pytest.CaptureFixture[str], offered: str
) -> None:
    listen()
    response = client.get("/refused", headers={REQUEST_ID_HEADER: offered.encode()})

    minted = response.headers[REQUEST_ID_HEADER]
    assert minted != offered
    assert response.json()["error"]["request_id"] == minted
    assert {line.get("request_id") for line in log_lines(capsys) if line.get("logger") != "asgi_correlation_id"} == {
        minted
    }


def test_a_request_without_an_id_gets_one(client: TestClient) -> None:
    response = client.get("/refused")
    assert response.json()["error"]["request_id"] == response.headers[REQUEST_ID_HEADER]


def test_errors_share_one_shape(client: TestClient) -> None:
    assert client.get("/refused").json()["error"] | {"request_id": None} == {
        "code": "bad_request",
        "message": "No.",
        "details": [],
        "request_id": None,
    }
    sold_out = client.get("/sold-out")
    assert (sold_out.status_code, sold_out.json()["error"]["code"]) == (409, "out_of_stock")
    missing = client.get("/nowhere")
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "not_found")


def test_an_unhandled_exception_is_the_one_500(client: TestClient, capsys: pytest.CaptureFixture[str]) -> None:
    listen()
    response = client.get("/broken", headers={REQUEST_ID_HEADER: "r-500"})

    assert response.status_code == 500
    assert response.json() == {
        "error": {"code": "internal_error", "message": "Internal server error.", "details": [], "request_id": "r-500"}
    }
    [failure] = [line for line in log_lines(capsys) if line["event"] == "unhandled_error"]
    assert failure["level"] == "error"
    assert failure["exception"][0]["exc_value"] == "a bug"


def test_the_access_log_line(client: TestClient, capsys: pytest.CaptureFixture[str]) -> None:
    listen()
    client.get("/items/A-1", headers={REQUEST_ID_HEADER: "r-1", "traceparent": TRACEPARENT})

    [access] = [line for line in log_lines(capsys) if line["event"] == "request"]
    assert access | {"duration_ms": 0, "timestamp": ""} == {
        "event": "request",
        "method": "GET",
        "path": "/items/A-1",
        "route": "/items/{item_id}",
        "status": 200,
        "duration_ms": 0,
        "service": "kit-test",
        "request_id": "r-1",
        "trace_id": "0af7651916cd43dd8448eb211c80319c",
        "span_id": "b7ad6b7169203331",
        "level": "info",
        "logger": "sidecart_kit.service",
        "timestamp": "",
    }


def test_calls_to_the_sidecar_carry_the_trace_context_and_request_id(
    client: TestClient, seen_by_sidecar: list[httpx.Request]
) -> None:
    client.get("/items/A-1", headers={REQUEST_ID_HEADER: "r-2", "traceparent": TRACEPARENT})

    [call] = seen_by_sidecar
    assert call.headers["traceparent"] == TRACEPARENT
    assert call.headers[REQUEST_ID_HEADER] == "r-2"


@pytest.mark.parametrize("traceparent", ["nonsense", "00-" + "0" * 32 + "-b7ad6b7169203331-01", "00-é-x-01"])
def test_an_invalid_traceparent_is_ignored(
    client: TestClient, seen_by_sidecar: list[httpx.Request], traceparent: str
) -> None:
    response = client.get("/items/A-1", headers={"traceparent": traceparent.encode()})
    assert response.status_code == 200
    assert "traceparent" not in seen_by_sidecar[0].headers


def test_http_metrics_by_route_template(client: TestClient) -> None:
    client.get("/items/A-1")
    client.get("/items/B-2")
    client.get("/refused")

    metrics = client.get("/metrics").text
    assert 'http_requests_total{handler="/items/{item_id}",method="GET",status="200"} 2.0' in metrics
    assert 'http_requests_total{handler="/refused",method="GET",status="400"} 1.0' in metrics
    assert "http_request_duration_seconds_bucket" in metrics
    assert "process_resident_memory_bytes" in metrics
    assert "/metrics" not in metrics.split("http_requests_total", 1)[1]


def test_settings_read_what_the_dapr_cli_sets(monkeypatch: pytest.MonkeyPatch) -> None:
    class PaymentsSettings(ServiceSettings):
        model_config = SettingsConfigDict(env_prefix="PAYMENTS_")
        app_port: int = 8104

    monkeypatch.setenv("APP_PORT", "9104")
    monkeypatch.setenv("DAPR_HTTP_PORT", "3994")
    monkeypatch.setenv("DAPR_API_TOKEN", "s3cret")
    monkeypatch.setenv("PAYMENTS_DAPR_GRPC_PORT", "50994")
    monkeypatch.setenv("DAPR_GRPC_PORT", "1")  # the service's own variable wins
    settings = PaymentsSettings()
    assert (settings.app_port, settings.dapr_http_port, settings.dapr_grpc_port) == (9104, 3994, 50994)
    assert settings.dapr_api_token is not None
    assert settings.dapr_api_token.get_secret_value() == "s3cret"
    monkeypatch.delenv("APP_PORT")
    assert PaymentsSettings().app_port == 8104


def test_the_app_token_guard() -> None:
    app = FastAPI()
    install_plumbing(app, app_token=SecretStr("from-the-sidecar"))

    @app.get("/work")
    async def work() -> dict[str, str]:
        return {"done": "yes"}

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    with TestClient(app) as client:
        assert client.get("/work", headers={"dapr-api-token": "from-the-sidecar"}).status_code == 200
        for headers in ({}, {"dapr-api-token": "guess"}, {"dapr-api-token": ""}):
            refused = client.get("/work", headers=headers)
            assert refused.status_code == 401
            assert refused.json()["error"]["code"] == "unauthorized"
            assert refused.json()["error"]["request_id"] == refused.headers[REQUEST_ID_HEADER]
        assert client.get("/healthz").status_code == 200
        assert client.get("/metrics").status_code == 200


def test_from_app_state_reads_what_the_lifespan_put_there() -> None:
    app = FastAPI()
    install_plumbing(app)
    app.state.greeting = "hello"

    @app.get("/greet")
    async def greet(greeting: Annotated[str, Depends(from_app_state("greeting"))]) -> dict[str, str]:
        return {"greeting": greeting}

    with TestClient(app) as client:
        assert client.get("/greet").json() == {"greeting": "hello"}


def test_the_probe_routes() -> None:
    app = FastAPI()
    install_plumbing(app)
    app.include_router(probe_routes())
    app.state.sidecar_health = FakeSidecarHealth(ready=True)

    with TestClient(app) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        assert client.get("/readyz").json() == {"status": "ready"}
        app.state.sidecar_health.ready = False
        not_ready = client.get("/readyz")
        assert (not_ready.status_code, not_ready.json()["error"]["code"]) == (503, "not_ready")
        assert not_ready.headers["retry-after"] == "1"
        assert client.get("/healthz").status_code == 200


def test_a_service_app_composes_its_use_cases_once_the_sidecar_client_is_open() -> None:
    seen: list[httpx.Request] = []

    def sidecar(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(204)

    @asynccontextmanager
    async def compose(app: FastAPI, client: httpx.AsyncClient) -> AsyncIterator[None]:
        app.state.composed = True
        yield
        app.state.composed = False

    router = APIRouter()

    @router.get("/composed")
    async def composed(value: Annotated[bool, Depends(from_app_state("composed"))]) -> dict[str, bool]:
        return {"composed": value}

    settings = ServiceSettings(app_api_token=SecretStr("t0k3n"))
    app = service_app(
        Service("demo", "A demo.", routers=[router]),
        settings,
        compose,
        Fakes(sidecar_transport=httpx.MockTransport(sidecar)),
    )
    with TestClient(app) as client:
        assert client.get("/composed", headers={"dapr-api-token": "t0k3n"}).json() == {"composed": True}
        assert client.get("/composed").status_code == 401  # the app-token guard
        assert client.get("/readyz").json() == {"status": "ready"}
        assert "http_requests_total" in client.get("/metrics").text
        # No redirect to the path without its slash (Starlette would build it from the client's Host header).
        slashed = client.get("/composed/", headers={"dapr-api-token": "t0k3n", "host": "evil.example"})
        assert (slashed.status_code, slashed.json()["error"]["code"]) == (404, "not_found")
        assert "location" not in slashed.headers
    assert app.state.composed is False
    assert (app.title, app.summary) == ("Sidecart demo", "A demo.")
    assert [request.url.path for request in seen] == ["/v1.0/healthz/outbound"]  # the kit's sidecar health probe


def test_a_service_app_takes_the_sidecar_health_probe_it_is_given() -> None:
    @asynccontextmanager
    async def compose(app: FastAPI, client: httpx.AsyncClient) -> AsyncIterator[None]:
        yield

    health = FakeSidecarHealth(ready=False)
    app = service_app(Service("demo", "A demo.", routers=[]), ServiceSettings(), compose, Fakes(sidecar_health=health))
    with TestClient(app) as client:
        assert client.get("/readyz").status_code == 503
        health.ready = True
        assert client.get("/readyz").json() == {"status": "ready"}


class ParticipantDownError(StoreUnavailableError):
    pass


def test_every_service_answers_a_store_that_is_down_the_same_unless_its_table_says_otherwise() -> None:
    @asynccontextmanager
    async def compose(app: FastAPI, client: httpx.AsyncClient) -> AsyncIterator[None]:
        yield

    router = APIRouter()

    @router.get("/store")
    async def store() -> None:
        raise StoreUnavailableError("redis is down")

    @router.get("/participant")
    async def participant() -> None:
        raise ParticipantDownError("payments did not answer")

    plain = service_app(Service("demo", "A demo.", routers=[router]), ServiceSettings(), compose)
    own: DomainErrors = {
        ParticipantDownError: lambda exc: ApiError(502, "participant_down", "Payments did not answer.")
    }
    tailored = service_app(Service("demo", "A demo.", routers=[router], domain_errors=own), ServiceSettings(), compose)
    with TestClient(plain) as client:
        for path in ("/store", "/participant"):
            response = client.get(path)
            assert (response.status_code, response.headers["retry-after"]) == (503, "1")
            assert response.json()["error"]["code"] == "unavailable"
            assert response.json()["error"]["message"] == "The demo service cannot be read or changed right now; retry."
    with TestClient(tailored) as client:
        assert client.get("/store").json()["error"]["code"] == "unavailable"
        assert (client.get("/participant").status_code, client.get("/participant").json()["error"]["code"]) == (
            502,
            "participant_down",
        )


def test_serve_runs_the_app_built_from_the_settings_on_their_address(monkeypatch: pytest.MonkeyPatch) -> None:
    runs: list[tuple[Any, dict[str, Any]]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: runs.append((app, options)))
    built: list[ServiceSettings] = []

    def create_app(settings: ServiceSettings) -> FastAPI:
        built.append(settings)
        return FastAPI()

    settings = ServiceSettings(app_host="127.0.0.2", app_port=8123)
    serve(create_app, settings)

    [(factory, options)] = runs
    assert (options["host"], options["port"], options["factory"]) == ("127.0.0.2", 8123, True)
    assert built == []  # built by uvicorn, inside its event loop
    assert isinstance(factory(), FastAPI)
    assert built == [settings]
