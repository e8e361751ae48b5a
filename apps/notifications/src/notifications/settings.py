"""Notifications configuration: NOTIFICATIONS_* variables, plus the ports the dapr CLI sets without a prefix."""

from functools import lru_cache

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="NOTIFICATIONS_", extra="ignore", populate_by_name=True)

    app_host: str = "127.0.0.1"
    app_port: int = Field(default=8102, validation_alias=AliasChoices("NOTIFICATIONS_APP_PORT", "APP_PORT"))
    dapr_host: str = "127.0.0.1"
    dapr_http_port: int = Field(
        default=3502, validation_alias=AliasChoices("NOTIFICATIONS_DAPR_HTTP_PORT", "DAPR_HTTP_PORT")
    )
    dapr_grpc_port: int = Field(
        default=50021, validation_alias=AliasChoices("NOTIFICATIONS_DAPR_GRPC_PORT", "DAPR_GRPC_PORT")
    )
    # Sent as `dapr-api-token` when the sidecar is started with an API token (DAPR_API_TOKEN, set by the CLI).
    dapr_api_token: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("NOTIFICATIONS_DAPR_API_TOKEN", "DAPR_API_TOKEN")
    )

    pubsub_name: str = "pubsub"
    dead_letter_topic: str = "deadletter"
    state_store_name: str = "notifications-store"

    max_notices_per_user: int = 100
    max_remembered_events_per_user: int = 500
    # Optimistic-concurrency retries when two deliveries update the same user's notices at once.
    save_attempts: int = 8
    save_backoff_seconds: float = 0.02
    save_backoff_max_seconds: float = 0.5

    # A lost first-insert race on Redis only surfaces after Dapr's own component retries (~6 s), so allow more.
    state_timeout_seconds: float = 20.0
    sidecar_connect_timeout_seconds: float = 2.0
    health_timeout_seconds: float = 2.0

    log_level: str = "INFO"


@lru_cache
def get_settings() -> Settings:
    """The settings read from the environment once per process."""
    return Settings()
