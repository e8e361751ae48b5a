"""Configuration from the environment: ORDERS_* for this service, plus what the dapr CLI sets (sidecart_kit.sidecar)."""

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from sidecart_kit.sidecar import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="ORDERS_", frozen=True)

    # State and workflow calls; above the component timeout in resiliency.yaml (5 s), so the sidecar answers first.
    sidecar_timeout_seconds: float = Field(default=10.0, gt=0)
    # Calls to inventory and payments; Dapr's own invoke timeout and retries (resiliency.yaml) answer first.
    invoke_timeout_seconds: float = 30.0

    state_store: str = "orders-store"
    inventory_app_id: str = "inventory"
    payments_app_id: str = "payments"
    workflow_component: str = "dapr"

    # The per-user index keeps this many of the newest orders (GET /users/{id}/orders lists them).
    index_limit: int = Field(default=100, gt=0)
    # A pending order whose workflow was asked for this long ago may have lost its start to a crash: a retry
    # of the request then starts it. Shorter than this, a retry waits up to `start_wait_seconds`, then 503s.
    start_grace_seconds: float = Field(default=15.0, ge=0)
    start_wait_seconds: float = Field(default=1.0, ge=0)

    # Retries of a forward step (reserve, charge, confirm) on transient failures; then it compensates.
    step_first_retry_seconds: float = Field(default=1.0, gt=0)
    step_max_retry_seconds: float = Field(default=8.0, gt=0)
    step_max_attempts: int = Field(default=5, ge=1)
    # Compensations and the final save must eventually succeed: rounds of retries with a pause between.
    compensation_first_retry_seconds: float = Field(default=1.0, gt=0)
    compensation_max_retry_seconds: float = Field(default=30.0, gt=0)
    compensation_max_attempts: int = Field(default=8, ge=1)
    compensation_pause_seconds: float = Field(default=300.0, gt=0)

    # The workflow worker connects to the sidecar's gRPC port; until then /readyz says not ready. The sidecar's
    # count of connected workers is checked this often, and a worker it lost this long ago is replaced.
    workflow_check_interval_seconds: float = Field(default=2.0, gt=0)
    workflow_reconnect_after_seconds: float = Field(default=4.0, ge=0)
    max_concurrent_activities: int = Field(default=64, gt=0)
