"""The gateway's use cases: authenticate a caller, and forward each public route to the app that serves it."""

import asyncio
import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import KW_ONLY, dataclass
from typing import Protocol
from urllib.parse import quote

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from gateway.domain import (
    ANALYTICS_QUERY_PARAMETERS,
    AnalyticsReport,
    ApiKeysUnavailableError,
    InvalidApiKeyError,
    InvalidKeySetError,
    InvalidTokenError,
    KeySet,
    KeysUnavailableError,
    Principal,
    TokenPolicy,
    UpstreamRequest,
    UpstreamResponse,
    VerifiedToken,
    api_key_matches,
    bearer_token,
    client_response,
    forwarded_query,
    parse_api_keys,
    parse_order_id,
    parse_sku,
    signing_key_id,
    verify_token,
)
from sidecart_kit.logs import get_logger
from sidecart_kit.requests import current_request_id

log = get_logger(__name__)


class Upstream(Protocol):
    """Calls a method of another app (through the sidecar)."""

    async def invoke(self, app_id: str, request: UpstreamRequest) -> UpstreamResponse: ...


class JwksSource(Protocol):
    """Fetches the users service's JWKS document; raises KeysUnavailableError when it cannot."""

    async def fetch_jwks(self) -> object: ...


class ApiKeySource(Protocol):
    """Reads the secret holding the valid API keys (comma-separated); raises ApiKeysUnavailableError."""

    async def fetch_api_keys(self) -> str: ...


class SigningKeys:
    """The users service's public keys, cached for `ttl` seconds.

    A token naming a key the cache lacks triggers one refetch (key rotation), but fetches happen at most every
    `min_refetch_interval` seconds however many such tokens arrive, so junk key ids cannot make the gateway
    hammer users. When a refresh fails the keys already held stay in use; with none held, KeysUnavailableError.
    """

    def __init__(
        self,
        source: JwksSource,
        *,
        ttl: float,
        min_refetch_interval: float,
        clock: Callable[[], float] = time.monotonic,
        on_fetch: Callable[[str], None] = lambda outcome: None,
    ) -> None:
        self._source = source
        self._ttl = ttl
        self._min_refetch_interval = min_refetch_interval
        self._clock = clock
        self._on_fetch = on_fetch
        self._keys: KeySet | None = None
        self._fetched_at = -math.inf
        self._attempted_at = -math.inf
        self._generation = 0
        self._lock = asyncio.Lock()

    async def find(self, kid: str | None) -> RSAPublicKey:
        """The key a token names."""
        keys, generation = self._keys, self._generation
        if keys is None or self._clock() - self._fetched_at >= self._ttl:
            keys = await self._refresh(generation)
            generation = self._generation
        key = keys.find(kid)
        if key is None:
            key = (await self._refresh(generation)).find(kid)
        if key is None:
            raise InvalidTokenError("the token names a signing key the issuer does not publish")
        return key

    async def _refresh(self, seen_generation: int) -> KeySet:
        async with self._lock:
            if self._keys is not None and self._generation != seen_generation:
                return self._keys  # another request refreshed while this one waited
            if self._clock() - self._attempted_at < self._min_refetch_interval:
                if self._keys is None:
                    raise KeysUnavailableError("the last attempt to fetch the signing keys failed moments ago")
                return self._keys
            self._attempted_at = self._clock()
            try:
                keys = KeySet.from_jwks(await self._source.fetch_jwks())
            except (KeysUnavailableError, InvalidKeySetError) as exc:
                self._on_fetch("failed")
                if self._keys is None:
                    raise KeysUnavailableError(str(exc)) from exc
                log.warning("jwks_refresh_failed_keeping_cached_keys", reason=str(exc))
                return self._keys
            self._on_fetch("ok")
            self._keys, self._fetched_at = keys, self._attempted_at
            self._generation += 1
            return keys


class ApiKeys:
    """The valid API keys of machine clients, read from the secret store and cached for `ttl` seconds.

    A revoked key stops working within `ttl`. When the store cannot be read the gateway refuses API keys (503)
    rather than trusting a stale list, and asks again only after `retry_interval`, so an outage of the store is
    not made worse by a request per call.
    """

    def __init__(
        self,
        source: ApiKeySource,
        *,
        ttl: float,
        retry_interval: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._source = source
        self._ttl = ttl
        self._retry_interval = retry_interval
        self._clock = clock
        self._keys: frozenset[str] | None = None
        self._fetched_at = -math.inf
        self._failed_at = -math.inf
        self._lock = asyncio.Lock()

    async def verify(self, candidate: str) -> None:
        """Returns when `candidate` is a valid key; raises InvalidApiKeyError or ApiKeysUnavailableError."""
        if not api_key_matches(candidate, await self._current()):
            raise InvalidApiKeyError("the API key is not valid")

    async def _current(self) -> frozenset[str]:
        if self._keys is not None and self._clock() - self._fetched_at < self._ttl:
            return self._keys
        async with self._lock:
            now = self._clock()
            if self._keys is not None and now - self._fetched_at < self._ttl:
                return self._keys  # another request refreshed while this one waited
            if now - self._failed_at < self._retry_interval:
                raise ApiKeysUnavailableError("the last read of the API keys failed moments ago")
            try:
                keys = parse_api_keys(await self._source.fetch_api_keys())
            except ApiKeysUnavailableError:
                self._keys, self._failed_at = None, now
                raise
            self._keys, self._fetched_at = keys, now
            return keys


class Authenticator:
    """Turns an Authorization header into a Principal, or refuses it.

    A client sends the same token with every request until it expires, and checking an RS256 signature is the
    largest single cost of authenticating (~75 µs, and ~40 µs more to read its header). So the last `remembered`
    tokens that verified are kept with their kid and the key that verified them: the same token is accepted again,
    without its header read or its signature checked again, while its times hold and its kid still finds that very
    key (a key users stopped publishing, or a refetched key set,
    finds another object and the token is checked afresh). Only tokens that verified are kept."""

    def __init__(
        self,
        keys: SigningKeys,
        policy: TokenPolicy,
        *,
        remembered: int = 10_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._keys = keys
        self._policy = policy
        self._remembered = remembered
        self._clock = clock
        self._verified: dict[str, tuple[str | None, RSAPublicKey, VerifiedToken]] = {}

    async def authenticate(self, authorization: str | None) -> Principal:
        token = bearer_token(authorization)
        known = self._verified.get(token)
        if known is not None:
            known_kid, known_key, known_token = known
            now = self._clock()
            if (
                known_token.still_valid(now, self._policy.leeway_seconds)
                and await self._keys.find(known_kid) is known_key
            ):
                return known_token.principal
        # The header is checked before any key lookup, so a malformed token never costs a JWKS fetch.
        kid = signing_key_id(token)
        key = await self._keys.find(kid)
        verified = verify_token(token, key, self._policy)
        if self._remembered > 0:
            if len(self._verified) >= self._remembered:
                del self._verified[next(iter(self._verified))]  # the oldest first
            self._verified[token] = (kid, key, verified)
        return verified.principal


@dataclass(frozen=True)
class Gateway:
    """The public routes, each mapped to the app and method that serve it.

    Every upstream path is built here from a fixed template; the only variable parts are the token's subject and
    ids already checked by the domain rules, so no public request can reach another method (an /admin one, say).
    No query string travels, except the allowed parameters of the analytics reports.
    """

    upstream: Upstream
    _: KW_ONLY
    users_app_id: str
    notifications_app_id: str
    inventory_app_id: str
    payments_app_id: str
    orders_app_id: str
    ingest_app_id: str = "ingest"
    analytics_app_id: str = "analytics"

    async def sign_up(self, body: bytes, headers: Mapping[str, str]) -> UpstreamResponse:
        return await self._call(self.users_app_id, UpstreamRequest("POST", "users", headers, body))

    async def issue_token(self, body: bytes, headers: Mapping[str, str]) -> UpstreamResponse:
        return await self._call(self.users_app_id, UpstreamRequest("POST", "auth/token", headers, body))

    async def get_profile(self, caller: Principal, headers: Mapping[str, str]) -> UpstreamResponse:
        return await self._call(self.users_app_id, UpstreamRequest("GET", _user_path(caller), headers))

    async def list_notifications(self, caller: Principal, headers: Mapping[str, str]) -> UpstreamResponse:
        path = f"{_user_path(caller)}/notifications"
        return await self._call(self.notifications_app_id, UpstreamRequest("GET", path, headers))

    async def list_products(self, headers: Mapping[str, str]) -> UpstreamResponse:
        return await self._call(self.inventory_app_id, UpstreamRequest("GET", "products", headers))

    async def get_product(self, sku: str, headers: Mapping[str, str]) -> UpstreamResponse:
        path = f"products/{quote(parse_sku(sku), safe='')}"
        return await self._call(self.inventory_app_id, UpstreamRequest("GET", path, headers))

    async def get_wallet(self, caller: Principal, headers: Mapping[str, str]) -> UpstreamResponse:
        path = f"wallets/{quote(caller.subject, safe='')}"
        return await self._call(self.payments_app_id, UpstreamRequest("GET", path, headers))

    async def place_order(self, caller: Principal, body: bytes, headers: Mapping[str, str]) -> UpstreamResponse:
        path = f"{_user_path(caller)}/orders"
        return await self._call(self.orders_app_id, UpstreamRequest("POST", path, headers, body))

    async def list_orders(self, caller: Principal, headers: Mapping[str, str]) -> UpstreamResponse:
        path = f"{_user_path(caller)}/orders"
        return await self._call(self.orders_app_id, UpstreamRequest("GET", path, headers))

    async def get_order(self, caller: Principal, order_id: str, headers: Mapping[str, str]) -> UpstreamResponse:
        path = f"{_user_path(caller)}/orders/{parse_order_id(order_id)}"
        return await self._call(self.orders_app_id, UpstreamRequest("GET", path, headers))

    async def send_events(self, body: bytes, headers: Mapping[str, str]) -> UpstreamResponse:
        return await self._call(self.ingest_app_id, UpstreamRequest("POST", "events", headers, body))

    async def get_report(
        self, report: AnalyticsReport, query: Iterable[tuple[str, str]], headers: Mapping[str, str]
    ) -> UpstreamResponse:
        request = UpstreamRequest(
            "GET", f"reports/{report.value}", headers, query=forwarded_query(query, ANALYTICS_QUERY_PARAMETERS)
        )
        return await self._call(self.analytics_app_id, request)

    async def _call(self, app_id: str, request: UpstreamRequest) -> UpstreamResponse:
        response = await self.upstream.invoke(app_id, request)
        return client_response(response, current_request_id())


def _user_path(caller: Principal) -> str:
    return f"users/{quote(caller.subject, safe='')}"
