"""Notifications configuration: NOTIFICATIONS_* variables on top of the kit's settings (which also read the ports
and tokens the dapr CLI sets without a prefix)."""

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from sidecart_kit.events import SubscriberSettings
from sidecart_kit.state import StateStoreSettings


class Settings(StateStoreSettings, SubscriberSettings):
    model_config = SettingsConfigDict(env_prefix="NOTIFICATIONS_")

    # A lost first-insert race on Redis only surfaces after Dapr's own component retries (~6 s), so allow more.
    sidecar_timeout_seconds: float = Field(default=20.0, gt=0)

    state_store: str = "notifications-store"

    max_notices_per_user: int = 100
    max_remembered_events_per_user: int = 500
