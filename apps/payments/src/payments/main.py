"""Builds the payments app, its one composition root: clients and use cases open in the lifespan, nothing happens
at import time."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from payments import api
from payments.handlers import Payments
from payments.settings import Settings, get_settings
from sidecart_kit.logs import configure_logging
from sidecart_kit.retry import RetryPolicy
from sidecart_kit.service import install_plumbing, probe_routes
from sidecart_kit.sidecar import ReadinessProbe, SidecarHealth, create_sidecar_client
from sidecart_kit.state import DaprStateStore, StateStore


def create_app(
    settings: Settings | None = None,
    *,
    store: StateStore | None = None,
    sidecar_health: ReadinessProbe | None = None,
) -> FastAPI:
    """The payments app, configured from `settings` (the environment by default); tests pass fake adapters."""
    settings = settings or get_settings()
    configure_logging(settings.log_level, "payments")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with create_sidecar_client(settings) as client:
            app.state.sidecar_health = sidecar_health or SidecarHealth(client, settings.health_timeout_seconds)
            app.state.payments = Payments(
                store
                or DaprStateStore(
                    client,
                    settings.state_store,
                    max_concurrent_calls=settings.sidecar_max_concurrent_calls,
                    queue_timeout=settings.state_timeout_seconds,
                ),
                currency=settings.currency,
                starting_credit_cents=settings.starting_credit_cents,
                max_entries=settings.max_wallet_entries,
                retry=RetryPolicy(
                    settings.update_attempts, settings.update_backoff_seconds, settings.update_backoff_max_seconds
                ),
            )
            yield

    app = FastAPI(
        title="Sidecart payments",
        summary="Wallets, charges and refunds for the order saga, never a negative balance.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.settings = settings
    registry = install_plumbing(app, app_token=settings.app_api_token, domain_errors=api.DOMAIN_ERRORS)
    app.state.metrics = api.PaymentsMetrics(registry)
    app.include_router(api.router)
    app.include_router(probe_routes())
    return app
