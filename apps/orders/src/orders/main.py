"""The orders app: create_app() wires settings, sidecar clients, the workflow worker and routes; nothing runs
at import.
"""

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any
from weakref import WeakKeyDictionary

import httpx
import structlog
from fastapi import FastAPI
from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector, make_asgi_app
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from orders import api
from orders.adapters import (
    DaprInventory,
    DaprOrderRepository,
    DaprPayments,
    DaprSidecarProbe,
    DaprWorkflows,
    create_sidecar_client,
)
from orders.errors import install_error_handlers
from orders.handlers import KeyedLocks, Orders, SagaObserver, SagaSteps, StartTiming
from orders.observability import HttpMetrics, RequestContextMiddleware, SagaMetrics
from orders.settings import Settings, get_settings
from orders.workflow import WORKFLOW_NAME, Runtime, StepsFactory, WorkflowWorker, build_runtime

log = structlog.get_logger(__name__)

RuntimeFactory = Callable[[Settings, StepsFactory], Runtime]


def saga_steps_factory(settings: Settings, observer: SagaObserver | None) -> StepsFactory:
    """Opens the ports of one activity run. Activities run on the workflow worker's own event loop (another
    thread), and an httpx client belongs to one loop: each worker loop gets its own pooled sidecar client,
    made once (making one costs ~20 ms of CPU) and dropped with its loop.
    """
    locks = KeyedLocks()
    clients: WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = WeakKeyDictionary()

    @asynccontextmanager
    async def open_steps() -> AsyncIterator[SagaSteps]:
        loop = asyncio.get_running_loop()
        client = clients.get(loop)
        if client is None:
            client = clients[loop] = create_sidecar_client(settings, timeout=settings.invoke_timeout_seconds)
        yield SagaSteps(
            DaprOrderRepository(client, settings.state_store),
            DaprInventory(client, settings.inventory_app_id),
            DaprPayments(client, settings.payments_app_id),
            locks=locks,
            observer=observer,
        )

    return open_steps


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    async with create_sidecar_client(settings, app.state.sidecar_transport) as client:
        app.state.orders = Orders(
            DaprOrderRepository(client, settings.state_store),
            DaprInventory(client, settings.inventory_app_id),
            DaprWorkflows(client, WORKFLOW_NAME, settings.workflow_component),
            index_limit=settings.index_limit,
            timing=StartTiming(
                grace=timedelta(seconds=settings.start_grace_seconds),
                wait=timedelta(seconds=settings.start_wait_seconds),
            ),
        )
        probe = DaprSidecarProbe(client, settings.health_timeout_seconds)
        app.state.sidecar_probe = probe
        open_steps = saga_steps_factory(settings, app.state.saga_metrics)
        make_runtime: RuntimeFactory = app.state.runtime_factory
        worker = WorkflowWorker(
            lambda: make_runtime(settings, open_steps),
            probe,
            check_interval_seconds=settings.workflow_check_interval_seconds,
            reconnect_after_seconds=settings.workflow_reconnect_after_seconds,
        )
        app.state.workflow_worker = worker
        worker.start()
        log.info("orders_started", state_store=settings.state_store)
        try:
            yield
        finally:
            await worker.stop()


class _Endpoint:
    """Serves an ASGI app at one exact path (a Mount would redirect /metrics to /metrics/)."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._app(scope, receive, send)


def create_app(
    settings: Settings | None = None,
    *,
    sidecar_transport: httpx.AsyncBaseTransport | None = None,
    runtime_factory: RuntimeFactory | None = None,
) -> FastAPI:
    """The app; tests pass a fake sidecar (`sidecar_transport`) and a fake workflow runtime."""
    settings = settings or get_settings()
    app = FastAPI(
        title="Sidecart orders",
        description="Accepts orders and runs each one's saga (reserve, charge, confirm) as a Dapr Workflow.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.sidecar_transport = sidecar_transport
    factory: Any = runtime_factory or build_runtime
    app.state.runtime_factory = factory
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    app.state.saga_metrics = SagaMetrics(registry)
    app.add_middleware(RequestContextMiddleware, metrics=HttpMetrics(registry))
    install_error_handlers(app)
    api.install_domain_error_handlers(app)
    app.include_router(api.open_router)
    app.include_router(api.router)
    app.router.routes.append(Route("/metrics", _Endpoint(make_asgi_app(registry)), include_in_schema=False))
    return app
