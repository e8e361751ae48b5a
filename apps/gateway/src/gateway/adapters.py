"""The only module that talks to the sidecar: service invocation, the users JWKS through it, and the API keys
secret. The client is the kit's (paths are relative to /v1.0; it adds the request id and trace context)."""

import json
from collections.abc import Callable
from typing import Any

import httpx

from gateway.domain import (
    ApiKeysUnavailableError,
    InvocationFailedError,
    KeysUnavailableError,
    SidecarUnreachableError,
    UpstreamError,
    UpstreamRequest,
    UpstreamResponse,
    UpstreamTimeoutError,
)
from sidecart_kit.logs import get_logger
from sidecart_kit.sidecar import dapr_error_code

log = get_logger(__name__)


class DaprInvoker:
    """Service invocation over the sidecar's HTTP API: /v1.0/invoke/{app-id}/method/{path}."""

    def __init__(self, client: httpx.AsyncClient, on_call: Callable[[str, str], None] | None = None) -> None:
        self._client = client
        self._on_call = on_call

    async def invoke(self, app_id: str, request: UpstreamRequest) -> UpstreamResponse:
        url = f"/invoke/{app_id}/method/{request.path}"
        if request.query:
            url = f"{url}?{request.query}"  # the sidecar passes the query string on to the app
        try:
            response = await self._client.request(
                request.method, url, headers=dict(request.headers), content=request.body or None
            )
        except httpx.TimeoutException as exc:
            self._record(app_id, "timeout")
            raise UpstreamTimeoutError(f"{app_id} {request.method} /{request.path} timed out") from exc
        except httpx.TransportError as exc:
            self._record(app_id, "sidecar_unreachable")
            raise SidecarUnreachableError(f"the sidecar did not answer: {exc!r}") from exc
        # Sidecart apps answer errors as {"error": {...}}: an error with Dapr's `errorCode` came from the sidecar.
        dapr_error = dapr_error_code(response) if response.status_code >= 400 else None
        if dapr_error is not None:
            self._record(app_id, "invoke_error")
            log.warning(
                "invoke_failed",
                app_id=app_id,
                method=request.method,
                path=request.path,
                status=response.status_code,
                dapr_error=dapr_error,
                dapr_message=response.text[:500],
            )
            raise InvocationFailedError(f"{app_id}: {dapr_error}")
        self._record(app_id, "answered")
        return UpstreamResponse(response.status_code, dict(response.headers), response.content)

    def _record(self, app_id: str, outcome: str) -> None:
        if self._on_call is not None:
            self._on_call(app_id, outcome)


class DaprJwksSource:
    """The users service's JWKS, fetched through the sidecar like any other call."""

    def __init__(self, upstream: DaprInvoker, *, users_app_id: str, method: str) -> None:
        self._upstream = upstream
        self._users_app_id = users_app_id
        self._method = method

    async def fetch_jwks(self) -> object:
        request = UpstreamRequest("GET", self._method, {"accept": "application/json"})
        try:
            response = await self._upstream.invoke(self._users_app_id, request)
        except UpstreamError as exc:
            raise KeysUnavailableError(f"fetching the JWKS failed: {exc.reason}") from exc
        if response.status != 200:
            raise KeysUnavailableError(f"the JWKS endpoint answered {response.status}")
        try:
            document: object = json.loads(response.body)
        except ValueError as exc:
            raise KeysUnavailableError("the JWKS endpoint answered something other than JSON") from exc
        return document


class DaprSecretApiKeySource:
    """The API keys secret, read through the sidecar's secrets API: GET /v1.0/secrets/{store}/{name}."""

    def __init__(self, client: httpx.AsyncClient, *, store_name: str, secret_name: str, timeout: float) -> None:
        self._client = client
        self._url = f"/secrets/{store_name}/{secret_name}"
        self._secret_name = secret_name
        self._timeout = timeout

    async def fetch_api_keys(self) -> str:
        try:
            response = await self._client.get(self._url, timeout=self._timeout)
        except httpx.HTTPError as exc:
            raise ApiKeysUnavailableError(f"the sidecar did not answer: {exc!r}") from exc
        if response.status_code != 200:
            # Never log the body of a secrets call: on success it is the secret itself.
            raise ApiKeysUnavailableError(
                f"reading the secret answered {response.status_code} ({dapr_error_code(response)})"
            )
        try:
            secret: Any = response.json()
        except ValueError as exc:
            raise ApiKeysUnavailableError("the secret store answered something other than JSON") from exc
        # Dapr answers {name: value}; a store that names the one value differently still gives a single entry.
        if isinstance(secret, dict):
            value = secret.get(self._secret_name)
            if value is None and len(secret) == 1:
                value = next(iter(secret.values()))
            if isinstance(value, str):
                return value
        raise ApiKeysUnavailableError("the secret does not hold a comma-separated list of keys")
