"""Ingest's composition root: the kit's service app, and the use case built once in its lifespan."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI
from prometheus_client import Counter, Histogram

from ingest import api
from ingest.adapters import DaprBulkPublisher
from ingest.handlers import Ingest
from ingest.settings import Settings
from sidecart_kit.service import NO_FAKES, Fakes, Service, service_app


def create_app(settings: Settings, fakes: Fakes = NO_FAKES) -> FastAPI:
    """The ingest app, configured from `settings`; tests pass fakes."""

    @asynccontextmanager
    async def compose(app: FastAPI, client: httpx.AsyncClient) -> AsyncIterator[None]:
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
        yield

    # Described here rather than once at import: a failed publish's Retry-After, in the error table, is a setting.
    ingest = Service(
        "ingest",
        "Validates telemetry batches event by event and bulk-publishes the valid ones.",
        routers=[api.router],
        domain_errors=api.domain_errors(settings),
    )
    app = service_app(ingest, settings, compose, fakes)
    registry = app.state.metrics_registry
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
    return app
