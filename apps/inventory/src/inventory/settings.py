"""Inventory configuration: INVENTORY_* variables, plus the ports the dapr CLI sets without a prefix."""

from functools import lru_cache

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="INVENTORY_", extra="ignore", populate_by_name=True)

    app_host: str = "127.0.0.1"
    app_port: int = Field(default=8103, validation_alias=AliasChoices("INVENTORY_APP_PORT", "APP_PORT"))
    dapr_host: str = "127.0.0.1"
    dapr_http_port: int = Field(
        default=3503, validation_alias=AliasChoices("INVENTORY_DAPR_HTTP_PORT", "DAPR_HTTP_PORT")
    )
    dapr_grpc_port: int = Field(
        default=50031, validation_alias=AliasChoices("INVENTORY_DAPR_GRPC_PORT", "DAPR_GRPC_PORT")
    )
    # Sent as `dapr-api-token` when the sidecar is started with an API token (DAPR_API_TOKEN, set by the CLI).
    dapr_api_token: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("INVENTORY_DAPR_API_TOKEN", "DAPR_API_TOKEN")
    )

    state_store_name: str = "inventory-store"

    # The demo catalogue written at start (first-write per product, so replicas starting together agree).
    seed_demo_catalogue: bool = True
    demo_stock: int = Field(default=1000, ge=0)

    # Optimistic-concurrency retries on one hot product: each round at most one writer wins, so allow many.
    update_attempts: int = Field(default=40, ge=1)
    update_backoff_seconds: float = Field(default=0.01, ge=0)
    update_backoff_max_seconds: float = Field(default=0.25, ge=0)
    # Repairs holds left behind by a crash between an order's decision and its effect on stock; 0 turns it off.
    reconcile_interval_seconds: float = Field(default=60.0, ge=0)

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
