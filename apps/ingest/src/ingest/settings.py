"""Ingest configuration: INGEST_* variables, plus what the dapr CLI sets without a prefix (APP_PORT, ...)."""

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from contracts.telemetry import TelemetryEvent
from sidecart_kit.events import PubSubSettings


class Settings(PubSubSettings):
    model_config = SettingsConfigDict(env_prefix="INGEST_")

    # A bulk publish of a whole batch (up to 1,000 events) may take longer than the kit's default allows.
    sidecar_timeout_seconds: float = Field(default=10.0, gt=0)

    telemetry_topic: str = TelemetryEvent.TOPIC
    # The CloudEvent `source` of every event ingest publishes.
    event_source: str = "ingest"

    max_body_bytes: int = 1024 * 1024
    max_events_per_batch: int = 1000

    # What a client is told to wait before resending a batch the sidecar could not publish.
    retry_after_seconds: int = 2
