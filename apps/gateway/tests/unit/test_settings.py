"""The gateway's settings: GATEWAY_* variables, the dapr CLI's unprefixed ones, and the defaults."""

from gateway.settings import Settings
from sidecart_kit.testing import settings_from_environment


def test_settings_read_the_unprefixed_ports_the_dapr_cli_sets() -> None:
    dapr_cli = {"APP_PORT": "9001", "DAPR_HTTP_PORT": "3999", "DAPR_GRPC_PORT": "50999"}
    gateway = {"GATEWAY_JWT_AUDIENCE": "elsewhere", "GATEWAY_SIDECAR_HOST": "10.0.0.7"}
    settings = settings_from_environment(Settings, dapr_cli | gateway)
    assert (settings.jwt_audience, settings.sidecar_host) == ("elsewhere", "10.0.0.7")


def test_settings_defaults() -> None:
    settings = settings_from_environment(Settings, {})
    assert settings.sidecar_timeout_seconds == 15.0  # beyond the resiliency policy's 10 s invoke timeout
    assert (settings.jwt_issuer, settings.jwt_audience, settings.jwks_cache_ttl_seconds) == (
        "sidecart-users",
        "sidecart",
        300.0,
    )
    assert (settings.inventory_app_id, settings.payments_app_id, settings.orders_app_id) == (
        "inventory",
        "payments",
        "orders",
    )
    assert (settings.analytics_app_id, settings.max_query_bytes) == ("analytics", 2048)
