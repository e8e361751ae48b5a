"""Fakes of the orders service's ports and the fixtures that wire them in: no network, nothing patched.

Tests receive the fakes through fixtures (with --import-mode=importlib a test cannot import this module).
"""

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from uuid import UUID

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from contracts.orders import OrderCancelled, OrderCompleted
from orders.domain import IdempotencyClaim, Line, Order, Product, RequestedLine
from orders.handlers import (
    Orders,
    ParticipantRefusedError,
    ParticipantUnavailableError,
    Reservation,
    SagaSteps,
    StartTiming,
    StoredIndex,
    StoredOrder,
)
from orders.main import create_app
from orders.saga import SagaInput
from orders.settings import Settings
from sidecart_kit.locks import KeyedLocks
from sidecart_kit.state import OutcomeUnknownError, StoreUnavailableError
from sidecart_kit.testing import FakeSidecarHealth

START = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


@dataclass
class FakeClock:
    """The handlers' clock and sleep: sleeping advances the clock at once, so waiting out a grace period takes no
    real time (the kit's FakeSleep only records the delays)."""

    now: datetime = START
    slept: list[float] = field(default_factory=list)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.advance(seconds)
        await asyncio.sleep(0)


@dataclass
class FakeOrderRepository:
    """An in-memory store with Dapr's first-write and ETag rules; each call yields, so concurrent calls interleave.

    `fail_next` makes the named operations raise StoreUnavailableError once each (a crash or an outage there).
    """

    claims: dict[tuple[UUID, str], IdempotencyClaim] = field(default_factory=dict)
    orders: dict[UUID, tuple[Order, int]] = field(default_factory=dict)
    indexes: dict[UUID, tuple[tuple[UUID, ...], int]] = field(default_factory=dict)
    events: list[OrderCompleted | OrderCancelled] = field(default_factory=list)
    fail_next: list[str] = field(default_factory=list)
    # Called before a save_order lands, so a test can change the order "concurrently".
    before_save: Callable[[], None] | None = None

    async def _step(self, operation: str) -> None:
        await asyncio.sleep(0)
        if operation in self.fail_next:
            self.fail_next.remove(operation)
            raise StoreUnavailableError(f"{operation} failed (fake)")

    async def get_claim(self, user_id: UUID, digest: str) -> IdempotencyClaim | None:
        await self._step("get_claim")
        return self.claims.get((user_id, digest))

    async def create_claim(self, user_id: UUID, digest: str, claim: IdempotencyClaim) -> bool:
        await self._step("create_claim")
        if (user_id, digest) in self.claims:
            return False
        self.claims[(user_id, digest)] = claim
        return True

    async def get_order(self, order_id: UUID) -> StoredOrder | None:
        await self._step("get_order")
        found = self.orders.get(order_id)
        return StoredOrder(found[0], str(found[1])) if found else None

    async def create_order(self, order: Order) -> bool:
        await self._step("create_order")
        if order.id in self.orders:
            return False
        self.orders[order.id] = (order, 1)
        return True

    async def save_order(self, order: Order, etag: str) -> bool:
        await self._step("save_order")
        if self.before_save is not None:
            hook, self.before_save = self.before_save, None
            hook()
        current = self.orders.get(order.id)
        if current is None or str(current[1]) != etag:
            return False
        self.orders[order.id] = (order, current[1] + 1)
        return True

    async def finish_order(self, order: Order, event: OrderCompleted | OrderCancelled, etag: str) -> bool:
        await self._step("finish_order")
        current = self.orders.get(order.id)
        if current is None or str(current[1]) != etag:
            return False
        self.orders[order.id] = (order, current[1] + 1)
        self.events.append(event)
        return True

    async def get_orders(self, order_ids: Sequence[UUID]) -> list[Order]:
        await self._step("get_orders")
        return [self.orders[order_id][0] for order_id in order_ids if order_id in self.orders]

    async def get_index(self, user_id: UUID) -> StoredIndex:
        await self._step("get_index")
        found = self.indexes.get(user_id)
        return StoredIndex(found[0], str(found[1])) if found else StoredIndex((), None)

    async def save_index(self, user_id: UUID, order_ids: Sequence[UUID], etag: str | None) -> bool:
        await self._step("save_index")
        current = self.indexes.get(user_id)
        if (etag is None) != (current is None) or (current is not None and str(current[1]) != etag):
            return False
        self.indexes[user_id] = (tuple(order_ids), current[1] + 1 if current else 1)
        return True

    def order(self, order_id: UUID) -> Order:
        return self.orders[order_id][0]

    def put(self, order: Order) -> None:
        version = self.orders[order.id][1] + 1 if order.id in self.orders else 1
        self.orders[order.id] = (order, version)


CATALOGUE = {
    "SKU-A": Product("SKU-A", 500, "EUR"),
    "SKU-B": Product("SKU-B", 1250, "EUR"),
    "SKU-USD": Product("SKU-USD", 999, "USD"),
}


@dataclass
class FakeInventory:
    """The catalogue above; `refuse` / `unavailable` make the next call of that name fail that way."""

    products: dict[str, Product] = field(default_factory=lambda: dict(CATALOGUE))
    calls: list[tuple[str, UUID | str]] = field(default_factory=list)
    refuse: dict[str, ParticipantRefusedError] = field(default_factory=dict)
    unavailable: set[str] = field(default_factory=set)

    def _check(self, name: str) -> None:
        if name in self.unavailable:
            raise ParticipantUnavailableError(f"{name}: 503 (fake)")
        if name in self.refuse:
            raise self.refuse[name]

    async def get_product(self, sku: str) -> Product | None:
        await asyncio.sleep(0)
        self.calls.append(("get_product", sku))
        self._check("get_product")
        return self.products.get(sku)

    async def reserve(self, order_id: UUID, lines: Sequence[RequestedLine]) -> Reservation:
        self.calls.append(("reserve", order_id))
        self._check("reserve")
        priced = tuple(Line(x.sku, x.quantity, self.products[x.sku].price_cents) for x in lines)
        total = sum(x.quantity * (x.unit_price_cents or 0) for x in priced)
        return Reservation(lines=priced, total_cents=total, currency="EUR")

    async def commit(self, order_id: UUID) -> None:
        self.calls.append(("commit", order_id))
        self._check("commit")

    async def release(self, order_id: UUID) -> None:
        self.calls.append(("release", order_id))
        self._check("release")


@dataclass
class FakePayments:
    calls: list[tuple[str, UUID, int | None]] = field(default_factory=list)
    refuse: dict[str, ParticipantRefusedError] = field(default_factory=dict)
    unavailable: set[str] = field(default_factory=set)

    def _check(self, name: str) -> None:
        if name in self.unavailable:
            raise ParticipantUnavailableError(f"{name}: 503 (fake)")
        if name in self.refuse:
            raise self.refuse[name]

    async def charge(self, order_id: UUID, user_id: UUID, amount_cents: int, currency: str) -> int:
        self.calls.append(("charge", order_id, amount_cents))
        self._check("charge")
        return amount_cents

    async def refund(self, order_id: UUID) -> str:
        self.calls.append(("refund", order_id, None))
        self._check("refund")
        return "refunded"


@dataclass
class FakeWorkflows:
    """The workflow engine's instances: their status, `start` (which, like Dapr, restarts an existing one) and
    `wake` (which runs an instance that never ran)."""

    instances: dict[UUID, SagaInput] = field(default_factory=dict)
    starts: list[UUID] = field(default_factory=list)
    # Instances saved but never run (their start was lost): PENDING until woken.
    stranded: set[UUID] = field(default_factory=set)
    woken: list[UUID] = field(default_factory=list)
    # The next start fails: "refused" (the sidecar said no, nothing started) or "unknown" (a timeout).
    fail_next_start: str | None = None

    async def runtime_status(self, order_id: UUID) -> str | None:
        await asyncio.sleep(0)
        if order_id not in self.instances:
            return None
        return "PENDING" if order_id in self.stranded else "RUNNING"

    async def wake(self, order_id: UUID) -> None:
        await asyncio.sleep(0)
        self.woken.append(order_id)
        self.stranded.discard(order_id)

    async def start(self, order_id: UUID, saga: SagaInput) -> None:
        await asyncio.sleep(0)
        if self.fail_next_start is not None:
            unknown, self.fail_next_start = self.fail_next_start == "unknown", None
            raise (OutcomeUnknownError if unknown else StoreUnavailableError)("start workflow failed (fake)")
        self.starts.append(order_id)
        self.instances[order_id] = saga


@dataclass
class FakeWorkerState:
    connected: bool = True


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def repository() -> FakeOrderRepository:
    return FakeOrderRepository()


@pytest.fixture
def inventory() -> FakeInventory:
    return FakeInventory()


@pytest.fixture
def payments() -> FakePayments:
    return FakePayments()


@pytest.fixture
def workflows() -> FakeWorkflows:
    return FakeWorkflows()


@pytest.fixture
def orders(
    repository: FakeOrderRepository,
    inventory: FakeInventory,
    workflows: FakeWorkflows,
    clock: FakeClock,
) -> Orders:
    return Orders(
        repository,
        inventory,
        workflows,
        index_limit=3,
        timing=StartTiming(grace=timedelta(seconds=15), wait=timedelta(seconds=3), poll_seconds=0.25),
        clock=clock,
        sleep=clock.sleep,
    )


@pytest.fixture
def steps(
    repository: FakeOrderRepository, inventory: FakeInventory, payments: FakePayments, clock: FakeClock
) -> SagaSteps:
    return SagaSteps(repository, inventory, payments, locks=KeyedLocks(), clock=clock)


@pytest.fixture
def worker_state() -> FakeWorkerState:
    return FakeWorkerState()


@pytest.fixture
def make_app(
    orders: Orders, sidecar_health: FakeSidecarHealth, worker_state: FakeWorkerState
) -> Callable[[Settings], FastAPI]:
    """The real app with fakes on app.state, where its lifespan would put the real ones (it dials the sidecar, so it
    never runs)."""

    def make(settings: Settings) -> FastAPI:
        application = create_app(settings)
        application.state.orders = orders
        application.state.sidecar_health = sidecar_health
        application.state.workflow_worker = worker_state
        return application

    return make


@pytest.fixture
def client(make_app: Callable[[Settings], FastAPI]) -> TestClient:
    # Not entered as a context manager: that would run the lifespan, which needs a sidecar.
    return TestClient(make_app(Settings()), raise_server_exceptions=False)
