"""Ingest's settings: INGEST_* variables, the dapr CLI's unprefixed ones, and the defaults."""

import pytest

from ingest.settings import Settings


def test_settings_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("APP_PORT", "DAPR_HTTP_PORT", "DAPR_GRPC_PORT", "APP_API_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings()
    assert (settings.app_port, settings.dapr_http_port, settings.dapr_grpc_port) == (8106, 3506, 50061)
    assert (settings.sidecar_timeout_seconds, settings.retry_after_seconds) == (10.0, 2)
    assert (settings.pubsub_name, settings.telemetry_topic, settings.max_events_per_batch) == (
        "pubsub",
        "telemetry",
        1000,
    )
    assert settings.app_api_token is None


def test_settings_read_ingest_and_dapr_cli_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_PORT", "9106")
    monkeypatch.setenv("APP_API_TOKEN", "from-the-sidecar")
    monkeypatch.setenv("INGEST_RETRY_AFTER_SECONDS", "7")
    monkeypatch.setenv("INGEST_SIDECAR_HOST", "10.0.0.6")
    settings = Settings()
    assert (settings.app_port, settings.retry_after_seconds, settings.sidecar_host) == (9106, 7, "10.0.0.6")
    assert settings.app_api_token is not None
    assert settings.app_api_token.get_secret_value() == "from-the-sidecar"
