"""Test doubles every service's unit tests use: an in-memory state store with Dapr's ETag rules, a sidecar client
over an httpx.MockTransport, the sidecar health probe, and settings read from an environment the test names; and the
checks every service runs the same way: crashes at every write, endless write conflicts, the probe routes. No
network, nothing patched. (sidecart_kit.pytest_plugin hands the doubles to tests as fixtures.)"""

import asyncio
import copy
import os
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Protocol, TypeVar
from unittest import mock

import httpx
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from sidecart_kit.sidecar import ServiceSettings, create_sidecar_client
from sidecart_kit.state import ConcurrencyConflictError, ContentionError, StoreUnavailableError, Versioned
from sidecart_kit.tracing import record_spans_with

SettingsT = TypeVar("SettingsT", bound=ServiceSettings)
UseCase = TypeVar("UseCase")

SidecarHandler = (
    Callable[[httpx.Request], httpx.Response] | Callable[[httpx.Request], Coroutine[None, None, httpx.Response]]
)


def fake_sidecar_client(handler: SidecarHandler, settings: ServiceSettings | None = None) -> httpx.AsyncClient:
    """The kit's sidecar client, answered by `handler` instead of a sidecar (paths are /v1.0/...)."""
    return create_sidecar_client(settings or ServiceSettings(), httpx.MockTransport(handler))


def settings_from_environment(settings_class: type[SettingsT], environment: Mapping[str, str]) -> SettingsT:
    """`settings_class` as read from exactly `environment`: nothing set in the shell that runs the tests leaks in."""
    with mock.patch.dict(os.environ, environment, clear=True):
        return settings_class()


class SimulatedCrash(BaseException):
    """The process dies between two writes (BaseException, so no handler can swallow it)."""


class FakeStateStore:
    """An in-memory state store that enforces ETags like Dapr's first-write concurrency.

    - `interleave`: yield to the event loop before each read and write, so concurrent calls really interleave.
    - `available`: False simulates an outage of the whole store.
    - `crash_after_writes`: after that many more successful writes, the next write raises SimulatedCrash.
    - `conflicting`: True makes every write lose a race with another writer (ConcurrencyConflictError).
    """

    def __init__(self) -> None:
        self.documents: dict[str, tuple[Any, int]] = {}
        self.interleave = False
        self.available = True
        self.crash_after_writes: int | None = None
        self.conflicting = False
        self.writes = 0
        self.conflicts = 0

    async def _pause(self) -> None:
        if self.interleave:
            await asyncio.sleep(0)
        if not self.available:
            raise StoreUnavailableError("store down")

    async def get(self, key: str) -> Versioned | None:
        await self._pause()
        if key not in self.documents:
            return None
        document, version = self.documents[key]
        return Versioned(copy.deepcopy(document), str(version))

    async def get_many(self, keys: Sequence[str]) -> dict[str, Versioned]:
        await self._pause()
        return {
            key: Versioned(copy.deepcopy(self.documents[key][0]), str(self.documents[key][1]))
            for key in keys
            if key in self.documents
        }

    async def save(self, key: str, document: Any, etag: str | None) -> None:
        await self._pause()
        if self.crash_after_writes is not None:
            if self.crash_after_writes == 0:
                self.crash_after_writes = None
                raise SimulatedCrash(f"crashed before writing {key}")
            self.crash_after_writes -= 1
        stored = self.documents.get(key)
        if self.conflicting or etag != (None if stored is None else str(stored[1])):
            self.conflicts += 1
            raise ConcurrencyConflictError("etag mismatch")
        self.writes += 1
        self.documents[key] = (copy.deepcopy(document), 1 if stored is None else stored[1] + 1)

    async def delete(self, key: str, etag: str | None = None) -> None:
        await self._pause()
        stored = self.documents.get(key)
        if etag is not None and (stored is None or str(stored[1]) != etag):
            raise ConcurrencyConflictError("etag mismatch")
        self.documents.pop(key, None)

    def document(self, key: str) -> Any:
        return self.documents[key][0]


class FakeSleep:
    """Records back-off delays instead of sleeping (but still yields, so other calls run)."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        await asyncio.sleep(0)


class FakeSidecarHealth:
    """The sidecar health probe, up or down as the test says."""

    def __init__(self, ready: bool = True) -> None:
        self.ready = ready

    async def is_ready(self) -> bool:
        return self.ready


async def crash_at_every_write(
    prepare: Callable[[FakeStateStore], Awaitable[UseCase]],
    action: Callable[[UseCase], Awaitable[object]],
    recover: Callable[[UseCase], Awaitable[object]],
    check: Callable[[FakeStateStore], None],
    *,
    invariant: Callable[[FakeStateStore], None] = lambda store: None,
) -> int:
    """Runs `action` on the use case `prepare` builds over a fresh store, crashing before its 1st, 2nd, ... write;
    after each crash the store must hold to `invariant`, and again once `recover` has run, when `check` (what the
    recovery must have achieved) must pass too. Returns how many writes the action makes uncrashed."""
    crash_point = 0
    while True:
        store = FakeStateStore()
        use_case = await prepare(store)
        store.crash_after_writes = crash_point
        try:
            await action(use_case)
        except SimulatedCrash:
            pass
        else:
            return crash_point  # the action finished: every write was a crash point
        store.crash_after_writes = None
        invariant(store)
        await recover(use_case)
        invariant(store)
        check(store)
        crash_point += 1


async def backoffs_before_contention(call: Awaitable[object], sleep: FakeSleep) -> int:
    """How many times `call` backed off (on `sleep`) before it gave up with ContentionError; an AssertionError if it
    did not give up."""
    try:
        await call
    except ContentionError:
        return len(sleep.delays)
    raise AssertionError("the call did not give up with ContentionError")


class Readiness(Protocol):
    """A fake whose `ready` says whether the sidecar is (FakeSidecarHealth, or a service's fake sidecar)."""

    ready: bool


def assert_probes_follow_the_sidecar(client: TestClient, sidecar: Readiness) -> None:
    """The app's probe routes are wired to its sidecar: /readyz is ready while `sidecar` is and 503 not_ready (in the
    error shape) once it is not, and /healthz answers ok either way."""
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ready"}
    sidecar.ready = False
    response = client.get("/readyz")
    assert (response.status_code, response.json()["error"]["code"]) == (503, "not_ready")
    assert response.json()["error"]["request_id"] == response.headers["x-request-id"]
    assert (client.get("/healthz").status_code, client.get("/healthz").json()) == (200, {"status": "ok"})


@contextmanager
def recorded_spans() -> Iterator[InMemorySpanExporter]:
    """The kit's spans recorded in memory while the block runs (its finished spans: `.get_finished_spans()`)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    previous = record_spans_with(provider)
    try:
        yield exporter
    finally:
        record_spans_with(previous)
