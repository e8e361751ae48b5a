"""The defaults inventory runs with when nothing is set (its ports come from the catalogue, through dapr.yaml)."""

from inventory.settings import Settings
from sidecart_kit.retry import RetryPolicy
from sidecart_kit.testing import settings_from_environment


def test_settings_defaults() -> None:
    settings = settings_from_environment(Settings, {})
    assert settings.state_store == "inventory-store"
    # A hot product takes many writers at once: more, shorter retries than the kit's.
    assert settings.update_retry() == RetryPolicy(attempts=40, backoff_seconds=0.01, backoff_max_seconds=0.25)
