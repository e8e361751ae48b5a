"""The defaults payments runs with when nothing is set (the ports match dapr.yaml)."""

from payments.settings import Settings
from sidecart_kit.testing import settings_from_environment


def test_settings_defaults() -> None:
    settings = settings_from_environment(Settings, {})
    assert (settings.app_port, settings.dapr_http_port, settings.dapr_grpc_port) == (8104, 3504, 50041)
    assert (settings.state_store, settings.pubsub_name, settings.dead_letter_topic) == (
        "payments-store",
        "pubsub",
        "deadletter",
    )
    assert (settings.starting_credit_cents, settings.currency) == (10_000, "EUR")
