"""Inventory configuration: INVENTORY_* variables, over the kit's settings of a service with a state store."""

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from sidecart_kit.state import StateStoreSettings


class Settings(StateStoreSettings):
    model_config = SettingsConfigDict(env_prefix="INVENTORY_")

    state_store: str = "inventory-store"

    # The demo catalogue written at start (first-write per product, so replicas starting together agree).
    seed_demo_catalogue: bool = True
    demo_stock: int = Field(default=1000, ge=0)

    # One hot product takes many writers at once: more, shorter retries than the kit's.
    update_attempts: int = Field(default=40, ge=1)
    update_backoff_seconds: float = Field(default=0.01, ge=0)
    update_backoff_max_seconds: float = Field(default=0.25, ge=0)
    # Repairs holds left behind by a crash between an order's decision and its effect on stock; 0 turns it off.
    reconcile_interval_seconds: float = Field(default=60.0, ge=0)
