"""Builds the analytics app: clients open in the lifespan, nothing happens at import time."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from analytics import api
from analytics.adapters import DaprPublisher, DaprSidecarHealth, DaprStateStore, sidecar_client
from analytics.errors import install_error_handlers
from analytics.handlers import Analytics, RetryPolicy
from analytics.observability import HttpMetrics, RequestContextMiddleware, configure_logging
from analytics.settings import Settings, get_settings


def create_app(settings: Settings | None = None) -> FastAPI:
    """The analytics app, configured from `settings` (the environment by default)."""
    settings = settings or get_settings()
    configure_logging(settings.log_level)
    metrics = HttpMetrics(CollectorRegistry())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with sidecar_client(settings) as client:
            store = DaprStateStore(
                client,
                settings.state_store_name,
                chunk=settings.bulk_get_chunk,
                parallelism=settings.bulk_get_parallelism,
            )
            # One Analytics per process: its per-key locks must be shared by every delivery.
            app.state.analytics = Analytics(
                store,
                retention=timedelta(hours=settings.retention_hours),
                retry=RetryPolicy(
                    settings.save_attempts, settings.save_backoff_seconds, settings.save_backoff_max_seconds
                ),
                max_dead_letters=settings.max_dead_letters,
            )
            app.state.publisher = DaprPublisher(client, settings.pubsub_name)
            app.state.sidecar_health = DaprSidecarHealth(client, settings.health_timeout_seconds)
            yield

    app = FastAPI(
        title="Sidecart analytics",
        summary="CQRS read models folded exactly once from telemetry, order and user events.",
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
