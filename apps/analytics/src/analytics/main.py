"""Builds the analytics app, the one place its use cases and adapters are put together: clients open in the
lifespan, nothing happens at import time."""

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import httpx
from fastapi import FastAPI
from prometheus_client import Histogram

from analytics import api
from analytics.adapters import DaprPublisher
from analytics.handlers import Analytics, Deliveries, MessagePublisher
from analytics.settings import Settings
from sidecart_kit.events import EventDeliveries, delivery_counter
from sidecart_kit.service import NO_FAKES, Fakes, service_app


def create_app(settings: Settings, fakes: Fakes = NO_FAKES, *, publisher: MessagePublisher | None = None) -> FastAPI:
    """The analytics app, configured from `settings`; tests pass fakes, and one of the sidecar's pub/sub."""

    @asynccontextmanager
    async def compose(app: FastAPI, client: httpx.AsyncClient) -> AsyncIterator[None]:
        # One Analytics per process: its per-key locks must be shared by every delivery.
        analytics = Analytics(
            fakes.state_store(settings, client),
            retention=timedelta(hours=settings.retention_hours),
            retry=settings.update_retry(),
            max_dead_letters=settings.max_dead_letters,
            report_max_age=timedelta(seconds=settings.report_max_age_seconds),
            on_counted=observe_lag,
        )
        app.state.analytics = analytics
        app.state.deliveries = Deliveries(
            analytics,
            publisher or DaprPublisher(client, settings.pubsub_name),
            events,
            dead_letter_topic=settings.dead_letter_topic,
            telemetry_dead_letter_topic=settings.telemetry_dead_letter_topic,
            malformed_entry_action=settings.malformed_entry_action,
        )
        yield

    app = service_app(api.SERVICE, settings, compose, fakes)
    lag = Histogram(
        "analytics_lag_seconds",
        "Time from an event's own time to its being counted in the read models.",
        buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 3600),
        registry=app.state.metrics_registry,
    )

    def observe_lag(times: Sequence[datetime]) -> None:
        now = datetime.now(UTC)
        for at in times:
            lag.observe(max(0.0, (now - at).total_seconds()))

    events = EventDeliveries(
        delivery_counter(
            api.SERVICE.name,
            app.state.metrics_registry,
            "Events delivered, by route and outcome (counted, duplicate, expired, dead_lettered, retry, ignored).",
        )
    )
    return app
