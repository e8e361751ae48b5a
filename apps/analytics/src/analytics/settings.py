"""Analytics configuration: ANALYTICS_* variables on top of the kit's settings (which also read the ports and
tokens the dapr CLI sets without a prefix)."""

from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from sidecart_kit.events import SubscriberSettings
from sidecart_kit.state import StateStoreSettings


class Settings(StateStoreSettings, SubscriberSettings):
    model_config = SettingsConfigDict(env_prefix="ANALYTICS_")

    # A lost first-insert race on Redis only surfaces after Dapr's own component retries (~6 s), so allow more.
    sidecar_timeout_seconds: float = Field(default=20.0, gt=0)

    state_store: str = "analytics-store"
    telemetry_dead_letter_topic: str = "telemetry-deadletter"
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
    # How old the documents behind the summary, top-products and funnel reports may be: reports within this age
    # share one read of every retained document instead of one read each (0: every report reads the store).
    report_max_age_seconds: float = Field(default=1.0, ge=0)
