"""The gateway's settings: GATEWAY_* variables, the dapr CLI's unprefixed ones, and the defaults."""

import pytest

from gateway.settings import Settings


def test_settings_read_the_unprefixed_ports_the_dapr_cli_sets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_PORT", "9001")
    monkeypatch.setenv("DAPR_HTTP_PORT", "3999")
    monkeypatch.setenv("DAPR_GRPC_PORT", "50999")
    monkeypatch.setenv("GATEWAY_JWT_AUDIENCE", "elsewhere")
    monkeypatch.setenv("GATEWAY_SIDECAR_HOST", "10.0.0.7")
    settings = Settings()
    assert (settings.app_port, settings.dapr_http_port, settings.dapr_grpc_port) == (9001, 3999, 50999)
    assert (settings.jwt_audience, settings.sidecar_host) == ("elsewhere", "10.0.0.7")


def test_settings_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("APP_PORT", "DAPR_HTTP_PORT", "DAPR_GRPC_PORT"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings()
    assert (settings.app_port, settings.dapr_http_port, settings.dapr_grpc_port) == (8080, 3500, 50001)
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
