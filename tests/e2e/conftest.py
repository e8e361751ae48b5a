"""One real platform per test session: Redis, placement, scheduler, and every app beside its own daprd."""

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from devstack.layout import Layout
from devstack.platform_run import Platform


@pytest.fixture(scope="session")
def platform() -> Iterator[Platform]:
    with Platform(Layout.discover()) as running:
        yield running


@pytest.fixture(scope="session")
async def gateway(platform: Platform) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=platform.gateway_url, timeout=15) as client:
        yield client
