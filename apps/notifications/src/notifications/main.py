"""Builds the notifications app, the one place its use cases and adapters are put together: clients open in the
lifespan, nothing happens at import time."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI

from notifications import api
from notifications.adapters import StoredInboxRepository
from notifications.handlers import Limits, Notifications
from notifications.settings import Settings
from sidecart_kit.events import EventDeliveries, delivery_counter
from sidecart_kit.retry import RetryPolicy
from sidecart_kit.service import service_app
from sidecart_kit.sidecar import ReadinessProbe
from sidecart_kit.state import StateStore


def create_app(settings: Settings, *, store: StateStore | None = None, health: ReadinessProbe | None = None) -> FastAPI:
    """The notifications app, configured from `settings`. Tests pass fakes of the sidecar's state store and health
    probe."""

    @asynccontextmanager
    async def compose(app: FastAPI, client: httpx.AsyncClient) -> AsyncIterator[None]:
        repository = StoredInboxRepository(store or settings.dapr_state_store(client))
        app.state.notifications = Notifications(
            repository,
            limits=Limits(settings.max_notices_per_user, settings.max_remembered_events_per_user),
            retry=RetryPolicy(settings.save_attempts, settings.save_backoff_seconds, settings.save_backoff_max_seconds),
        )
        yield

    app = service_app(api.SERVICE, settings, compose, sidecar_health=health)
    app.state.deliveries = EventDeliveries(delivery_counter(api.SERVICE.name, app.state.metrics_registry))
    return app
