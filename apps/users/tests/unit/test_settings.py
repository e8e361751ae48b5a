"""The environment users reads: USERS_* for its own settings, the dapr CLI's variables without the prefix."""

from datetime import timedelta

import pytest
from pydantic import ValidationError

from sidecart_kit.testing import settings_from_environment
from users.settings import Settings


def test_settings_defaults() -> None:
    settings = settings_from_environment(Settings, {})
    assert (settings.state_store, settings.sidecar_timeout_seconds) == ("users-store", 10.0)


def test_variables_are_read_with_and_without_the_prefix() -> None:
    dapr_cli = {"APP_PORT": "9101", "APP_API_TOKEN": "from-the-cli"}
    users = {"USERS_STATE_STORE": "other-store", "USERS_SIDECAR_TIMEOUT_SECONDS": "3"}

    settings = settings_from_environment(Settings, dapr_cli | users)

    assert (settings.app_port, settings.state_store, settings.sidecar_timeout_seconds) == (9101, "other-store", 3.0)
    assert settings.app_api_token is not None
    assert settings.app_api_token.get_secret_value() == "from-the-cli"


def test_the_default_token_lifetime_is_an_hour() -> None:
    assert timedelta(seconds=Settings().token_ttl_seconds) == timedelta(hours=1)


def test_password_hashing_is_never_set_below_owasps_argon2id_minimum() -> None:
    settings = settings_from_environment(Settings, {})
    minimum = (19 * 1024, 2, 1)
    assert (
        settings.password_hash_memory_kib,
        settings.password_hash_time_cost,
        settings.password_hash_parallelism,
    ) == minimum
    for variable, weaker in (("USERS_PASSWORD_HASH_MEMORY_KIB", "8192"), ("USERS_PASSWORD_HASH_TIME_COST", "1")):
        with pytest.raises(ValidationError):
            settings_from_environment(Settings, {variable: weaker})
