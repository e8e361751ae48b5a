"""Builds the payments app, its one composition root: clients and use cases open in the lifespan, nothing happens
at import time."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI

from payments import api
from payments.handlers import Payments
from payments.settings import Settings
from sidecart_kit.events import EventDeliveries, delivery_counter
from sidecart_kit.metrics import OperationCounter
from sidecart_kit.service import NO_FAKES, Fakes, service_app


def create_app(settings: Settings, fakes: Fakes = NO_FAKES) -> FastAPI:
    """The payments app, configured from `settings`; tests pass fakes."""

    @asynccontextmanager
    async def compose(app: FastAPI, client: httpx.AsyncClient) -> AsyncIterator[None]:
        app.state.payments = Payments(
            fakes.state_store(settings, client),
            currency=settings.currency,
            starting_credit_cents=settings.starting_credit_cents,
            max_entries=settings.max_wallet_entries,
            retry=settings.update_retry(),
        )
        yield

    app = service_app(api.SERVICE, settings, compose, fakes)
    registry = app.state.metrics_registry
    app.state.operations = OperationCounter(
        api.SERVICE.name, registry, "Charges and refunds answered, by operation and outcome.", api.DOMAIN_ERRORS
    )
    app.state.deliveries = EventDeliveries(delivery_counter(api.SERVICE.name, registry))
    return app
