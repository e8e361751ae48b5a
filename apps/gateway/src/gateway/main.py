"""The gateway's composition root: the kit's service app, and the use cases built once in its lifespan."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI
from prometheus_client import Counter

from gateway import api
from gateway.adapters import DaprInvoker, DaprJwksSource, DaprSecretApiKeySource
from gateway.domain import TokenPolicy
from gateway.handlers import ApiKeys, Authenticator, Gateway, SigningKeys
from gateway.rate_limits import HoldBack, RateLimits
from gateway.settings import Settings
from sidecart_kit.service import NO_FAKES, Fakes, service_app


def create_app(settings: Settings, fakes: Fakes = NO_FAKES) -> FastAPI:
    """The gateway, configured from `settings`; tests pass fakes."""

    @asynccontextmanager
    async def compose(app: FastAPI, client: httpx.AsyncClient) -> AsyncIterator[None]:
        invoker = DaprInvoker(client, on_call=lambda app_id, outcome: upstream_calls.labels(app_id, outcome).inc())
        keys = SigningKeys(
            DaprJwksSource(invoker, users_app_id=settings.users_app_id, method=settings.jwks_method),
            ttl=settings.jwks_cache_ttl_seconds,
            min_refetch_interval=settings.jwks_min_refetch_seconds,
            on_fetch=lambda outcome: jwks_fetches.labels(outcome).inc(),
        )
        policy = TokenPolicy(settings.jwt_issuer, settings.jwt_audience, settings.jwt_leeway_seconds)
        app.state.authenticator = Authenticator(keys, policy)
        app.state.rate_limits = RateLimits(
            settings.rate_limit_specs(),
            HoldBack(settings.login_hold_back_seconds, settings.login_hold_back_max_held),
        )
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
        app.state.gateway = Gateway(
            invoker,
            users_app_id=settings.users_app_id,
            notifications_app_id=settings.notifications_app_id,
            inventory_app_id=settings.inventory_app_id,
            payments_app_id=settings.payments_app_id,
            orders_app_id=settings.orders_app_id,
            ingest_app_id=settings.ingest_app_id,
            analytics_app_id=settings.analytics_app_id,
        )
        yield

    app = service_app(api.SERVICE, settings, compose, fakes)
    registry = app.state.metrics_registry
    upstream_calls = Counter(
        "gateway_upstream_requests_total",
        "Calls to other apps through the sidecar.",
        ["app_id", "outcome"],
        registry=registry,
    )
    jwks_fetches = Counter(
        "gateway_jwks_fetches_total", "Fetches of the users service's signing keys.", ["outcome"], registry=registry
    )
    return app
