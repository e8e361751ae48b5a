"""One real platform per test session, on the component profile named by PROFILE (default: local): the profile's
servers, placement, scheduler, and every app beside its own daprd."""

import os
import time
from collections.abc import AsyncIterator, Callable, Generator, Iterator
from pathlib import Path

import httpx
import pytest

from devstack.footprint import measure
from devstack.layout import Layout
from devstack.platform_run import Platform
from devstack.profiles import DEFAULT_PROFILE

# Every end-to-end test gets this long unless it says otherwise (pytest.mark.timeout): a wedged platform fails the
# test that met it, with the logs below, instead of hanging the run.
E2E_TIMEOUT_S = 240
_log_marks = pytest.StashKey[tuple[Platform, dict[Path, int]]]()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("e2e") is not None and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(E2E_TIMEOUT_S))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failed or timed-out test's report carries what every app, sidecar and server logged while it ran."""
    report = yield
    marked = item.stash.get(_log_marks, None)
    if report.failed and marked is not None:
        platform, marks = marked
        report.sections.append((f"Captured platform logs {report.when}", platform.logs_since(marks)))
    return report


@pytest.fixture(scope="session")
def profile() -> str:
    return os.environ.get("PROFILE", DEFAULT_PROFILE)


@pytest.fixture(scope="session")
def platform(profile: str, record_testsuite_property: Callable[[str, object], None]) -> Iterator[Platform]:
    started = time.monotonic()
    with Platform(Layout.discover(), profile=profile) as running:
        # For the conformance matrix (make conformance reads the JUnit report): start time and memory (PSS).
        record_testsuite_property("profile", profile)
        record_testsuite_property("platform_start_s", f"{time.monotonic() - started:.1f}")
        record_testsuite_property("platform_pss_mib", f"{sum(p.pss_kib for p in measure(running)) / 1024:.0f}")
        yield running


@pytest.fixture(autouse=True)
def platform_logs(request: pytest.FixtureRequest, platform: Platform) -> None:
    request.node.stash[_log_marks] = (platform, platform.log_marks())


@pytest.fixture(scope="session")
async def gateway(platform: Platform) -> AsyncIterator[httpx.AsyncClient]:
    # Idle connections are dropped after 2 s, before uvicorn closes them (5 s keep-alive): otherwise a request sent
    # on a connection the server is closing at that instant fails with a ReadError, now and then.
    limits = httpx.Limits(keepalive_expiry=2)
    async with httpx.AsyncClient(base_url=platform.gateway_url, timeout=15, limits=limits) as client:
        yield client
