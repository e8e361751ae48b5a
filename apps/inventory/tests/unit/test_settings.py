"""The defaults inventory runs with when nothing is set (the ports match dapr.yaml)."""

import pytest

from inventory.settings import Settings


def test_settings_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("APP_PORT", "DAPR_HTTP_PORT", "DAPR_GRPC_PORT"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings()
    assert (settings.app_port, settings.dapr_http_port, settings.dapr_grpc_port) == (8103, 3503, 50031)
    assert settings.state_store == "inventory-store"
