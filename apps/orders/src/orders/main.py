"""The orders app: create_app() wires settings, sidecar clients, the workflow worker and routes; nothing runs
at import.
"""

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
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
from orders.settings import Settings
from orders.workflow import WORKFLOW_NAME, Runtime, StepsFactory, WorkflowWorker, build_runtime
from sidecart_kit.locks import KeyedLocks
from sidecart_kit.logs import get_logger
from sidecart_kit.service import NO_FAKES, Fakes, service_app
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


def create_app(
    settings: Settings, fakes: Fakes = NO_FAKES, *, runtime_factory: RuntimeFactory | None = None
) -> FastAPI:
    """The orders app, configured from `settings`; tests pass fakes, and a workflow runtime of their own."""
    make_runtime: RuntimeFactory = runtime_factory or build_runtime

    @asynccontextmanager
    async def compose(app: FastAPI, client: httpx.AsyncClient) -> AsyncIterator[None]:
        """The composition root: everything the routes use is built here, once, and kept on app.state; the workflow
        worker runs until the app stops."""
        app.state.orders = Orders(
            DaprOrderRepository(client, settings.state_store),
            DaprInventory(client, settings.inventory_app_id),
            DaprWorkflows(client, WORKFLOW_NAME, settings.workflow_component),
            index_limit=settings.index_limit,
            timing=StartTiming(
                grace=timedelta(seconds=settings.start_grace_seconds),
                wait=timedelta(seconds=settings.start_wait_seconds),
            ),
            on_placed=saga_metrics.order_placed,
        )
        probe = WorkflowSidecarHealth(client, settings.health_timeout_seconds)
        app.state.sidecar_health = probe  # the kit's probe, and the workflow engine's status for the orders' /readyz
        open_steps = saga_steps_factory(settings, saga_metrics)
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

    app = service_app(api.SERVICE, settings, compose, fakes)
    for name in _WORKFLOW_SDK_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    saga_metrics = SagaMetrics(app.state.metrics_registry)
    return app
