"""Gateway configuration: GATEWAY_* variables, plus what the dapr CLI sets without a prefix (APP_PORT, ...)."""

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from gateway.rate_limits import LimitSpecs
from sidecart_kit.sidecar import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="GATEWAY_")

    # /metrics is served here (on app_host), not on the public port.
    metrics_port: int | None = 9280
    # Longer than the resiliency policy's 10 s invoke timeout, so the sidecar's own answer arrives first.
    sidecar_timeout_seconds: float = Field(default=15.0, gt=0)

    users_app_id: str = "users"
    notifications_app_id: str = "notifications"
    inventory_app_id: str = "inventory"
    payments_app_id: str = "payments"
    orders_app_id: str = "orders"
    ingest_app_id: str = "ingest"
    analytics_app_id: str = "analytics"

    jwt_issuer: str = "sidecart-users"
    jwt_audience: str = "sidecart"
    jwt_leeway_seconds: float = 30.0
    jwks_method: str = ".well-known/jwks.json"
    jwks_cache_ttl_seconds: float = 300.0
    # However many tokens name an unknown key, the gateway asks users for its keys at most this often.
    jwks_min_refetch_seconds: float = 5.0

    # Rate limits (the `limits` notation; "a;b" is both). The defaults suit one machine, where every client is
    # 127.0.0.1 and the test suite and benchmarks share that address: set the per-address ones tighter where clients
    # have addresses of their own. The login limit per account and address is what stops password guessing.
    rate_limit_per_address: str = "1000/second"
    rate_limit_per_user: str = "100/second"
    login_limit_per_account_and_address: str = "10/minute"
    login_limit_per_address: str = "600/minute"
    sign_up_limit_per_address: str = "600/minute"
    # A refused login or sign-up is answered this much later: a guesser in a tight loop then sends one guess a
    # second per connection, on an idle coroutine, instead of thousands that take the gateway's CPU from everyone
    # else (`make bench-login-burst`). At most login_hold_back_max_held are held at once; beyond, refusals go at once.
    login_hold_back_seconds: float = Field(default=1.0, ge=0, le=10)
    login_hold_back_max_held: int = Field(default=1000, ge=0)

    def rate_limit_specs(self) -> LimitSpecs:
        return LimitSpecs(
            per_address=self.rate_limit_per_address,
            per_subject=self.rate_limit_per_user,
            login_per_account_and_address=self.login_limit_per_account_and_address,
            login_per_address=self.login_limit_per_address,
            sign_up_per_address=self.sign_up_limit_per_address,
        )

    max_body_bytes: int = 1024 * 1024
    # The telemetry route keeps ingest's own limit, whatever the general one becomes.
    max_event_batch_bytes: int = 1024 * 1024
    # The longest query string the routes that forward one (the analytics reports) accept: longer is 414.
    max_query_bytes: int = 2048

    # Machine clients of POST /api/v1/events send X-API-Key; the valid keys are one comma-separated secret.
    secret_store_name: str = "secretstore"  # noqa: S105 (a component name)
    api_keys_secret_name: str = "ingest-api-keys"  # noqa: S105 (a secret's name)
    api_keys_cache_ttl_seconds: float = 60.0
    # After a failed read of the secret, requests are refused for this long before the store is asked again.
    api_keys_retry_seconds: float = 2.0
