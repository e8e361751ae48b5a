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
from sidecart_kit.retry import RetryPolicy
from sidecart_kit.service import service_app
from sidecart_kit.sidecar import ReadinessProbe
from sidecart_kit.state import StateStore


def create_app(
    settings: Settings,
    *,
    store: StateStore | None = None,
    sidecar_health: ReadinessProbe | None = None,
) -> FastAPI:
    """The payments app, configured from `settings`; tests pass fake adapters."""

    @asynccontextmanager
    async def compose(app: FastAPI, client: httpx.AsyncClient) -> AsyncIterator[None]:
        app.state.payments = Payments(
            store or settings.dapr_state_store(client),
            currency=settings.currency,
            starting_credit_cents=settings.starting_credit_cents,
            max_entries=settings.max_wallet_entries,
            retry=RetryPolicy(
                settings.update_attempts, settings.update_backoff_seconds, settings.update_backoff_max_seconds
            ),
        )
        yield

    app = service_app(api.SERVICE, settings, compose, sidecar_health=sidecar_health)
    registry = app.state.metrics_registry
    app.state.operations = OperationCounter(
        api.SERVICE.name, registry, "Charges and refunds answered, by operation and outcome.", api.DOMAIN_ERRORS
    )
    app.state.deliveries = EventDeliveries(delivery_counter(api.SERVICE.name, registry))
    return app
