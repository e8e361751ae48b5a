"""Builds the inventory app, its one composition root: clients and use cases open in the lifespan, with the
catalogue seeding and the reconciler beside them; nothing happens at import time."""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI

from inventory import api
from inventory.domain import DEMO_CATALOGUE
from inventory.handlers import Inventory
from inventory.settings import Settings
from sidecart_kit.logs import get_logger
from sidecart_kit.metrics import OperationCounter
from sidecart_kit.service import NO_FAKES, Fakes, service_app
from sidecart_kit.sidecar import ReadinessProbe

log = get_logger(__name__)


class SeededReadiness:
    """Ready once the demo catalogue is seeded (app.state.seeded) and the sidecar is ready: what /readyz asks."""

    def __init__(self, app: FastAPI, sidecar: ReadinessProbe) -> None:
        self._app = app
        self._sidecar = sidecar

    async def is_ready(self) -> bool:
        return bool(self._app.state.seeded) and await self._sidecar.is_ready()


async def seed_until_done(app: FastAPI, inventory: Inventory, settings: Settings) -> None:
    """Seeds the demo catalogue, retrying while the sidecar starts; /readyz says ready only afterwards."""
    delay = 0.5
    while True:
        try:
            created = await inventory.seed(DEMO_CATALOGUE, settings.demo_stock)
        except Exception as exc:  # the sidecar may not be up yet: keep trying, never crash the app
            log.warning("catalogue_seeding_retrying", error=str(exc), retry_in_seconds=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
            continue
        log.info("catalogue_seeded", created=created, products=len(DEMO_CATALOGUE))
        app.state.seeded = True
        return


async def reconcile_forever(inventory: Inventory, interval: float) -> None:
    """Completes decisions that a crash left half applied, now and then every `interval` seconds."""
    while True:
        try:
            completed = await inventory.reconcile()
        except Exception as exc:  # an outage now is retried at the next round
            log.warning("reconcile_failed", error=str(exc))
        else:
            if completed:
                log.info("reconciled", orders=completed)
        await asyncio.sleep(interval)


async def maintain(app: FastAPI, inventory: Inventory, settings: Settings) -> None:
    if settings.seed_demo_catalogue:
        await seed_until_done(app, inventory, settings)
    if settings.reconcile_interval_seconds > 0:
        await reconcile_forever(inventory, settings.reconcile_interval_seconds)


def create_app(settings: Settings, fakes: Fakes = NO_FAKES) -> FastAPI:
    """The inventory app, configured from `settings`; tests pass fakes."""

    @asynccontextmanager
    async def compose(app: FastAPI, client: httpx.AsyncClient) -> AsyncIterator[None]:
        app.state.readiness = SeededReadiness(app, app.state.sidecar_health)
        inventory = Inventory(
            fakes.state_store(settings, client),
            retry=settings.update_retry(),
        )
        app.state.inventory = inventory
        background = asyncio.create_task(maintain(app, inventory, settings))
        try:
            yield
        finally:
            background.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await background

    app = service_app(api.SERVICE, settings, compose, fakes)
    app.state.seeded = not settings.seed_demo_catalogue
    app.state.operations = OperationCounter(
        api.SERVICE.name,
        app.state.metrics_registry,
        "Reservation operations answered, by operation and outcome.",
        api.DOMAIN_ERRORS,
    )
    return app
