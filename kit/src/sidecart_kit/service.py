"""What makes a FastAPI app a Sidecart service: request ids, trace context, the access log, the one 500, HTTP
metrics at /metrics, the error shape; and `serve`, the one way a service's `__main__` runs it."""

import hmac
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from functools import partial
from time import perf_counter
from typing import Annotated, Any, TypeVar

import httpx
import uvicorn
from asgi_correlation_id import CorrelationIdMiddleware
from fastapi import APIRouter, Depends, FastAPI, Request
from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector, start_http_server
from prometheus_fastapi_instrumentator import Instrumentator, metrics
from pydantic import SecretStr
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sidecart_kit.errors import (
    INTERNAL_ERROR_MESSAGE,
    ApiError,
    DomainErrors,
    error_response,
    install_error_handlers,
    unavailable,
)
from sidecart_kit.logs import configure_logging, get_logger
from sidecart_kit.requests import REQUEST_ID_HEADER, TraceContextMiddleware, is_acceptable_request_id
from sidecart_kit.sidecar import ReadinessProbe, ServiceSettings, SidecarHealth, create_sidecar_client
from sidecart_kit.state import StateStore, StateStoreSettings, StoreUnavailableError
from sidecart_kit.tracing import configure_tracing, fastapi_telemetry, tag_request_span

log = get_logger(__name__)
SettingsT = TypeVar("SettingsT", bound=ServiceSettings)

# Polled every few seconds by the sidecar and by Prometheus: logged at debug, not info, and open without the app
# token (as Dapr's own health probes are).
QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


def _route_template(scope: Scope) -> str:
    # The template, never the raw path: ids in paths would make a time series (and a log value) per user.
    path = getattr(scope.get("route"), "path", None)
    return path if isinstance(path, str) else "unmatched"


class AccessLogMiddleware:
    """One log line per request (method, path, route, status, duration_ms), and the one 500: an exception nothing
    handled is logged with its traceback and answered `internal_error` in the error shape, with the request id."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        response_started = False

        async def send_with_status(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started, status = True, message["status"]
            await send(message)

        started = perf_counter()
        tag_request_span()  # now: the span ends as the response's last byte leaves, before this middleware returns
        try:
            await self.app(scope, receive, send_with_status)
        except Exception:
            log.exception("unhandled_error", method=scope["method"], path=scope["path"])
            if response_started:
                raise
            response = error_response(500, "internal_error", INTERNAL_ERROR_MESSAGE)
            await response(scope, receive, send_with_status)
        finally:
            path = scope["path"]
            log.log(
                logging.DEBUG if path in QUIET_PATHS else logging.INFO,
                "request",
                method=scope["method"],
                path=path,
                route=_route_template(scope),
                status=status,
                duration_ms=round((perf_counter() - started) * 1000, 2),
            )


class AppTokenMiddleware:
    """The app answers only its sidecar: every call but the probes and /metrics must carry the app token (which the
    sidecar sends as `dapr-api-token` when started with APP_API_TOKEN); any other is refused with 401."""

    def __init__(self, app: ASGIApp, token: SecretStr) -> None:
        self.app = app
        self._token = token.get_secret_value().encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in QUIET_PATHS:
            await self.app(scope, receive, send)
            return
        offered = next((value for name, value in scope["headers"] if name == b"dapr-api-token"), b"")
        if hmac.compare_digest(offered, self._token):
            await self.app(scope, receive, send)
            return
        response = error_response(401, "unauthorized", "This app answers its Dapr sidecar only.")
        await response(scope, receive, send)


def from_app_state(name: str) -> Callable[[Request], Awaitable[Any]]:
    """A dependency that reads what the service's lifespan put on app.state: `Depends(from_app_state("orders"))`."""

    async def read(request: Request) -> Any:
        return getattr(request.app.state, name)

    return read


async def read_limited_body(request: Request, limit: int) -> bytes:
    """The request's body, refused with 413 as soon as it is known to exceed `limit` bytes (by its declared length,
    or while it streams in): a client cannot make the app buffer more than that."""
    too_large = ApiError(413, "payload_too_large", f"The request body exceeds {limit} bytes.")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def probe_routes(readiness: str | None = "sidecar_health") -> APIRouter:
    """GET /healthz (the process answers) and, unless `readiness` is None (a service with a readiness of its own),
    GET /readyz: the ReadinessProbe the lifespan put on app.state under `readiness` says ready (its sidecar is up
    and its components loaded). The same in every service."""
    router = APIRouter(tags=["health"])

    @router.get("/healthz")
    async def healthz() -> dict[str, str]:
        """Liveness: the process answers (never depends on other apps)."""
        return {"status": "ok"}

    if readiness is None:
        return router
    probe_dep = Annotated[ReadinessProbe, Depends(from_app_state(readiness))]

    @router.get("/readyz", responses={503: {"description": "The sidecar is not ready"}})
    async def readyz(probe: probe_dep) -> dict[str, str]:
        """Readiness: the app's sidecar is up and its components are ready."""
        if not await probe.is_ready():
            raise ApiError(503, "not_ready", "The Dapr sidecar is not ready.", headers={"retry-after": "1"})
        return {"status": "ready"}

    return router


def install_plumbing(
    app: FastAPI,
    *,
    app_token: SecretStr | None = None,
    domain_errors: DomainErrors | None = None,
    registry: CollectorRegistry | None = None,
    expose_metrics: bool = True,
) -> CollectorRegistry:
    """Adds request ids, trace context, the access log and the one 500, the error shape, the app-token guard (when
    `app_token` is given: every app behind a sidecar passes its settings' app_api_token), and the HTTP RED metrics
    (http_requests_total, http_request_duration_seconds by method, route template and status) beside process
    metrics at /metrics (unless `expose_metrics` is False: the caller serves the registry elsewhere). Returns the
    registry, for the service's own business metrics."""
    registry = registry or CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    install_error_handlers(app, domain_errors)
    instrumentator = Instrumentator(
        should_group_status_codes=False,
        excluded_handlers=["^/metrics$"],
        registry=registry,
    )
    instrumentator.add(metrics.requests(registry=registry), metrics.latency(registry=registry))
    instrumentator.instrument(app)
    if expose_metrics:
        instrumentator.expose(app, endpoint="/metrics", include_in_schema=False)
    # Added last = outermost: the request id is set before anything logs, the trace context before the access log.
    if app_token is not None:
        app.add_middleware(AppTokenMiddleware, token=app_token)
    app.add_middleware(AccessLogMiddleware)
    app.add_middleware(TraceContextMiddleware, untraced_paths=QUIET_PATHS)
    app.add_middleware(CorrelationIdMiddleware, header_name=REQUEST_ID_HEADER, validator=is_acceptable_request_id)
    return registry


# What a service builds once its sidecar client is open: its use cases and adapters, put on app.state; it may hold
# background work until the app stops.
Compose = Callable[[FastAPI, httpx.AsyncClient], AbstractAsyncContextManager[None]]


@dataclass(frozen=True)
class Service:
    """What a service says about itself, apart from its settings and its composition root: its name (in its logs and
    its title), a one-line summary, its routes and its table of domain errors. A store or a peer that is down for now
    (StoreUnavailableError and its kinds) is answered the same by every service, 503 `unavailable` with Retry-After
    (`store_unavailable_answer`), unless the table names it.

    `public`: the public edge (the gateway), called by clients rather than by its sidecar. `readiness`: where on
    app.state /readyz finds its ReadinessProbe; None for a service that serves a /readyz of its own."""

    name: str
    summary: str
    routers: Sequence[APIRouter]
    domain_errors: DomainErrors | None = None
    public: bool = False
    readiness: str | None = "sidecar_health"


@dataclass(frozen=True)
class Fakes:
    """What a test puts in place of the sidecar: all of its API (`sidecar_transport`, an httpx transport), or the parts
    an app's adapters use (`store`, `sidecar_health`). Every service's create_app takes one; production passes none."""

    sidecar_transport: httpx.AsyncBaseTransport | None = None
    store: StateStore | None = None
    sidecar_health: ReadinessProbe | None = None

    def state_store(self, settings: StateStoreSettings, client: httpx.AsyncClient) -> StateStore:
        """The fake store, or the state store `settings` name, through the sidecar `client`."""
        return self.store or settings.dapr_state_store(client)


NO_FAKES = Fakes()


def store_unavailable_answer(service_name: str) -> Callable[[Exception], ApiError]:
    """The one answer to a store or a peer that is down for now: 503, `unavailable`, retry in a second."""
    return unavailable(f"The {service_name} service cannot be read or changed right now; retry.", retry_after_seconds=1)


def service_app(
    service: Service,
    settings: ServiceSettings,
    compose: Compose,
    fakes: Fakes = NO_FAKES,
) -> FastAPI:
    """`service`'s FastAPI app, the same way for every service: JSON logs named after it, the plumbing (the app-token
    guard unless the app is public), the probe routes, its routers, and a lifespan that opens one sidecar client, puts
    the sidecar's health probe on app.state.sidecar_health and runs `compose` (the
    service's composition root) with the client. The metrics registry is on app.state.metrics_registry for the
    service's business metrics; app.state.settings holds `settings`.

    A public app keeps what only operators need off its public port: no /docs, /redoc or /openapi.json, and its
    /metrics on a port of its own (settings.metrics_port, on app_host), started and stopped with the app."""
    configure_logging(settings.log_level, service.name)
    configure_tracing(service.name, settings.trace_endpoint)
    public = service.public

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with (
            create_sidecar_client(settings, fakes.sidecar_transport) as client,
            _metrics_server(app, settings, public),
        ):
            app.state.sidecar_health = fakes.sidecar_health or SidecarHealth(client, settings.health_timeout_seconds)
            async with compose(app, client):
                yield

    app = FastAPI(
        title=f"Sidecart {service.name}",
        summary=service.summary,
        version="0.1.0",
        lifespan=lifespan,
        # No redirect from /path/ to /path: Starlette builds its Location from the client's Host header, so any
        # client could make the API redirect to a host of its choosing. A path that is not a route is a 404.
        redirect_slashes=False,
        docs_url=None if public else "/docs",
        redoc_url=None if public else "/redoc",
        openapi_url=None if public else "/openapi.json",
        telemetry=fastapi_telemetry(QUIET_PATHS),
    )
    app.state.settings = settings
    app.state.metrics_registry = install_plumbing(
        app,
        app_token=None if public else settings.app_api_token,
        domain_errors={StoreUnavailableError: store_unavailable_answer(service.name), **(service.domain_errors or {})},
        expose_metrics=not public,
    )
    app.include_router(probe_routes(service.readiness))
    for router in service.routers:
        app.include_router(router)
    return app


@asynccontextmanager
async def _metrics_server(app: FastAPI, settings: ServiceSettings, public: bool) -> AsyncIterator[None]:
    """A public app's /metrics, on settings.metrics_port (prometheus_client's own small server, on a thread)."""
    if not public or settings.metrics_port is None:
        yield
        return
    server, thread = start_http_server(
        settings.metrics_port, addr=settings.app_host, registry=app.state.metrics_registry
    )
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def serve(create_app: Callable[[SettingsT], FastAPI], settings: SettingsT) -> None:
    """Runs the app `create_app` builds from `settings` with uvicorn on their host and port, on the compiled HTTP
    parser and event loop (httptools, uvloop: half the server CPU per request of h11 and asyncio, `make
    bench-kit`)."""
    uvicorn.run(
        partial(create_app, settings),
        factory=True,  # built by uvicorn, inside its event loop
        host=settings.app_host,
        port=settings.app_port,
        loop="uvloop",
        http="httptools",
        proxy_headers=False,  # nothing in front of an app is trusted to say who the client is
        log_config=None,  # every log line goes through the kit's JSON logging
        access_log=False,  # the kit's access log writes one line per request, with its request id
        server_header=False,
    )
