"""The defaults inventory runs with when nothing is set (the ports match dapr.yaml)."""

from inventory.settings import Settings
from sidecart_kit.testing import settings_from_environment


def test_settings_defaults() -> None:
    settings = settings_from_environment(Settings, {})
    assert (settings.app_port, settings.dapr_http_port, settings.dapr_grpc_port) == (8103, 3503, 50031)
    assert settings.state_store == "inventory-store"
