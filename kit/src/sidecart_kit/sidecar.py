"""The sidecar as every service reaches it: settings every service shares, one pooled HTTP client to the sidecar's
API, Dapr's error codes, and the sidecar health probe."""

import os
from typing import Any, Protocol

import httpx
from httpx_aiohttp import AiohttpTransport
from pydantic import Field, SecretStr
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict

from sidecart_kit.requests import pass_request_context_on

# What the dapr CLI (and Dapr on Kubernetes) sets for the app, without the service's prefix.
_DAPR_CLI_VARIABLES = {
    "app_port": "APP_PORT",
    "dapr_http_port": "DAPR_HTTP_PORT",
    "dapr_grpc_port": "DAPR_GRPC_PORT",
    "dapr_api_token": "DAPR_API_TOKEN",
    "app_api_token": "APP_API_TOKEN",
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
    DAPR_GRPC_PORT, DAPR_API_TOKEN and APP_API_TOKEN, as the dapr CLI sets them, are read too.
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
    call carries the API token and the current request id and trace context. Tests pass a fake sidecar.

    httpx's API on aiohttp's connection pool: httpx's own pool cost ~750 µs of CPU per call to a local daprd, this
    ~190 µs (`make bench-kit`, reports/bench-kit.md).
    """
    headers = {}
    if settings.dapr_api_token is not None:
        headers["dapr-api-token"] = settings.dapr_api_token.get_secret_value()
    return httpx.AsyncClient(
        base_url=f"http://{settings.sidecar_host}:{settings.dapr_http_port}/v1.0",
        headers=headers,
        timeout=httpx.Timeout(settings.sidecar_timeout_seconds, connect=settings.sidecar_connect_timeout_seconds),
        trust_env=False,  # a proxy from the environment must never sit between an app and its sidecar
        event_hooks={"request": [pass_request_context_on]},
        transport=transport
        or AiohttpTransport(limits=httpx.Limits(max_connections=settings.sidecar_max_connections), trust_env=False),
    )


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
