"""The kit's test support: settings read from an environment the test names, and nothing else."""

import os

import pytest
from pydantic_settings import SettingsConfigDict

from sidecart_kit.sidecar import ServiceSettings
from sidecart_kit.testing import settings_from_environment


class DemoSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="DEMO_")

    app_port: int = 8123


def test_settings_are_read_from_the_named_environment_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_PORT", "9999")  # set in the shell: not read
    monkeypatch.setenv("DEMO_LOG_LEVEL", "DEBUG")

    settings = settings_from_environment(DemoSettings, {"DAPR_HTTP_PORT": "3999"})

    assert (settings.app_port, settings.dapr_http_port, settings.log_level) == (8123, 3999, "INFO")
    assert os.environ["APP_PORT"] == "9999"  # the process's environment is as it was
    assert "DAPR_HTTP_PORT" not in os.environ
