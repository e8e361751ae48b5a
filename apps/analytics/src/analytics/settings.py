"""Analytics configuration: ANALYTICS_* variables, plus the ports the dapr CLI sets without a prefix."""

from functools import lru_cache
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ANALYTICS_", extra="ignore", populate_by_name=True)

    app_host: str = "127.0.0.1"
    app_port: int = Field(default=8107, validation_alias=AliasChoices("ANALYTICS_APP_PORT", "APP_PORT"))
    dapr_host: str = "127.0.0.1"
    dapr_http_port: int = Field(
        default=3507, validation_alias=AliasChoices("ANALYTICS_DAPR_HTTP_PORT", "DAPR_HTTP_PORT")
    )
    dapr_grpc_port: int = Field(
        default=50071, validation_alias=AliasChoices("ANALYTICS_DAPR_GRPC_PORT", "DAPR_GRPC_PORT")
    )
    # Sent as `dapr-api-token` when the sidecar is started with an API token (DAPR_API_TOKEN, set by the CLI).
    dapr_api_token: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("ANALYTICS_DAPR_API_TOKEN", "DAPR_API_TOKEN")
    )

    pubsub_name: str = "pubsub"
    state_store_name: str = "analytics-store"
    telemetry_dead_letter_topic: str = "telemetry-deadletter"
    dead_letter_topic: str = "deadletter"
    bulk_max_messages: int = 500
    bulk_max_await_ms: int = 200

    # Events older than this are acknowledged and not counted; it is also how long an event id is remembered,
    # so the dedupe window equals the retention window. Reports cover this window.
    retention_hours: int = Field(default=48, ge=1, le=24 * 31)
    # What a malformed telemetry entry is answered: "DROP" (checked on daprd 1.18.2: a per-entry DROP in a bulk
    # delivery is moved to the deadLetterTopic at once, without retries), "RETRY" (the sidecar retries it under
    # the inbound resiliency policy, then dead-letters it) or "publish" (the app publishes it to the dead-letter
    # topic itself and answers SUCCESS; RETRY if that publish fails), for a runtime that discards DROPs.
    malformed_entry_action: Literal["publish", "RETRY", "DROP"] = "DROP"
    max_dead_letters: int = 100

    # Optimistic-concurrency retries when two deliveries update the same document at once.
    save_attempts: int = 8
    save_backoff_seconds: float = 0.02
    save_backoff_max_seconds: float = 0.5
    # Keys per bulk state read (several reads run at once).
    bulk_get_chunk: int = 500
    bulk_get_parallelism: int = 8

    # A lost first-insert race on Redis only surfaces after Dapr's own component retries (~6 s), so allow more.
    state_timeout_seconds: float = 20.0
    sidecar_connect_timeout_seconds: float = 2.0
    health_timeout_seconds: float = 2.0

    log_level: str = "INFO"


@lru_cache
def get_settings() -> Settings:
    """The settings read from the environment once per process."""
    return Settings()
