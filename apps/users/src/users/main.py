"""The users app: create_app() wires settings, the sidecar client, keys and routes; nothing runs at import."""

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import TypeVar

import httpx
from fastapi import FastAPI

from sidecart_kit.logs import configure_logging, get_logger
from sidecart_kit.service import install_plumbing, probe_routes
from sidecart_kit.sidecar import SidecarHealth, create_sidecar_client
from sidecart_kit.state import StoreUnavailableError
from users import api
from users.adapters import DaprSecretKeySource, DaprUserRepository
from users.handlers import Users
from users.security import Argon2PasswordHasher, RsaTokenSigner
from users.settings import Settings, get_settings

log = get_logger(__name__)

Result = TypeVar("Result")


async def _retry_until(deadline_seconds: float, attempt: Callable[[], Awaitable[Result]], what: str) -> Result:
    """The app and its sidecar start together: wait for the sidecar instead of failing on the first try."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + deadline_seconds
    delay = 0.2
    while True:
        try:
            return await attempt()
        except StoreUnavailableError as error:
            if loop.time() + delay > deadline:
                raise
            log.info("waiting_for_sidecar", what=what, error=str(error), retry_in=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """The composition root: everything the routes use is built here, once, and kept on app.state."""
    settings: Settings = app.state.settings
    async with create_sidecar_client(settings, app.state.sidecar_transport) as client:
        key_source = DaprSecretKeySource(client, settings.secret_store, settings.signing_key_secret)
        pem = await _retry_until(settings.startup_timeout_seconds, key_source.private_key_pem, "signing key")
        signer = RsaTokenSigner.from_pem(
            pem,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            ttl=timedelta(seconds=settings.token_ttl_seconds),
        )
        passwords = await Argon2PasswordHasher.create(concurrency=settings.hash_concurrency)
        app.state.users = Users(
            DaprUserRepository(client, settings.state_store),
            passwords,
            signer,
            claim_grace=timedelta(seconds=settings.claim_grace_seconds),
        )
        app.state.key_set = signer
        app.state.sidecar_health = SidecarHealth(client, settings.health_timeout_seconds)
        log.info("users_started", kid=signer.kid, state_store=settings.state_store)
        yield


def create_app(
    settings: Settings | None = None, *, sidecar_transport: httpx.AsyncBaseTransport | None = None
) -> FastAPI:
    """The app; `sidecar_transport` replaces the network to the sidecar (tests pass a fake sidecar)."""
    settings = settings or get_settings()
    configure_logging(settings.log_level, "users")
    app = FastAPI(
        title="Sidecart users",
        description="Sign-up, login (RS256 JWTs) and profiles, reached through Dapr service invocation.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.sidecar_transport = sidecar_transport
    install_plumbing(app, app_token=settings.app_api_token, domain_errors=api.DOMAIN_ERRORS)
    app.include_router(probe_routes())
    app.include_router(api.router)
    return app
