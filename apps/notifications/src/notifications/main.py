"""Builds the notifications app: clients open in the lifespan, nothing happens at import time."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from notifications import api
from notifications.adapters import DaprInboxRepository, DaprSidecarHealth, sidecar_client
from notifications.errors import install_error_handlers
from notifications.observability import HttpMetrics, RequestContextMiddleware, configure_logging
from notifications.settings import Settings, get_settings


def create_app(settings: Settings | None = None) -> FastAPI:
    """The notifications app, configured from `settings` (the environment by default)."""
    settings = settings or get_settings()
    configure_logging(settings.log_level)
    metrics = HttpMetrics(CollectorRegistry())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with sidecar_client(settings) as client:
            app.state.repository = DaprInboxRepository(client, settings.state_store_name)
            app.state.sidecar_health = DaprSidecarHealth(client, settings.health_timeout_seconds)
            yield

    app = FastAPI(
        title="Sidecart notifications",
        summary="Reacts to events once each and keeps each user's notices.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.include_router(api.router)
    install_error_handlers(app)
    api.install_domain_error_handlers(app)
    app.add_middleware(RequestContextMiddleware, metrics=metrics)
    return app
