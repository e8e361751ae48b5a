"""The environment orders reads: ORDERS_* for its own settings, the dapr CLI's variables without the prefix."""

import pytest

from orders.settings import Settings


def test_the_defaults_match_dapr_yaml() -> None:
    settings = Settings()
    assert (settings.app_port, settings.dapr_http_port, settings.dapr_grpc_port) == (8105, 3505, 50051)
    assert (settings.sidecar_timeout_seconds, settings.invoke_timeout_seconds) == (10.0, 30.0)


def test_variables_are_read_with_and_without_the_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DAPR_GRPC_PORT", "50999")
    monkeypatch.setenv("ORDERS_SIDECAR_TIMEOUT_SECONDS", "7")  # ORDERS_STATE_TIMEOUT_SECONDS before the kit
    monkeypatch.setenv("ORDERS_INDEX_LIMIT", "10")

    settings = Settings()

    assert (settings.dapr_grpc_port, settings.sidecar_timeout_seconds, settings.index_limit) == (50999, 7.0, 10)
