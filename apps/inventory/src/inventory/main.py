"""Builds the inventory app: clients open in the lifespan, nothing happens at import time."""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from inventory import api
from inventory.adapters import DaprSidecarHealth, DaprStateStore, sidecar_client
from inventory.domain import DEMO_CATALOGUE
from inventory.errors import install_error_handlers
from inventory.handlers import Inventory, KeyLocks
from inventory.observability import HttpMetrics, RequestContextMiddleware, configure_logging
from inventory.settings import Settings, get_settings

log = structlog.get_logger("inventory.main")


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


def create_app(settings: Settings | None = None) -> FastAPI:
    """The inventory app, configured from `settings` (the environment by default)."""
    settings = settings or get_settings()
    configure_logging(settings.log_level)
    metrics = HttpMetrics(CollectorRegistry())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with sidecar_client(settings) as client:
            store = DaprStateStore(
                client,
                settings.state_store_name,
                max_concurrent_calls=settings.sidecar_max_concurrent_calls,
                queue_timeout=settings.state_timeout_seconds,
            )
            app.state.store = store
            app.state.sidecar_health = DaprSidecarHealth(client, settings.health_timeout_seconds)
            background = asyncio.create_task(
                maintain(app, api.build_inventory(store, settings, app.state.locks), settings)
            )
            try:
                yield
            finally:
                background.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await background

    app = FastAPI(
        title="Sidecart inventory",
        summary="The catalogue and its stock, reserved and released by the order saga, never oversold.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.seeded = not settings.seed_demo_catalogue
    app.state.locks = KeyLocks()
    app.include_router(api.router)
    install_error_handlers(app)
    api.install_domain_error_handlers(app)
    app.add_middleware(RequestContextMiddleware, metrics=metrics)
    return app
