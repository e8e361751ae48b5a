"""Builds the gateway app: clients open in the lifespan, nothing happens at import time."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from gateway import api
from gateway.adapters import DaprInvoker, DaprJwksSource, DaprSecretApiKeySource, DaprSidecarHealth, sidecar_client
from gateway.domain import TokenPolicy
from gateway.errors import install_error_handlers
from gateway.handlers import ApiKeys, Authenticator, SigningKeys
from gateway.observability import HttpMetrics, RequestContextMiddleware, configure_logging
from gateway.settings import Settings, get_settings


def create_app(settings: Settings | None = None) -> FastAPI:
    """The gateway, configured from `settings` (the environment by default)."""
    settings = settings or get_settings()
    configure_logging(settings.log_level)
    metrics = HttpMetrics(CollectorRegistry())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with sidecar_client(settings) as client:
            invoker = DaprInvoker(
                client, on_call=lambda app_id, outcome: metrics.upstream.labels(app_id, outcome).inc()
            )
            keys = SigningKeys(
                DaprJwksSource(invoker, users_app_id=settings.users_app_id, method=settings.jwks_method),
                ttl=settings.jwks_cache_ttl_seconds,
                min_refetch_interval=settings.jwks_min_refetch_seconds,
                on_fetch=lambda outcome: metrics.jwks_fetches.labels(outcome).inc(),
            )
            policy = TokenPolicy(settings.jwt_issuer, settings.jwt_audience, settings.jwt_leeway_seconds)
            app.state.upstream = invoker
            app.state.authenticator = Authenticator(keys, policy)
            app.state.api_keys = ApiKeys(
                DaprSecretApiKeySource(
                    client,
                    store_name=settings.secret_store_name,
                    secret_name=settings.api_keys_secret_name,
                    timeout=settings.health_timeout_seconds,
                ),
                ttl=settings.api_keys_cache_ttl_seconds,
                retry_interval=settings.api_keys_retry_seconds,
            )
            app.state.sidecar_health = DaprSidecarHealth(client, settings.health_timeout_seconds)
            yield

    app = FastAPI(
        title="Sidecart gateway",
        summary="The public entry point: verifies tokens and routes each call to its app through Dapr.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.include_router(api.router)
    install_error_handlers(app)
    api.install_domain_error_handlers(app)
    app.add_middleware(RequestContextMiddleware, metrics=metrics)
    return app
