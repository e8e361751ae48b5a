"""The users app: create_app() wires settings, keys and routes into the kit's service app; nothing runs at import."""

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import TypeVar

import argon2
import httpx
from fastapi import FastAPI

from sidecart_kit.logs import get_logger
from sidecart_kit.service import NO_FAKES, Fakes, service_app
from sidecart_kit.state import StoreUnavailableError
from users import api
from users.adapters import DaprSecretKeySource, DaprUserRepository
from users.handlers import Users
from users.security import Argon2PasswordHasher, RsaTokenSigner
from users.settings import Settings

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


def create_app(settings: Settings, fakes: Fakes = NO_FAKES) -> FastAPI:
    """The users app, configured from `settings`; tests pass fakes."""

    @asynccontextmanager
    async def compose(app: FastAPI, client: httpx.AsyncClient) -> AsyncIterator[None]:
        """The composition root: everything the routes use is built here, once, and kept on app.state."""
        key_source = DaprSecretKeySource(
            client,
            settings.secret_store,
            current=settings.signing_key_secret,
            next_key=settings.next_signing_key_secret,
            previous=settings.previous_signing_key_secret,
        )
        pems = await _retry_until(settings.startup_timeout_seconds, key_source.signing_keys, "signing keys")
        signer = RsaTokenSigner.from_pems(
            pems.current_pem,
            next_pem=pems.next_pem,
            previous_pem=pems.previous_pem,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            ttl=timedelta(seconds=settings.token_ttl_seconds),
        )
        passwords = await Argon2PasswordHasher.create(
            concurrency=settings.hash_concurrency,
            hasher=argon2.PasswordHasher(
                time_cost=settings.password_hash_time_cost,
                memory_cost=settings.password_hash_memory_kib,
                parallelism=settings.password_hash_parallelism,
            ),
        )
        app.state.users = Users(
            DaprUserRepository(client, settings.state_store),
            passwords,
            signer,
            claim_grace=timedelta(seconds=settings.claim_grace_seconds),
        )
        app.state.key_set = signer
        if pems.next_pem is None:
            # Still works, but the next rotation makes every verifier meet an unknown key and fetch the JWKS again.
            log.warning("no_next_signing_key_published", secret=settings.next_signing_key_secret)
        log.info(
            "users_started",
            kid=signer.kid,
            published_kids=list(signer.published_kids),
            state_store=settings.state_store,
        )
        yield

    return service_app(api.SERVICE, settings, compose, fakes)
