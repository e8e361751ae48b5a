"""Payments configuration: PAYMENTS_* variables, over the kit's settings of a service with a state store that
subscribes to events."""

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from sidecart_kit.events import SubscriberSettings
from sidecart_kit.state import StateStoreSettings


class Settings(StateStoreSettings, SubscriberSettings):
    model_config = SettingsConfigDict(env_prefix="PAYMENTS_")

    state_store: str = "payments-store"

    currency: str = Field(default="EUR", pattern=r"^[A-Z]{3}$")
    starting_credit_cents: int = Field(default=10_000, ge=0)
    max_wallet_entries: int = Field(default=50, ge=1)

    # Calls for one wallet or one order race: more, shorter retries than the kit's.
    update_attempts: int = Field(default=30, ge=1)
    update_backoff_seconds: float = Field(default=0.01, ge=0)
    update_backoff_max_seconds: float = Field(default=0.25, ge=0)
