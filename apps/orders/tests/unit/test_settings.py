"""The environment orders reads: ORDERS_* for its own settings, the dapr CLI's variables without the prefix."""

from orders.settings import Settings
from sidecart_kit.testing import settings_from_environment


def test_settings_defaults() -> None:
    settings = settings_from_environment(Settings, {})
    assert (settings.sidecar_timeout_seconds, settings.invoke_timeout_seconds) == (10.0, 30.0)


def test_variables_are_read_with_and_without_the_prefix() -> None:
    dapr_cli = {"DAPR_GRPC_PORT": "50999"}
    # ORDERS_SIDECAR_TIMEOUT_SECONDS was ORDERS_STATE_TIMEOUT_SECONDS before the kit.
    orders = {"ORDERS_SIDECAR_TIMEOUT_SECONDS": "7", "ORDERS_INDEX_LIMIT": "10"}

    settings = settings_from_environment(Settings, dapr_cli | orders)

    assert (settings.dapr_grpc_port, settings.sidecar_timeout_seconds, settings.index_limit) == (50999, 7.0, 10)
