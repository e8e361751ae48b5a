"""Builds the notifications app, the one place its use cases and adapters are put together: clients open in the
lifespan, nothing happens at import time."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from prometheus_client import Counter

from notifications import api
from notifications.adapters import StoredInboxRepository
from notifications.handlers import Deliveries, Limits, Notifications
from notifications.settings import Settings, get_settings
from sidecart_kit.logs import configure_logging
from sidecart_kit.retry import RetryPolicy
from sidecart_kit.service import install_plumbing, probe_routes
from sidecart_kit.sidecar import ReadinessProbe, SidecarHealth, create_sidecar_client
from sidecart_kit.state import DaprStateStore, StateStore


def create_app(
    settings: Settings | None = None, *, store: StateStore | None = None, health: ReadinessProbe | None = None
) -> FastAPI:
    """The notifications app, configured from `settings` (the environment by default). Tests pass fakes of the
    sidecar's state store and health probe."""
    settings = settings or get_settings()
    configure_logging(settings.log_level, "notifications")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with create_sidecar_client(settings) as client:
            repository = StoredInboxRepository(store or DaprStateStore(client, settings.state_store))
            notifications = Notifications(
                repository,
                limits=Limits(settings.max_notices_per_user, settings.max_remembered_events_per_user),
                retry=RetryPolicy(
                    settings.save_attempts, settings.save_backoff_seconds, settings.save_backoff_max_seconds
                ),
            )
            app.state.notifications = notifications
            app.state.deliveries = Deliveries(notifications, events)
            app.state.sidecar_health = health or SidecarHealth(client, settings.health_timeout_seconds)
            yield

    app = FastAPI(
        title="Sidecart notifications",
        summary="Reacts to events once each and keeps each user's notices.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.settings = settings
    registry = install_plumbing(app, app_token=settings.app_api_token, domain_errors=api.DOMAIN_ERRORS)
    events = Counter(
        "notifications_events_total",
        "Events delivered by the sidecar, by how they ended.",
        ["route", "outcome"],
        registry=registry,
    )
    app.include_router(api.router)
    app.include_router(probe_routes())
    return app
