"""Ingest configuration: INGEST_* variables, plus the ports the dapr CLI sets without a prefix."""

from functools import lru_cache

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from contracts.telemetry import TelemetryEvent


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="INGEST_", extra="ignore", populate_by_name=True)

    app_host: str = "127.0.0.1"
    app_port: int = Field(default=8106, validation_alias=AliasChoices("INGEST_APP_PORT", "APP_PORT"))
    dapr_host: str = "127.0.0.1"
    dapr_http_port: int = Field(default=3506, validation_alias=AliasChoices("INGEST_DAPR_HTTP_PORT", "DAPR_HTTP_PORT"))
    dapr_grpc_port: int = Field(default=50061, validation_alias=AliasChoices("INGEST_DAPR_GRPC_PORT", "DAPR_GRPC_PORT"))
    # Sent as `dapr-api-token` when the sidecar is started with an API token (DAPR_API_TOKEN, set by the CLI).
    dapr_api_token: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("INGEST_DAPR_API_TOKEN", "DAPR_API_TOKEN")
    )

    pubsub_name: str = "pubsub"
    telemetry_topic: str = TelemetryEvent.TOPIC
    # The CloudEvent `source` of every event ingest publishes.
    event_source: str = "ingest"

    max_body_bytes: int = 1024 * 1024
    max_events_per_batch: int = 1000

    publish_timeout_seconds: float = 10.0
    sidecar_connect_timeout_seconds: float = 2.0
    health_timeout_seconds: float = 2.0
    # What a client is told to wait before resending a batch the sidecar could not publish.
    retry_after_seconds: int = 2

    log_level: str = "INFO"


@lru_cache
def get_settings() -> Settings:
    """The settings read from the environment once per process."""
    return Settings()
