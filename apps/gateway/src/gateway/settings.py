"""Gateway configuration: GATEWAY_* variables, plus the ports the dapr CLI sets without a prefix."""

from functools import lru_cache

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GATEWAY_", extra="ignore", populate_by_name=True)

    app_host: str = "127.0.0.1"
    app_port: int = Field(default=8080, validation_alias=AliasChoices("GATEWAY_APP_PORT", "APP_PORT"))
    dapr_host: str = "127.0.0.1"
    dapr_http_port: int = Field(default=3500, validation_alias=AliasChoices("GATEWAY_DAPR_HTTP_PORT", "DAPR_HTTP_PORT"))
    dapr_grpc_port: int = Field(
        default=50001, validation_alias=AliasChoices("GATEWAY_DAPR_GRPC_PORT", "DAPR_GRPC_PORT")
    )
    # Sent as `dapr-api-token` when the sidecar is started with an API token (DAPR_API_TOKEN, set by the CLI).
    dapr_api_token: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("GATEWAY_DAPR_API_TOKEN", "DAPR_API_TOKEN")
    )

    users_app_id: str = "users"
    notifications_app_id: str = "notifications"
    inventory_app_id: str = "inventory"
    payments_app_id: str = "payments"
    orders_app_id: str = "orders"
    ingest_app_id: str = "ingest"
    analytics_app_id: str = "analytics"

    jwt_issuer: str = "sidecart-users"
    jwt_audience: str = "sidecart"
    jwt_leeway_seconds: float = 30.0
    jwks_method: str = ".well-known/jwks.json"
    jwks_cache_ttl_seconds: float = 300.0
    # However many tokens name an unknown key, the gateway asks users for its keys at most this often.
    jwks_min_refetch_seconds: float = 5.0

    # Longer than the resiliency policy's 10 s invoke timeout, so the sidecar's own answer arrives first.
    invoke_timeout_seconds: float = 15.0
    sidecar_connect_timeout_seconds: float = 2.0
    health_timeout_seconds: float = 2.0
    max_body_bytes: int = 1024 * 1024
    # The telemetry route keeps ingest's own limit, whatever the general one becomes.
    max_event_batch_bytes: int = 1024 * 1024
    # The longest query string the routes that forward one (the analytics reports) accept: longer is 414.
    max_query_bytes: int = 2048

    # Machine clients of POST /api/v1/events send X-API-Key; the valid keys are one comma-separated secret.
    secret_store_name: str = "secretstore"  # noqa: S105 (a component name)
    api_keys_secret_name: str = "ingest-api-keys"  # noqa: S105 (a secret's name)
    api_keys_cache_ttl_seconds: float = 60.0
    # After a failed read of the secret, requests are refused for this long before the store is asked again.
    api_keys_retry_seconds: float = 2.0

    log_level: str = "INFO"


@lru_cache
def get_settings() -> Settings:
    """The settings read from the environment once per process."""
    return Settings()
