"""The defaults payments runs with when nothing is set (the ports match dapr.yaml)."""

import pytest

from payments.settings import Settings


def test_settings_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("APP_PORT", "DAPR_HTTP_PORT", "DAPR_GRPC_PORT"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings()
    assert (settings.app_port, settings.dapr_http_port, settings.dapr_grpc_port) == (8104, 3504, 50041)
    assert (settings.state_store, settings.pubsub_name, settings.dead_letter_topic) == (
        "payments-store",
        "pubsub",
        "deadletter",
    )
    assert (settings.starting_credit_cents, settings.currency) == (10_000, "EUR")
