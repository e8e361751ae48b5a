"""The orders app: create_app() wires settings, sidecar clients, the workflow worker and routes; nothing runs
at import.
"""

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any
from weakref import WeakKeyDictionary

import httpx
from fastapi import FastAPI

from orders import api
from orders.adapters import (
    DaprInventory,
    DaprOrderRepository,
    DaprPayments,
    DaprWorkflows,
    SagaMetrics,
    WorkflowSidecarHealth,
)
from orders.handlers import Orders, SagaObserver, SagaSteps, StartTiming
from orders.settings import Settings, get_settings
from orders.workflow import WORKFLOW_NAME, Runtime, StepsFactory, WorkflowWorker, build_runtime
from sidecart_kit.locks import KeyedLocks
from sidecart_kit.logs import configure_logging, get_logger
from sidecart_kit.service import install_plumbing, probe_routes
from sidecart_kit.sidecar import create_sidecar_client

log = get_logger(__name__)

RuntimeFactory = Callable[[Settings, StepsFactory], Runtime]

# The workflow SDK logs each registration and (re)connection at info, and every work item at debug.
_WORKFLOW_SDK_LOGGERS = ("WorkflowRuntime", "DaprWorkflowContext", "durabletask-worker", "durabletask-client")


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
            client = clients[loop] = create_sidecar_client(settings)
            # Activities call inventory and payments, whose answers may take as long as Dapr's invoke timeout.
            client.timeout = httpx.Timeout(
                settings.invoke_timeout_seconds, connect=settings.sidecar_connect_timeout_seconds
            )
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
    """The composition root: everything the routes use is built here, once, and kept on app.state."""
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
        probe = WorkflowSidecarHealth(client, settings.health_timeout_seconds)
        app.state.sidecar_health = probe
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


def create_app(
    settings: Settings | None = None,
    *,
    sidecar_transport: httpx.AsyncBaseTransport | None = None,
    runtime_factory: RuntimeFactory | None = None,
) -> FastAPI:
    """The app; tests pass a fake sidecar (`sidecar_transport`) and a fake workflow runtime."""
    settings = settings or get_settings()
    configure_logging(settings.log_level, "orders")
    for name in _WORKFLOW_SDK_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
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
    registry = install_plumbing(app, app_token=settings.app_api_token, domain_errors=api.DOMAIN_ERRORS)
    app.state.saga_metrics = SagaMetrics(registry)
    app.include_router(probe_routes(readiness=None))
    app.include_router(api.open_router)
    app.include_router(api.router)
    return app
