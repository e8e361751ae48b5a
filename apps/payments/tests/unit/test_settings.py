"""The defaults payments runs with when nothing is set (its ports come from the catalogue, through dapr.yaml)."""

from payments.settings import Settings
from sidecart_kit.retry import RetryPolicy
from sidecart_kit.testing import settings_from_environment


def test_settings_defaults() -> None:
    settings = settings_from_environment(Settings, {})
    assert (settings.state_store, settings.pubsub_name, settings.dead_letter_topic) == (
        "payments-store",
        "pubsub",
        "deadletter",
    )
    assert (settings.starting_credit_cents, settings.currency) == (10_000, "EUR")
    assert settings.update_retry() == RetryPolicy(attempts=30, backoff_seconds=0.01, backoff_max_seconds=0.25)
