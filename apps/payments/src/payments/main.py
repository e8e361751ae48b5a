"""Builds the payments app: clients open in the lifespan, nothing happens at import time."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from payments import api
from payments.adapters import DaprSidecarHealth, DaprStateStore, sidecar_client
from payments.errors import install_error_handlers
from payments.handlers import KeyLocks
from payments.observability import HttpMetrics, RequestContextMiddleware, configure_logging
from payments.settings import Settings, get_settings


def create_app(settings: Settings | None = None) -> FastAPI:
    """The payments app, configured from `settings` (the environment by default)."""
    settings = settings or get_settings()
    configure_logging(settings.log_level)
    metrics = HttpMetrics(CollectorRegistry())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with sidecar_client(settings) as client:
            app.state.store = DaprStateStore(
                client,
                settings.state_store_name,
                max_concurrent_calls=settings.sidecar_max_concurrent_calls,
                queue_timeout=settings.state_timeout_seconds,
            )
            app.state.sidecar_health = DaprSidecarHealth(client, settings.health_timeout_seconds)
            yield

    app = FastAPI(
        title="Sidecart payments",
        summary="Wallets, charges and refunds for the order saga, never a negative balance.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.locks = KeyLocks()
    app.include_router(api.router)
    install_error_handlers(app)
    api.install_domain_error_handlers(app)
    app.add_middleware(RequestContextMiddleware, metrics=metrics)
    return app
