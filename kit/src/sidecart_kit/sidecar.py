"""The sidecar as every service reaches it: settings every service shares, one pooled HTTP client to the sidecar's
API, Dapr's error codes, and the sidecar health probe."""

import os
from collections.abc import Mapping
from json import dumps
from types import TracebackType
from typing import Any, Protocol
from urllib.parse import urlencode

import aiohttp
import httpx
from multidict import CIMultiDict
from opentelemetry import propagate
from pydantic import Field, SecretStr
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict

from sidecart_kit.requests import outgoing_headers, pass_request_context_on
from sidecart_kit.tracing import sidecar_call_span

# What the dapr CLI (and Dapr on Kubernetes) sets for the app, without the service's prefix, and OpenTelemetry's
# standard variable.
_DAPR_CLI_VARIABLES = {
    "app_port": "APP_PORT",
    "dapr_http_port": "DAPR_HTTP_PORT",
    "dapr_grpc_port": "DAPR_GRPC_PORT",
    "dapr_api_token": "DAPR_API_TOKEN",
    "app_api_token": "APP_API_TOKEN",
    # OpenTelemetry's own variable for where Zipkin-format spans go (sidecart_kit.tracing).
    "trace_endpoint": "OTEL_EXPORTER_ZIPKIN_ENDPOINT",
}


class _DaprCliSource(EnvSettingsSource):
    """The unprefixed variables of _DAPR_CLI_VARIABLES (a service's own prefixed variable wins over them)."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        variable = _DAPR_CLI_VARIABLES.get(field_name)
        value = os.environ.get(variable) if variable else None
        return value, field_name, False


class ServiceSettings(BaseSettings):
    """What every service's Settings has: its address, its sidecar's, the tokens between them, timeouts, logs.

    A service subclasses it with its own env prefix (PAYMENTS_...) and defaults; APP_PORT, DAPR_HTTP_PORT,
    DAPR_GRPC_PORT, DAPR_API_TOKEN and APP_API_TOKEN, as the dapr CLI sets them, are read too. An app's ports are
    declared once, in deploy/catalogue.yaml, and reach it that way (dapr.yaml is generated from the catalogue); the
    defaults here serve an app started by hand beside a sidecar on Dapr's default ports.
    """

    model_config = SettingsConfigDict(extra="ignore")

    app_host: str = "127.0.0.1"
    app_port: int = 8000
    sidecar_host: str = "127.0.0.1"
    dapr_http_port: int = 3500
    dapr_grpc_port: int = 50001
    # Sent as `dapr-api-token` to the sidecar when it requires one.
    dapr_api_token: SecretStr | None = None
    # What the sidecar sends as `dapr-api-token` to the app when it is started with one.
    app_api_token: SecretStr | None = None

    sidecar_timeout_seconds: float = Field(default=5.0, gt=0)
    sidecar_connect_timeout_seconds: float = Field(default=2.0, gt=0)
    # Connections to the sidecar at once; calls beyond it wait for one.
    sidecar_max_connections: int = Field(default=100, ge=1)
    health_timeout_seconds: float = Field(default=2.0, gt=0)

    log_level: str = "INFO"
    # Where the app sends its spans (Zipkin's /api/v2/spans); None: no spans are recorded (sidecart_kit.tracing).
    trace_endpoint: str | None = None
    # Where a public app (the gateway) serves /metrics instead of on its public port: on app_host, at this port.
    metrics_port: int | None = None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, _DaprCliSource(settings_cls), dotenv_settings, file_secret_settings


def create_sidecar_client(
    settings: ServiceSettings, transport: httpx.AsyncBaseTransport | None = None
) -> httpx.AsyncClient:
    """One pooled client to the sidecar's API (`/v1.0/...` paths are relative to it) for the app's lifetime; every
    call carries the API token and the current request id and trace context. Tests pass a fake sidecar (`transport`):
    then it is httpx's own client, with the same headers."""
    headers = {}
    if settings.dapr_api_token is not None:
        headers["dapr-api-token"] = settings.dapr_api_token.get_secret_value()
    base_url = f"http://{settings.sidecar_host}:{settings.dapr_http_port}/v1.0"
    timeout = httpx.Timeout(settings.sidecar_timeout_seconds, connect=settings.sidecar_connect_timeout_seconds)
    if transport is None:
        return SidecarClient(base_url, headers, timeout, max_connections=settings.sidecar_max_connections)
    return httpx.AsyncClient(
        base_url=base_url,
        headers=headers,
        timeout=timeout,
        trust_env=False,
        event_hooks={"request": [pass_request_context_on]},
        transport=transport,
    )


# aiohttp's errors as the httpx errors every adapter tells apart: never sent (connect), timed out, or lost midway.
_NEVER_SENT: tuple[tuple[type[Exception], type[httpx.TransportError]], ...] = (
    (aiohttp.ConnectionTimeoutError, httpx.ConnectTimeout),
    (aiohttp.ClientConnectorError, httpx.ConnectError),
)
_LOST: tuple[tuple[type[Exception], type[httpx.TransportError]], ...] = (
    (aiohttp.ServerTimeoutError, httpx.ReadTimeout),
    (TimeoutError, httpx.ReadTimeout),
    (aiohttp.ServerDisconnectedError, httpx.RemoteProtocolError),
    (aiohttp.ClientError, httpx.ReadError),
)


def _as_httpx_error(error: Exception) -> httpx.TransportError | None:
    for cause, answer in (*_NEVER_SENT, *_LOST):
        if isinstance(error, cause):
            return answer(f"{type(error).__name__}: {error}")
    return None


def _client_timeout(timeout: httpx.Timeout) -> aiohttp.ClientTimeout:
    # httpx: connect, read, pool; aiohttp: sock_connect, sock_read, and `connect` for the wait for a pooled connection.
    return aiohttp.ClientTimeout(total=None, connect=timeout.pool, sock_connect=timeout.connect, sock_read=timeout.read)


class SidecarClient(httpx.AsyncClient):
    """httpx's API (every adapter and its fake-sidecar tests use it), sent on aiohttp's connection pool without
    httpx's request machinery: ~105 µs of CPU per call to a local daprd, where httpx on aiohttp cost ~195 µs and httpx
    alone ~880 µs (`make bench-kit`, reports/bench-kit.md).

    It sends what the kit's adapters send (a path under the sidecar's /v1.0, params, headers, content or json, a
    timeout) and answers an httpx.Response; aiohttp's errors become the httpx errors they correspond to."""

    def __init__(
        self, base_url: str, headers: Mapping[str, str], timeout: httpx.Timeout, *, max_connections: int
    ) -> None:
        super().__init__(base_url=base_url, headers=headers, timeout=timeout, trust_env=False)
        self._base = base_url
        self._default_headers = dict(headers)
        # The client's timeout (httpx's property, which a caller may set later) as aiohttp's, made when it changes.
        self._timeout_pair = (self.timeout, _client_timeout(self.timeout))
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    def _open_session(self) -> aiohttp.ClientSession:
        # Opened on first use, in the event loop that uses it (aiohttp binds a session to its loop).
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._max_connections),
                # httpx.Response decodes a compressed body itself, as httpx's own client does.
                auto_decompress=False,
                # As httpx: a body goes without a Content-Type unless the caller names one (aiohttp would say
                # application/octet-stream, which a JSON route refuses).
                skip_auto_headers=("Content-Type",),
                trust_env=False,  # a proxy from the environment must never sit between an app and its sidecar
            )
        return self._session

    async def request(  # type: ignore[override]
        self,
        method: str,
        url: str | httpx.URL,
        *,
        content: bytes | None = None,
        json: Any = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: Any = httpx.USE_CLIENT_DEFAULT,  # noqa: ASYNC109 (httpx's parameter: a number or an httpx.Timeout)
        **unsupported: Any,
    ) -> httpx.Response:
        # httpx.AsyncClient.get() and the like pass every parameter of theirs: only their defaults are accepted.
        sent_anyway = {
            name: value
            for name, value in unsupported.items()
            if value is not None and value is not httpx.USE_CLIENT_DEFAULT and value is not False
        }
        if sent_anyway:
            raise TypeError(f"the sidecar client does not send {', '.join(sorted(sent_anyway))}")
        # A path under /v1.0, or a whole URL (an alpha API: client.base_url.join("/v1.0-alpha1/...")).
        target = self._base + url if isinstance(url, str) and url.startswith("/") else str(url)
        if params:
            target = f"{target}{'&' if '?' in target else '?'}{urlencode(params)}"
        sent = CIMultiDict(self._default_headers)
        if headers:
            sent.update(headers)
        for name, value in outgoing_headers().items():
            sent.setdefault(name, value)
        if json is not None:
            content = dumps(json, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
            sent.setdefault("content-type", "application/json")
        if timeout is httpx.USE_CLIENT_DEFAULT:
            if self._timeout_pair[0] is not self.timeout:
                self._timeout_pair = (self.timeout, _client_timeout(self.timeout))
            wait = self._timeout_pair[1]
        else:
            wait = _client_timeout(timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout))
        with sidecar_call_span(method, url if isinstance(url, str) else url.path) as span:
            if span is not None:
                propagate.inject(sent)  # the trace context names this call's span as the sidecar's parent
            try:
                async with self._open_session().request(
                    method, target, data=content, headers=sent, timeout=wait, allow_redirects=False
                ) as answer:
                    body = await answer.read()
            except Exception as error:
                translated = _as_httpx_error(error)
                if translated is None:
                    raise
                raise translated from error
            if span is not None:
                span.set_attribute("http.response.status_code", answer.status)
        # The request it answers (~15 µs), so that raise_for_status() and response.url work as with httpx's client.
        sent_request = httpx.Request(method, target, headers=list(sent.items()))
        return httpx.Response(answer.status, headers=answer.raw_headers, content=body, request=sent_request)

    async def _close_session(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def aclose(self) -> None:
        await self._close_session()
        await super().aclose()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        # httpx's own __aexit__ closes its transports, not aclose(): the aiohttp pool is closed here.
        await self._close_session()
        await super().__aexit__(exc_type, exc_value, traceback)


def dapr_error_code(response: httpx.Response) -> str | None:
    """Dapr's errorCode of a failed call (ERR_STATE_SAVE, ERR_DIRECT_INVOKE, ...), when its body says one."""
    try:
        body = response.json()
    except ValueError:
        return None
    code = body.get("errorCode") if isinstance(body, dict) else None
    return code if isinstance(code, str) else None


def dapr_error(response: httpx.Response) -> str:
    """A failed call's status, Dapr error code and message, short enough for a log line or an exception."""
    try:
        body: Any = response.json()
    except ValueError:
        return f"{response.status_code} {response.text[:300]}"
    if isinstance(body, dict):
        return f"{response.status_code} {body.get('errorCode')}: {str(body.get('message'))[:300]}"
    return f"{response.status_code} {response.text[:300]}"


class ReadinessProbe(Protocol):
    """What readiness depends on: SidecarHealth in the app, FakeSidecarHealth in tests."""

    async def is_ready(self) -> bool: ...


class SidecarHealth:
    """The sidecar health probe: up, with its components ready (GET /v1.0/healthz/outbound answers 204)."""

    def __init__(self, client: httpx.AsyncClient, timeout: float) -> None:
        self._client = client
        self._timeout = timeout

    async def is_ready(self) -> bool:
        try:
            response = await self._client.get("/healthz/outbound", timeout=self._timeout)
        except httpx.HTTPError:
            return False
        return response.is_success
