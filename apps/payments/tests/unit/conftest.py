"""The kit's fakes of the ports (no network, nothing patched)."""

import pytest

from sidecart_kit.testing import FakeSleep, FakeStateStore


@pytest.fixture
def store() -> FakeStateStore:
    return FakeStateStore()


@pytest.fixture
def sleep() -> FakeSleep:
    return FakeSleep()
