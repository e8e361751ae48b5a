"""The kit's test support: settings read from an environment the test names, crashes at every write, endless
conflicts, and the fixtures its pytest plugin hands out (store, sleep)."""

import os

import pytest
from pydantic_settings import SettingsConfigDict

from sidecart_kit.retry import RetryPolicy
from sidecart_kit.sidecar import ServiceSettings
from sidecart_kit.state import update_document
from sidecart_kit.testing import (
    FakeSleep,
    FakeStateStore,
    backoffs_before_contention,
    crash_at_every_write,
    settings_from_environment,
)


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


async def test_crash_at_every_write_crashes_before_each_write_in_turn() -> None:
    recovered: list[dict[str, object]] = []

    async def prepare(store: FakeStateStore) -> FakeStateStore:
        return store

    async def write_twice(store: FakeStateStore) -> None:
        await store.save("a", 1, None)
        await store.save("b", 2, None)

    async def recover(store: FakeStateStore) -> None:
        recovered.append({key: store.document(key) for key in store.documents})

    writes = await crash_at_every_write(prepare, write_twice, recover, check=lambda store: None)

    assert writes == 2
    assert recovered == [{}, {"a": 1}]


async def test_a_conflicting_store_makes_updates_give_up_after_their_attempts(
    store: FakeStateStore, sleep: FakeSleep
) -> None:
    store.conflicting = True
    write = update_document(store, "k", lambda current: ({"n": 1}, None), retry=RetryPolicy(attempts=3), sleep=sleep)

    assert await backoffs_before_contention(write, sleep) == 3
    assert (store.conflicts, store.documents) == (3, {})
