"""Payments configuration: PAYMENTS_* variables, plus the ports the dapr CLI sets without a prefix."""

from functools import lru_cache

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PAYMENTS_", extra="ignore", populate_by_name=True)

    app_host: str = "127.0.0.1"
    app_port: int = Field(default=8104, validation_alias=AliasChoices("PAYMENTS_APP_PORT", "APP_PORT"))
    dapr_host: str = "127.0.0.1"
    dapr_http_port: int = Field(
        default=3504, validation_alias=AliasChoices("PAYMENTS_DAPR_HTTP_PORT", "DAPR_HTTP_PORT")
    )
    dapr_grpc_port: int = Field(
        default=50041, validation_alias=AliasChoices("PAYMENTS_DAPR_GRPC_PORT", "DAPR_GRPC_PORT")
    )
    # Sent as `dapr-api-token` when the sidecar is started with an API token (DAPR_API_TOKEN, set by the CLI).
    dapr_api_token: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("PAYMENTS_DAPR_API_TOKEN", "DAPR_API_TOKEN")
    )

    pubsub_name: str = "pubsub"
    dead_letter_topic: str = "deadletter"
    state_store_name: str = "payments-store"

    currency: str = Field(default="EUR", pattern=r"^[A-Z]{3}$")
    starting_credit_cents: int = Field(default=10_000, ge=0)
    max_wallet_entries: int = Field(default=50, ge=1)

    # Optimistic-concurrency retries when calls for one wallet or one order race.
    update_attempts: int = Field(default=30, ge=1)
    update_backoff_seconds: float = Field(default=0.01, ge=0)
    update_backoff_max_seconds: float = Field(default=0.25, ge=0)

    state_timeout_seconds: float = 5.0
    # Calls to the sidecar at once; more wait their turn (at most state_timeout_seconds, then 503).
    sidecar_max_concurrent_calls: int = Field(default=64, ge=1)
    sidecar_connect_timeout_seconds: float = 2.0
    health_timeout_seconds: float = 2.0

    log_level: str = "INFO"


@lru_cache
def get_settings() -> Settings:
    """The settings read from the environment once per process."""
    return Settings()
