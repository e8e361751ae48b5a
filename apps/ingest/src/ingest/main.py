"""Builds the ingest app: clients open in the lifespan, nothing happens at import time."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from ingest import api
from ingest.adapters import DaprBulkPublisher, DaprSidecarHealth, sidecar_client
from ingest.errors import install_error_handlers
from ingest.observability import HttpMetrics, RequestContextMiddleware, configure_logging
from ingest.settings import Settings, get_settings


def create_app(settings: Settings | None = None) -> FastAPI:
    """The ingest app, configured from `settings` (the environment by default)."""
    settings = settings or get_settings()
    configure_logging(settings.log_level)
    metrics = HttpMetrics(CollectorRegistry())

    def on_publish(outcome: str, seconds: float) -> None:
        metrics.bulk_publish_latency.labels(outcome).observe(seconds)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with sidecar_client(settings) as client:
            app.state.publisher = DaprBulkPublisher(
                client,
                pubsub_name=settings.pubsub_name,
                topic=settings.telemetry_topic,
                source=settings.event_source,
                on_publish=on_publish,
            )
            app.state.sidecar_health = DaprSidecarHealth(client, settings.health_timeout_seconds)
            yield

    app = FastAPI(
        title="Sidecart ingest",
        summary="Validates telemetry batches event by event and bulk-publishes the valid ones.",
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
