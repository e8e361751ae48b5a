"""Use cases: the catalogue, and reserving, releasing and committing an order's stock, each idempotent by order.

Every change is a read-modify-write of ONE document under its ETag, retried on conflict. Multi-line work is a
sequence of such writes that can stop anywhere (crash, timeout, outage); the order's reservation record says
what was decided, and every later call for the order (or the reconciler) finishes what the decision implies:

1. reserve: record `reserving` (or `refused` when a line is short already) -> hold each line on its product,
   tagged with a token new to this round -> move the record to `reserved`, naming the holds it saw. A line
   found short midway moves it to `refused` instead, then the lines held so far are given back.
2. release: move the record to `released` (a tombstone when there was none) -> give back each line's hold.
3. commit: move the record to `committed` -> each hold the record names becomes sold; any other hold of the
   order (taken by a stale duplicate call after the decision) is given back.
"""

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import UUID

from inventory.domain import (
    CATALOGUE_KEY,
    Catalogue,
    DemoProduct,
    HoldOutcome,
    OutOfStockError,
    Product,
    ProductExistsError,
    ProductNotFoundError,
    RequestedLine,
    Reservation,
    ReservationCommittedError,
    ReservationMismatchError,
    ReservationNotFoundError,
    ReservationPendingError,
    ReservationRefusedError,
    ReservationReleasedError,
    ReservationStatus,
    Settlement,
    Shortage,
    plan_reservation,
    product_key,
    reservation_key,
)
from sidecart_kit.logs import get_logger
from sidecart_kit.retry import RetryPolicy
from sidecart_kit.state import (
    ConcurrencyConflictError,
    ContentionError,
    DocumentUpdates,
    StateStore,
)

log = get_logger(__name__)


@dataclass(frozen=True)
class CreateProduct:
    sku: str
    name: str
    price_cents: int
    currency: str
    stock: int


@dataclass(frozen=True)
class ReserveStock:
    order_id: UUID
    lines: tuple[RequestedLine, ...]


# Rounds of "read the decision, act on it": a call needs three (open, hold, answer); races add a few.
_ROUNDS = 10


class Inventory:
    """The catalogue and the stock, under optimistic concurrency on single documents."""

    def __init__(
        self,
        store: StateStore,
        *,
        retry: RetryPolicy,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._store = store
        self._updates = DocumentUpdates(store, retry=retry, sleep=sleep)
        self._clock = clock

    # --- catalogue -------------------------------------------------------------------------------------------

    async def create_product(self, command: CreateProduct) -> Product:
        """Adds a product with its initial stock; ProductExistsError if the sku exists (first write wins)."""
        product = Product.new(command.sku, command.name, command.price_cents, command.currency, command.stock)
        # The index first: a crash between the two writes leaves a listed sku without a product, which the
        # listing skips, never a product nobody can list.
        await self._add_to_catalogue([command.sku])
        try:
            await self._store.save(product_key(command.sku), product.to_document(), None)
        except ConcurrencyConflictError:
            raise ProductExistsError(command.sku) from None
        return product

    async def seed(self, products: Iterable[DemoProduct], stock: int, currency: str = "EUR") -> int:
        """Writes each product that does not exist yet; how many this call created. Safe from several replicas."""
        products = tuple(products)
        await self._add_to_catalogue([product.sku for product in products])
        created = 0
        for demo in products:
            product = Product.new(demo.sku, demo.name, demo.price_cents, currency, stock)
            try:
                await self._store.save(product_key(demo.sku), product.to_document(), None)
                created += 1
            except ConcurrencyConflictError:
                pass  # seeded before, or by another replica just now
        return created

    async def get_product(self, sku: str) -> Product:
        found = await self._store.get(product_key(sku))
        if found is None:
            raise ProductNotFoundError(sku)
        return Product.from_document(found.document)

    async def list_products(self) -> list[Product]:
        """Every listed product, in the order they were added."""
        catalogue = await self._catalogue()
        found = await self._store.get_many([product_key(sku) for sku in catalogue.skus])
        return [
            Product.from_document(found[product_key(sku)].document)
            for sku in catalogue.skus
            if product_key(sku) in found
        ]

    async def _catalogue(self) -> Catalogue:
        found = await self._store.get(CATALOGUE_KEY)
        return Catalogue() if found is None else Catalogue.from_document(found.document)

    async def _add_to_catalogue(self, skus: Sequence[str]) -> None:
        def add(catalogue: Catalogue | None) -> tuple[Catalogue | None, None]:
            return (catalogue or Catalogue()).with_skus(skus), None

        await self._updates.update_model(CATALOGUE_KEY, Catalogue.from_document, add)

    # --- reservations ----------------------------------------------------------------------------------------

    async def reserve(self, command: ReserveStock) -> Reservation:
        """Holds every line for the order, or none. The same answer however often it is asked.

        Returns the reservation (reserved, or committed since); raises OutOfStockError, UnknownSkuError,
        MixedCurrencyError, ReservationReleasedError or ReservationMismatchError.
        """
        written: Reservation | None = None  # what this call wrote last round: no need to read it back
        for _ in range(_ROUNDS):
            reservation = written or await self._reservation(command.order_id)
            if reservation is None:
                written = await self._open(command)
                continue
            if reservation.status is ReservationStatus.RELEASED:
                await self._complete(reservation)
                raise ReservationReleasedError(f"order {command.order_id} was released")
            if not reservation.matches(command.lines):
                raise ReservationMismatchError(f"order {command.order_id} was reserved with other lines")
            match reservation.status:
                case ReservationStatus.RESERVED:
                    return reservation
                case ReservationStatus.COMMITTED:
                    await self._complete(reservation)
                    return reservation
                case ReservationStatus.REFUSED:
                    await self._complete(reservation)
                    raise OutOfStockError(reservation.shortages)
                case ReservationStatus.RESERVING:
                    shortage, hold_tokens = await self._hold_lines(reservation)
                    if shortage is None:
                        written = await self._advance(
                            command.order_id,
                            ReservationStatus.RESERVING,
                            ReservationStatus.RESERVED,
                            hold_tokens=hold_tokens,
                        )
                    else:
                        written = await self._advance(
                            command.order_id, ReservationStatus.RESERVING, ReservationStatus.REFUSED, (shortage,)
                        )
        raise ContentionError(f"the reservation of order {command.order_id} kept changing")

    async def release(self, order_id: UUID) -> Reservation:
        """Gives back whatever the order holds and refuses it from now on (a tombstone if it was never seen)."""
        written: Reservation | None = None
        for _ in range(_ROUNDS):
            reservation = written or await self._reservation(order_id)
            if reservation is None:
                tombstone = Reservation.tombstone(order_id, self._clock())
                try:
                    await self._store.save(reservation_key(order_id), tombstone.to_document(), None)
                except ConcurrencyConflictError:
                    continue  # reserved (or released) just now: decide on what is there
                return tombstone
            match reservation.status:
                case ReservationStatus.COMMITTED:
                    raise ReservationCommittedError(f"order {order_id} is committed")
                case ReservationStatus.RESERVING | ReservationStatus.RESERVED:
                    written = await self._advance(order_id, reservation.status, ReservationStatus.RELEASED)
                case ReservationStatus.RELEASED | ReservationStatus.REFUSED:
                    await self._complete(reservation)
                    return reservation
        raise ContentionError(f"the reservation of order {order_id} kept changing")

    async def commit(self, order_id: UUID) -> Reservation:
        """The order's held units become sold; idempotent."""
        written: Reservation | None = None
        for _ in range(_ROUNDS):
            reservation = written or await self._reservation(order_id)
            if reservation is None:
                raise ReservationNotFoundError(f"order {order_id} has no reservation")
            match reservation.status:
                case ReservationStatus.RESERVING:
                    raise ReservationPendingError(f"the reservation of order {order_id} is not complete")
                case ReservationStatus.RELEASED:
                    raise ReservationReleasedError(f"order {order_id} was released")
                case ReservationStatus.REFUSED:
                    raise ReservationRefusedError(f"the reservation of order {order_id} was refused")
                case ReservationStatus.RESERVED:
                    written = await self._advance(order_id, ReservationStatus.RESERVED, ReservationStatus.COMMITTED)
                case ReservationStatus.COMMITTED:
                    await self._complete(reservation)
                    return reservation
        raise ContentionError(f"the reservation of order {order_id} kept changing")

    async def reconcile(self) -> int:
        """Finishes decisions a crash left half applied: holds of released, refused or committed orders.

        Also gives back holds a stale duplicate call took after the decision. Holds of orders still reserving
        or reserved are left alone: their caller decides. Returns how many orders it completed.
        """
        catalogue = await self._catalogue()
        found = await self._store.get_many([product_key(sku) for sku in catalogue.skus])
        held_orders = {
            order_id for versioned in found.values() for order_id in Product.from_document(versioned.document).holds
        }
        completed = 0
        for order_id in sorted(held_orders):
            reservation = await self._reservation(UUID(order_id))
            if reservation is None:
                log.warning("hold_without_reservation", order_id=order_id)
                continue
            if reservation.settlement is not None:
                await self._complete(reservation)
                completed += 1
                log.info("reservation_reconciled", order_id=order_id, status=reservation.status.value)
        return completed

    async def _reservation(self, order_id: UUID) -> Reservation | None:
        found = await self._store.get(reservation_key(order_id))
        return None if found is None else Reservation.from_document(found.document)

    async def _open(self, command: ReserveStock) -> Reservation | None:
        """Records the first decision for the order; None if another call recorded one first."""
        found = await self._store.get_many([product_key(line.sku) for line in command.lines])
        products = {
            line.sku: Product.from_document(found[product_key(line.sku)].document)
            for line in command.lines
            if product_key(line.sku) in found
        }
        reservation = plan_reservation(command.order_id, command.lines, products, self._clock())
        try:
            await self._store.save(reservation_key(command.order_id), reservation.to_document(), None)
        except ConcurrencyConflictError:
            log.info("reservation_opened_concurrently", order_id=str(command.order_id))
            return None
        return reservation

    async def _hold_lines(self, reservation: Reservation) -> tuple[Shortage | None, dict[str, str]]:
        """Holds each line in turn, under a token new to this round; stops at the first line found short.

        Returns the shortage (None when every line is held) and, per sku, the token of the hold now there.
        """
        order_id = str(reservation.order_id)
        token = uuid.uuid4().hex
        hold_tokens: dict[str, str] = {}
        for line in reservation.lines:
            outcome, available, held_with = await self._hold(line.sku, order_id, line.quantity, token)
            if outcome is HoldOutcome.SHORT:
                return Shortage(line.sku, line.quantity, available), hold_tokens
            hold_tokens[line.sku] = held_with
        return None, hold_tokens

    async def _hold(self, sku: str, order_id: str, quantity: int, token: str) -> tuple[HoldOutcome, int, str]:
        """Holds units of one product for the order: the outcome, the units available before, the hold's token."""

        def hold(product: Product | None) -> tuple[Product | None, tuple[HoldOutcome, int, str]]:
            if product is None:
                raise RuntimeError(f"a reserved product is missing from the store: {sku}")
            outcome, updated = product.hold(order_id, quantity, token)
            held = updated.holds.get(order_id)
            answer = (outcome, product.available, "" if held is None else held.token)
            return (updated if outcome is HoldOutcome.HELD else None), answer

        return await self._updates.update_model(product_key(sku), Product.from_document, hold)

    async def _advance(
        self,
        order_id: UUID,
        expected: ReservationStatus,
        target: ReservationStatus,
        shortages: Sequence[Shortage] = (),
        hold_tokens: Mapping[str, str] | None = None,
    ) -> Reservation | None:
        """Moves the record from `expected` to `target`; None if another call moved it first."""

        def move(current: Reservation | None) -> tuple[Reservation | None, Reservation | None]:
            if current is None or current.status is not expected:
                return None, None
            moved = current.moved_to(target, self._clock(), shortages, hold_tokens)
            return moved, moved

        return await self._updates.update_model(reservation_key(order_id), Reservation.from_document, move)

    async def _complete(self, reservation: Reservation) -> None:
        """Applies a final decision to every line's product: holds are sold or given back (idempotent).

        A commit sells only the holds the reservation saw; a hold taken later by a stale duplicate call is
        given back.
        """
        settlement = reservation.settlement
        if settlement is None:
            return
        for line in reservation.lines:
            await self._settle(line.sku, str(reservation.order_id), settlement, reservation.hold_tokens.get(line.sku))

    async def _settle(self, sku: str, order_id: str, settlement: Settlement, token: str | None) -> None:
        def settle(product: Product | None) -> tuple[Product | None, None]:
            return (None if product is None else product.settle(order_id, settlement, token)), None

        await self._updates.update_model(product_key(sku), Product.from_document, settle)
