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
from sidecart_kit.service import NO_FAKES, Fakes, service_app


def create_app(settings: Settings, fakes: Fakes = NO_FAKES) -> FastAPI:
    """The notifications app, configured from `settings`; tests pass fakes."""

    @asynccontextmanager
    async def compose(app: FastAPI, client: httpx.AsyncClient) -> AsyncIterator[None]:
        repository = StoredInboxRepository(fakes.state_store(settings, client))
        app.state.notifications = Notifications(
            repository,
            limits=Limits(settings.max_notices_per_user, settings.max_remembered_events_per_user),
            retry=settings.update_retry(),
        )
        yield

    app = service_app(api.SERVICE, settings, compose, fakes)
    app.state.deliveries = EventDeliveries(delivery_counter(api.SERVICE.name, app.state.metrics_registry))
    return app
