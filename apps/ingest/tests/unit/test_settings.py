"""Ingest's settings: INGEST_* variables, the dapr CLI's unprefixed ones, and the defaults."""

from ingest.settings import Settings
from sidecart_kit.testing import settings_from_environment


def test_settings_defaults() -> None:
    settings = settings_from_environment(Settings, {})
    assert (settings.sidecar_timeout_seconds, settings.retry_after_seconds) == (10.0, 2)
    assert (settings.pubsub_name, settings.telemetry_topic, settings.max_events_per_batch) == (
        "pubsub",
        "telemetry",
        1000,
    )
    assert settings.app_api_token is None


def test_settings_read_ingest_and_dapr_cli_variables() -> None:
    dapr_cli = {"APP_PORT": "9106", "APP_API_TOKEN": "from-the-sidecar"}
    ingest = {"INGEST_RETRY_AFTER_SECONDS": "7", "INGEST_SIDECAR_HOST": "10.0.0.6"}
    settings = settings_from_environment(Settings, dapr_cli | ingest)
    assert (settings.app_port, settings.retry_after_seconds, settings.sidecar_host) == (9106, 7, "10.0.0.6")
    assert settings.app_api_token is not None
    assert settings.app_api_token.get_secret_value() == "from-the-sidecar"
