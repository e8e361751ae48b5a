"""Use cases: place an order (idempotently), look orders up, and the saga's steps (the workflow's activities).

They reach the outside only through the ports declared here; adapters.py implements them over the sidecar.
"""

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol
from uuid import UUID, uuid4

from contracts.orders import OrderCancelled, OrderCompleted
from orders.domain import (
    IdempotencyClaim,
    IdempotencyKeyReusedError,
    Line,
    Order,
    OrderNotFoundError,
    OrderStatus,
    Product,
    RequestedLine,
    StepName,
    StepRecord,
    StepStatus,
    UnknownSkuError,
    key_digest,
    price_lines,
    request_fingerprint,
    short,
)
from orders.saga import Finish, Outcome, SagaInput, StepResult
from sidecart_kit.locks import KeyedLocks
from sidecart_kit.logs import get_logger
from sidecart_kit.state import OutcomeUnknownError, StoreUnavailableError
from sidecart_kit.tracing import current_traceparent

log = get_logger(__name__)

# Rounds of read-modify-write under an ETag before giving up (each round re-reads what changed).
_WRITE_ROUNDS = 5


class ParticipantUnavailableError(StoreUnavailableError):
    """inventory or payments did not answer, answered 5xx, or Dapr could not reach it: transient."""


class ParticipantRefusedError(Exception):
    """inventory or payments refused the request (a 4xx with a stable code): final, retrying cannot help."""

    def __init__(self, status: int, code: str, message: str = "") -> None:
        super().__init__(f"{status} {code}: {message}" if message else f"{status} {code}")
        self.status = status
        self.code = code
        self.message = message


# --- ports ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredOrder:
    order: Order
    etag: str


@dataclass(frozen=True)
class StoredIndex:
    """A user's order ids, newest first, with the ETag they were read at (None: no index stored yet)."""

    order_ids: tuple[UUID, ...]
    etag: str | None


class OrderRepository(Protocol):
    async def get_claim(self, user_id: UUID, digest: str) -> IdempotencyClaim | None: ...

    async def create_claim(self, user_id: UUID, digest: str, claim: IdempotencyClaim) -> bool:
        """First write wins: True when this call made the claim, False when one already existed."""
        ...

    async def get_order(self, order_id: UUID) -> StoredOrder | None: ...

    async def create_order(self, order: Order) -> bool:
        """First write wins: True when this call created the order, False when it already existed."""
        ...

    async def save_order(self, order: Order, etag: str) -> bool:
        """Saves only over the version read at `etag`; False when it changed since."""
        ...

    async def finish_order(self, order: Order, event: OrderCompleted | OrderCancelled, etag: str) -> bool:
        """Saves the final order and its event in one outbox transaction, only over `etag`; False on a conflict."""
        ...

    async def get_orders(self, order_ids: Sequence[UUID]) -> list[Order]:
        """The orders that exist among `order_ids` (missing ones are left out)."""
        ...

    async def get_index(self, user_id: UUID) -> StoredIndex: ...

    async def save_index(self, user_id: UUID, order_ids: Sequence[UUID], etag: str | None) -> bool:
        """Saves only over `etag` (None: only if no index exists); False when that did not hold."""
        ...


@dataclass(frozen=True)
class Reservation:
    lines: tuple[Line, ...]
    total_cents: int
    currency: str


class Inventory(Protocol):
    async def get_product(self, sku: str) -> Product | None: ...

    async def reserve(self, order_id: UUID, lines: Sequence[RequestedLine]) -> Reservation: ...

    async def commit(self, order_id: UUID) -> None: ...

    async def release(self, order_id: UUID) -> None: ...


class Payments(Protocol):
    async def charge(self, order_id: UUID, user_id: UUID, amount_cents: int, currency: str) -> int:
        """Captures the amount; returns the captured amount in cents."""
        ...

    async def refund(self, order_id: UUID) -> str:
        """Refunds (or voids, when there is nothing to refund); returns which."""
        ...


# The runtime status of an instance that exists but has not run yet.
NOT_YET_RUN = "PENDING"


class Workflows(Protocol):
    async def runtime_status(self, order_id: UUID) -> str | None:
        """The instance's runtime status (PENDING, RUNNING, COMPLETED, ...); None when there is no instance."""
        ...

    async def start(self, order_id: UUID, saga: SagaInput) -> None: ...

    async def wake(self, order_id: UUID) -> None:
        """Sends the instance an event it does not wait for: the engine runs it again, from its saved state."""
        ...


def utc_now() -> datetime:
    return datetime.now(UTC)


# --- placing and reading orders ------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlaceOrder:
    user_id: UUID
    idempotency_key: str
    lines: tuple[RequestedLine, ...]


@dataclass(frozen=True)
class StartTiming:
    """How a retried request decides that an order's workflow was never started (see Order.start_is_overdue)."""

    grace: timedelta = timedelta(seconds=15)
    wait: timedelta = timedelta(seconds=1)
    poll_seconds: float = 0.25


class Orders:
    """Accepts orders exactly once per Idempotency-Key, and serves them back to their owner."""

    def __init__(
        self,
        repository: OrderRepository,
        inventory: Inventory,
        workflows: Workflows,
        *,
        index_limit: int = 100,
        timing: StartTiming | None = None,
        on_placed: Callable[[Order], None] = lambda _: None,
        clock: Callable[[], datetime] = utc_now,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._repository = repository
        self._inventory = inventory
        self._workflows = workflows
        self._index_limit = index_limit
        self._timing = timing or StartTiming()
        self._on_placed = on_placed
        self._clock = clock
        self._sleep = sleep
        self._woken: dict[UUID, datetime] = {}

    async def place(self, command: PlaceOrder) -> Order:
        """The order for this key: created and started the first time, the same one on every retry.

        Each step is safe to repeat, and a retry finishes whatever a crashed request left undone:
        claim `idempotency:{user}:{sha256(key)}` (first write wins) → order doc (first write wins) →
        index → start the workflow (instance id = order id).
        """
        digest = key_digest(command.idempotency_key)
        fingerprint = request_fingerprint(command.lines)
        for _ in range(_WRITE_ROUNDS):
            claim = await self._repository.get_claim(command.user_id, digest)
            if claim is not None:
                if claim.request_hash != fingerprint:
                    raise IdempotencyKeyReusedError
                return await self._resume(claim.order_id, command)
            order = await self._new_order(uuid4(), command)
            claim = IdempotencyClaim(order_id=order.id, request_hash=fingerprint, claimed_at=order.created_at)
            if await self._repository.create_claim(command.user_id, digest, claim):
                log.info("order_claimed", order_id=str(order.id), user_id=str(command.user_id))
                self._on_placed(order)  # once per order: a retry with the same key finds the claim above
                return await self._create(order)
            # Another request with this key claimed it first: follow its claim.
        raise StoreUnavailableError("the idempotency claim kept changing")

    async def get(self, user_id: UUID, order_id: UUID) -> Order:
        """The order; reading one whose saga should have begun long ago also repairs its start (see `_repair_start`)."""
        stored = await self._repository.get_order(order_id)
        if stored is None or stored.order.user_id != user_id:
            raise OrderNotFoundError(str(order_id))
        order = stored.order
        if order.status is OrderStatus.PENDING and order.start_is_overdue(self._clock(), self._timing.grace):
            return await self._repair_start(stored)
        return order

    async def list_orders(self, user_id: UUID) -> list[Order]:
        """The user's latest orders, newest first."""
        index = await self._repository.get_index(user_id)
        found = await self._repository.get_orders(index.order_ids)
        mine = [order for order in found if order.user_id == user_id]
        return sorted(mine, key=lambda order: order.created_at, reverse=True)

    async def _new_order(self, order_id: UUID, command: PlaceOrder) -> Order:
        products = await self._products(command.lines)
        lines, total, currency = price_lines(command.lines, products)
        return Order.place(
            order_id=order_id,
            user_id=command.user_id,
            lines=lines,
            total_cents=total,
            currency=currency,
            now=self._clock(),
        )

    async def _products(self, lines: Sequence[RequestedLine]) -> dict[str, Product]:
        """The catalogue entry of every sku, checked before anything is claimed or started."""
        found = await asyncio.gather(*(self._inventory.get_product(line.sku) for line in lines))
        unknown = [position for position, product in enumerate(found) if product is None]
        if unknown:
            raise UnknownSkuError(unknown)
        return {line.sku: product for line, product in zip(lines, found, strict=True) if product is not None}

    async def _create(self, order: Order) -> Order:
        """This request holds the claim: create the order doc; whoever creates it starts the workflow."""
        if not await self._repository.create_order(order):
            return await self._resume(order.id, None)
        await self._start(order)
        await self._add_to_index(order)
        return order

    async def _resume(self, order_id: UUID, command: PlaceOrder | None) -> Order:
        """A retry (or a concurrent twin): finish what the first request may have left undone."""
        stored = await self._repository.get_order(order_id)
        if stored is None:
            if command is None:
                raise StoreUnavailableError(f"order {order_id} vanished while being created")
            # The first request died between the claim and the order doc: create it now.
            return await self._create(await self._new_order(order_id, command))
        await self._add_to_index(stored.order)
        return await self._ensure_started(stored)

    async def _ensure_started(self, stored: StoredOrder) -> Order:
        deadline = self._clock() + self._timing.wait
        while True:
            order = stored.order
            if order.status is not OrderStatus.PENDING:
                return order  # the saga has run a step: it exists
            status = await self._workflows.runtime_status(order.id)
            now = self._clock()
            overdue = order.start_is_overdue(now, self._timing.grace)
            if status is not None:
                if status == NOT_YET_RUN and overdue:
                    await self._wake(order.id)
                return order
            if overdue:
                taken = await self._take_over_start(stored, now)
                if taken is not None:
                    return taken
            elif now >= deadline:
                # Its creator may still be starting it; starting it here too could run the saga twice.
                raise StoreUnavailableError(f"order {order.id} is being started")
            else:
                await self._sleep(self._timing.poll_seconds)
            again = await self._repository.get_order(order.id)
            if again is None:
                raise StoreUnavailableError(f"order {order.id} vanished")
            stored = again

    async def _take_over_start(self, stored: StoredOrder, now: datetime) -> Order | None:
        """Starts the saga of an order whose start is overdue, under the order's ETag so that only one request does
        it; None when another one got there first."""
        taken = stored.order.with_workflow_requested(now)
        if not await self._repository.save_order(taken, stored.etag):
            return None
        log.warning("order_saga_start_taken_over", order_id=str(taken.id))
        await self._start(taken)
        return taken

    async def _repair_start(self, stored: StoredOrder) -> Order:
        """Read repair for an order still pending long after its saga was requested: a start that never happened
        is taken over, and an instance that exists but never ran is woken. The second happens when the app dies
        while daprd creates the instance: daprd 1.18 can then run the instance's start reminder before the instance
        is saved, find nothing, drop the reminder, and save it afterwards with nothing left to run it (seen when
        the crash tests kill the app mid-start). Best effort: the reader gets the order either way."""
        order = stored.order
        try:
            status = await self._workflows.runtime_status(order.id)
            if status is None:
                return await self._take_over_start(stored, self._clock()) or order
            if status == NOT_YET_RUN:
                await self._wake(order.id)
        except StoreUnavailableError as error:
            log.warning("order_start_not_repaired", order_id=str(order.id), error=str(error))
        return order

    async def _wake(self, order_id: UUID) -> None:
        """Wakes an instance at most once per grace period: it may simply be waiting for a disconnected worker."""
        now = self._clock()
        woken_at = self._woken.get(order_id)
        if woken_at is not None and now - woken_at < self._timing.grace:
            return
        self._woken = {key: at for key, at in self._woken.items() if now - at < self._timing.grace}
        self._woken[order_id] = now
        await self._workflows.wake(order_id)
        log.warning("order_saga_woken", order_id=str(order_id))

    async def _start(self, order: Order) -> None:
        try:
            await self._workflows.start(order.id, _saga_input(order))
        except StoreUnavailableError as error:
            if not isinstance(error, OutcomeUnknownError):
                await self._abandon_start(order.id)
            raise
        log.info("order_saga_started", order_id=str(order.id))

    async def _abandon_start(self, order_id: UUID) -> None:
        """Best effort: tells retries that no start is in flight, so the next one need not wait out the grace."""
        try:
            stored = await self._repository.get_order(order_id)
            if stored is not None and stored.order.status is OrderStatus.PENDING:
                await self._repository.save_order(stored.order.with_start_abandoned(self._clock()), stored.etag)
        except StoreUnavailableError as error:
            log.warning("order_start_not_abandoned", order_id=str(order_id), error=str(error))

    async def _add_to_index(self, order: Order) -> None:
        for _ in range(_WRITE_ROUNDS):
            index = await self._repository.get_index(order.user_id)
            if order.id in index.order_ids:
                return
            ids = (order.id, *index.order_ids)[: self._index_limit]
            try:
                if await self._repository.save_index(order.user_id, ids, index.etag):
                    return
            except StoreUnavailableError:
                # Some stores (Redis) report a lost insert-only race as a failure, not a conflict: if an
                # index exists now, it was a race, so read again; otherwise the store is really failing.
                if index.etag is not None or (await self._repository.get_index(order.user_id)).etag is None:
                    raise
        raise StoreUnavailableError(f"the order index of {order.user_id} kept changing")


def _saga_input(order: Order) -> SagaInput:
    return SagaInput(
        order_id=order.id,
        user_id=order.user_id,
        lines=tuple(RequestedLine(line.sku, line.quantity) for line in order.lines),
        traceparent=current_traceparent(),
    )


# --- the saga's steps ----------------------------------------------------------------------------------------


class SagaObserver(Protocol):
    def saga_finished(self, order: Order) -> None: ...


class SagaSteps:
    """The activities of the order saga. Each is idempotent, keyed by the order id, and records its outcome on
    the order doc (ETag updates). Business refusals come back as results; anything transient raises, and the
    workflow's retry policy decides how often to try again.
    """

    def __init__(
        self,
        repository: OrderRepository,
        inventory: Inventory,
        payments: Payments,
        *,
        locks: KeyedLocks,
        observer: SagaObserver | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._repository = repository
        self._inventory = inventory
        self._payments = payments
        self._locks = locks
        self._observer = observer
        self._clock = clock

    async def reserve_stock(self, saga: SagaInput) -> StepResult:
        if await self._begin(saga, OrderStatus.RESERVING) is None:
            return StepResult(Outcome.ALREADY_FINAL)
        try:
            reservation = await self._inventory.reserve(saga.order_id, saga.lines)
        except ParticipantRefusedError as refusal:
            return await self._refused(saga, StepName.RESERVE_STOCK, refusal)
        detail = f"reserved, {reservation.total_cents} {reservation.currency}"
        await self._update(
            saga.order_id,
            lambda order, now: order.priced(
                reservation.lines, reservation.total_cents, reservation.currency, now
            ).record([StepRecord(StepName.RESERVE_STOCK, StepStatus.SUCCEEDED, now, detail)], now),
        )
        return StepResult(Outcome.SUCCEEDED, total_cents=reservation.total_cents, currency=reservation.currency)

    async def charge_payment(self, saga: SagaInput) -> StepResult:
        if saga.total_cents is None or saga.currency is None:
            raise ValueError("charge_payment needs the total the reservation returned")
        if await self._begin(saga, OrderStatus.CHARGING) is None:
            return StepResult(Outcome.ALREADY_FINAL)
        try:
            captured = await self._payments.charge(saga.order_id, saga.user_id, saga.total_cents, saga.currency)
        except ParticipantRefusedError as refusal:
            return await self._refused(saga, StepName.CHARGE_PAYMENT, refusal)
        return await self._succeeded(saga, StepName.CHARGE_PAYMENT, f"captured {captured} {saga.currency}")

    async def confirm(self, saga: SagaInput) -> StepResult:
        if await self._begin(saga, None) is None:
            return StepResult(Outcome.ALREADY_FINAL)
        try:
            await self._inventory.commit(saga.order_id)
        except ParticipantRefusedError as refusal:
            return await self._refused(saga, StepName.CONFIRM, refusal)
        return await self._succeeded(saga, StepName.CONFIRM, "stock committed")

    async def release_stock(self, saga: SagaInput) -> StepResult:
        if await self._begin(saga, None) is None:
            return StepResult(Outcome.ALREADY_FINAL)
        try:
            await self._inventory.release(saga.order_id)
        except ParticipantRefusedError as refusal:
            log.error("compensation_refused", order_id=str(saga.order_id), step="release_stock", code=refusal.code)
            return await self._refused(saga, StepName.RELEASE_STOCK, refusal)
        return await self._succeeded(saga, StepName.RELEASE_STOCK, "released")

    async def refund_payment(self, saga: SagaInput) -> StepResult:
        if await self._begin(saga, None) is None:
            return StepResult(Outcome.ALREADY_FINAL)
        try:
            outcome = await self._payments.refund(saga.order_id)
        except ParticipantRefusedError as refusal:
            log.error("compensation_refused", order_id=str(saga.order_id), step="refund_payment", code=refusal.code)
            return await self._refused(saga, StepName.REFUND_PAYMENT, refusal)
        return await self._succeeded(saga, StepName.REFUND_PAYMENT, outcome)

    async def finish_order(self, saga: SagaInput) -> StepResult:
        """The final status and its event, in one outbox transaction; a no-op once the order is final.

        Dapr's outbox publishes even when the transaction then fails on an existing key, so the status is
        checked first, and twin executions in this process are serialised.
        """
        finish = saga.finish
        if finish is None:
            raise ValueError("finish_order needs the final status")
        async with self._locks.hold(str(saga.order_id)):
            for _ in range(_WRITE_ROUNDS):
                stored = await self._load(saga.order_id)
                if stored.order.status.is_final:
                    return StepResult(Outcome.ALREADY_FINAL)
                now = saga.at or self._clock()
                final = _finished(stored.order.record(saga.failures, now), finish, now)
                if await self._repository.finish_order(final, final.final_event(), stored.etag):
                    log.info(
                        "order_finished",
                        order_id=str(final.id),
                        status=final.status.value,
                        reason=None if final.reason is None else final.reason.value,
                    )
                    if self._observer is not None:
                        self._observer.saga_finished(final)
                    return StepResult(Outcome.SUCCEEDED)
        raise StoreUnavailableError(f"order {saga.order_id} kept changing while being finished")

    async def _begin(self, saga: SagaInput, status: OrderStatus | None) -> Order | None:
        """Records earlier failures and the status this step works in; None when the order has ended."""

        def step_in(order: Order, now: datetime) -> Order:
            recorded = order.record(saga.failures, now)
            return recorded if status is None else recorded.advance(status, now)

        return await self._update(saga.order_id, step_in)

    async def _succeeded(self, saga: SagaInput, step: StepName, detail: str) -> StepResult:
        await self._update(
            saga.order_id, lambda order, now: order.record([StepRecord(step, StepStatus.SUCCEEDED, now, detail)], now)
        )
        return StepResult(Outcome.SUCCEEDED)

    async def _refused(self, saga: SagaInput, step: StepName, refusal: ParticipantRefusedError) -> StepResult:
        detail = short(f"{refusal.code}: {refusal.message}" if refusal.message else refusal.code)
        await self._update(
            saga.order_id, lambda order, now: order.record([StepRecord(step, StepStatus.FAILED, now, detail)], now)
        )
        log.info("order_step_refused", order_id=str(saga.order_id), step=step.value, code=refusal.code)
        return StepResult(Outcome.REFUSED, code=refusal.code, detail=short(refusal.message))

    async def _load(self, order_id: UUID) -> StoredOrder:
        stored = await self._repository.get_order(order_id)
        if stored is None:
            # The order doc is written before its workflow starts: a missing one is a bug, not a race.
            raise RuntimeError(f"order {order_id} has a workflow but no order doc")
        return stored

    async def _update(self, order_id: UUID, change: Callable[[Order, datetime], Order]) -> Order | None:
        """Read-modify-write under the ETag; None (and nothing written) when the order has ended."""
        for _ in range(_WRITE_ROUNDS):
            stored = await self._load(order_id)
            if stored.order.status.is_final:
                return None
            changed = change(stored.order, self._clock())
            if changed == stored.order or await self._repository.save_order(changed, stored.etag):
                return changed
        raise StoreUnavailableError(f"order {order_id} kept changing")


def _finished(order: Order, finish: Finish, now: datetime) -> Order:
    if finish.status is OrderStatus.COMPLETED:
        return order.complete(now)
    if finish.reason is None:
        raise ValueError("a cancellation needs a reason")
    return order.cancel(finish.reason, finish.detail, now)
