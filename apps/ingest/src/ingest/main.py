"""Ingest's composition root: the kit's plumbing, and the use case built once in the lifespan."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI
from prometheus_client import Counter, Histogram

from ingest import api
from ingest.adapters import DaprBulkPublisher
from ingest.handlers import Ingest
from ingest.settings import Settings, get_settings
from sidecart_kit.logs import configure_logging
from sidecart_kit.service import install_plumbing, probe_routes
from sidecart_kit.sidecar import SidecarHealth, create_sidecar_client


def create_app(
    settings: Settings | None = None, *, sidecar_transport: httpx.AsyncBaseTransport | None = None
) -> FastAPI:
    """The ingest app, configured from `settings` (the environment by default); tests pass a fake sidecar."""
    settings = settings or get_settings()
    configure_logging(settings.log_level, "ingest")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with create_sidecar_client(settings, sidecar_transport) as client:
            publisher = DaprBulkPublisher(
                client,
                pubsub_name=settings.pubsub_name,
                topic=settings.telemetry_topic,
                source=settings.event_source,
                on_publish=lambda outcome, seconds: publish_latency.labels(outcome).observe(seconds),
            )
            app.state.ingest = Ingest(
                publisher,
                max_events=settings.max_events_per_batch,
                on_events=lambda outcome, count: events.labels(outcome).inc(count),
            )
            app.state.sidecar_health = SidecarHealth(client, settings.health_timeout_seconds)
            yield

    app = FastAPI(
        title="Sidecart ingest",
        summary="Validates telemetry batches event by event and bulk-publishes the valid ones.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.settings = settings
    registry = install_plumbing(app, app_token=settings.app_api_token, domain_errors=api.domain_errors(settings))
    events = Counter(
        "ingest_events_total",
        "Telemetry events received, by outcome (accepted: published; rejected: invalid; failed: not published).",
        ["outcome"],
        registry=registry,
    )
    publish_latency = Histogram(
        "ingest_bulk_publish_duration_seconds",
        "Time the sidecar took to bulk-publish one batch, by outcome.",
        ["outcome"],
        registry=registry,
    )
    app.include_router(api.router)
    app.include_router(probe_routes())
    return app
