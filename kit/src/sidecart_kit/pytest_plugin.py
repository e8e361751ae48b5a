"""The kit's test doubles as pytest fixtures, for every service's tests (registered as a pytest11 entry point, so
pytest loads it wherever the kit is installed). A service's conftest.py overrides one by defining a fixture of the
same name (a store with faults of its own, say) and adds `sidecar`, its fake sidecar, for `sidecar_client`."""

from collections.abc import AsyncIterator

import httpx
import pytest

from sidecart_kit.testing import FakeSidecarHealth, FakeSleep, FakeStateStore, SidecarHandler, fake_sidecar_client


@pytest.fixture
def store() -> FakeStateStore:
    """An in-memory state store with Dapr's ETag rules."""
    return FakeStateStore()


@pytest.fixture
def sleep() -> FakeSleep:
    """Records back-off delays instead of sleeping."""
    return FakeSleep()


@pytest.fixture
def sidecar_health() -> FakeSidecarHealth:
    """The sidecar health probe, ready until the test says otherwise."""
    return FakeSidecarHealth()


@pytest.fixture
async def sidecar_client(sidecar: SidecarHandler) -> AsyncIterator[httpx.AsyncClient]:
    """The kit's sidecar client, open on the test's `sidecar` (the service's fake sidecar) instead of a daprd."""
    async with fake_sidecar_client(sidecar) as client:
        yield client
