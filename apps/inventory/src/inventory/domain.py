"""The stock rules: products that hold units per order, and reservations whose status only moves forward.

Plain Python: no FastAPI, no Dapr. The only atomic write a state store is trusted with is one document under an
ETag, so each rule changes one document:

- `product:{sku}` holds the stock of one sku AND, per order, the units it holds (`holds`, each tagged with the
  token of the reservation round that took it). Taking units for an order, selling them or giving them back is
  one conditional write of that document, so `available + reserved + sold == initial` holds after every write,
  and `available` never goes below zero whatever runs concurrently.
- `reservation:{order_id}` records the decision for an order (reserving -> reserved | refused | released;
  reserved -> committed | released). A decision is written BEFORE its effects on the products; the effects are
  idempotent per (product, order), so whoever comes next (a retry, the compensation, the reconciler) completes
  them after a crash.
"""

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

from sidecart_kit.documents import MalformedDocumentError, fields_of, whole_number

CURRENCY_PATTERN = r"^[A-Z]{3}$"
CATALOGUE_KEY = "catalogue"


def product_key(sku: str) -> str:
    return f"product:{sku}"


def reservation_key(order_id: UUID) -> str:
    return f"reservation:{order_id}"


# --- errors the API answers with -------------------------------------------------------------------------------


class InventoryError(Exception):
    """A refusal with a stable meaning (mapped to an HTTP answer by the API)."""


class ProductNotFoundError(InventoryError):
    def __init__(self, sku: str) -> None:
        super().__init__(f"no product {sku!r}")
        self.sku = sku


class ProductExistsError(InventoryError):
    def __init__(self, sku: str) -> None:
        super().__init__(f"product {sku!r} exists")
        self.sku = sku


class UnknownSkuError(InventoryError):
    def __init__(self, skus: Sequence[str]) -> None:
        super().__init__(f"unknown skus: {', '.join(skus)}")
        self.skus = tuple(skus)


class MixedCurrencyError(InventoryError):
    def __init__(self, currencies: Iterable[str]) -> None:
        self.currencies = tuple(sorted(currencies))
        super().__init__(f"the lines are priced in several currencies: {', '.join(self.currencies)}")


class OutOfStockError(InventoryError):
    def __init__(self, shortages: Sequence["Shortage"]) -> None:
        super().__init__("out of stock: " + ", ".join(shortage.sku for shortage in shortages))
        self.shortages = tuple(shortages)


class ReservationNotFoundError(InventoryError):
    pass


class ReservationReleasedError(InventoryError):
    pass


class ReservationCommittedError(InventoryError):
    pass


class ReservationPendingError(InventoryError):
    """Commit of an order whose reservation has not finished (the caller must reserve first)."""


class ReservationRefusedError(InventoryError):
    """Commit of an order whose reservation was refused for stock."""


class ReservationMismatchError(InventoryError):
    """The same order id was reserved before with other lines."""


# --- products --------------------------------------------------------------------------------------------------


class HoldOutcome(StrEnum):
    HELD = "held"  # the units were taken for the order now
    ALREADY_HELD = "already_held"
    SHORT = "short"  # fewer units available than asked


class Settlement(StrEnum):
    SOLD = "sold"
    RELEASED = "released"


@dataclass(frozen=True)
class Hold:
    """Units held for an order, and the token of the reservation round that took them.

    A round never takes the same line twice, and every round has its own token, so a hold taken after the
    order was decided (by a duplicate call that stalled) never carries a token the decision names.
    """

    quantity: int
    token: str


@dataclass(frozen=True)
class Product:
    sku: str
    name: str
    price_cents: int
    currency: str
    initial: int
    available: int
    reserved: int
    sold: int
    holds: Mapping[str, Hold] = field(default_factory=dict)

    @classmethod
    def new(cls, sku: str, name: str, price_cents: int, currency: str, stock: int) -> "Product":
        return cls(sku, name, price_cents, currency, initial=stock, available=stock, reserved=0, sold=0)

    def hold(self, order_id: str, quantity: int, token: str) -> tuple[HoldOutcome, "Product"]:
        """Takes `quantity` units for the order unless it holds some already; never below zero."""
        if order_id in self.holds:
            return HoldOutcome.ALREADY_HELD, self
        if self.available < quantity:
            return HoldOutcome.SHORT, self
        return HoldOutcome.HELD, replace(
            self,
            available=self.available - quantity,
            reserved=self.reserved + quantity,
            holds={**self.holds, order_id: Hold(quantity, token)},
        )

    def settle(self, order_id: str, settlement: Settlement, token: str | None = None) -> "Product | None":
        """The order's hold becomes sold (only the hold taken with `token`) or available again.

        A hold with another token is stale (taken after the decision) and is given back even on a sale.
        None when the order holds nothing here (settled already, or never held).
        """
        hold = self.holds.get(order_id)
        if hold is None:
            return None
        holds = {held_id: held for held_id, held in self.holds.items() if held_id != order_id}
        if settlement is Settlement.SOLD and hold.token == token:
            return replace(self, reserved=self.reserved - hold.quantity, sold=self.sold + hold.quantity, holds=holds)
        return replace(
            self, reserved=self.reserved - hold.quantity, available=self.available + hold.quantity, holds=holds
        )

    def to_document(self) -> dict[str, Any]:
        # The stored document is the record itself, holds included ({order_id: {"quantity", "token"}}).
        return asdict(self)

    @classmethod
    def from_document(cls, document: object) -> "Product":
        with fields_of(document, "product") as fields:
            holds = fields.get("holds", {})
            if not isinstance(holds, Mapping):
                raise MalformedDocumentError("holds is malformed")
            return cls(
                sku=str(fields["sku"]),
                name=str(fields["name"]),
                price_cents=whole_number(fields, "price_cents"),
                currency=str(fields["currency"]),
                initial=whole_number(fields, "initial"),
                available=whole_number(fields, "available"),
                reserved=whole_number(fields, "reserved"),
                sold=whole_number(fields, "sold"),
                holds={
                    str(order_id): Hold(whole_number(hold, "quantity", minimum=1), str(hold["token"]))
                    for order_id, hold in holds.items()
                },
            )


@dataclass(frozen=True)
class Catalogue:
    """The skus in the order they were added: the listing index (a sku without a product is skipped)."""

    skus: tuple[str, ...] = ()

    def with_skus(self, skus: Iterable[str]) -> "Catalogue | None":
        """The catalogue with `skus` added at the end; None when they are all there already."""
        missing = [sku for sku in dict.fromkeys(skus) if sku not in self.skus]
        return Catalogue((*self.skus, *missing)) if missing else None

    def to_document(self) -> dict[str, Any]:
        return {"skus": list(self.skus)}

    @classmethod
    def from_document(cls, document: object) -> "Catalogue":
        if not isinstance(document, Mapping) or not isinstance(document.get("skus"), list):
            raise MalformedDocumentError("the catalogue document is malformed")
        return cls(tuple(str(sku) for sku in document["skus"]))


# --- reservations ----------------------------------------------------------------------------------------------


class ReservationStatus(StrEnum):
    RESERVING = "reserving"  # decided to take the lines; some may not be held yet
    RESERVED = "reserved"  # every line held
    REFUSED = "refused"  # a line was short: nothing is held (or what is held is being given back)
    RELEASED = "released"  # compensated (or a tombstone for an order never reserved)
    COMMITTED = "committed"  # the held units are sold


_FORWARD: Mapping[ReservationStatus, frozenset[ReservationStatus]] = {
    ReservationStatus.RESERVING: frozenset(
        {ReservationStatus.RESERVED, ReservationStatus.REFUSED, ReservationStatus.RELEASED}
    ),
    ReservationStatus.RESERVED: frozenset({ReservationStatus.COMMITTED, ReservationStatus.RELEASED}),
    ReservationStatus.REFUSED: frozenset(),
    ReservationStatus.RELEASED: frozenset(),
    ReservationStatus.COMMITTED: frozenset(),
}


@dataclass(frozen=True)
class RequestedLine:
    sku: str
    quantity: int


@dataclass(frozen=True)
class ReservedLine:
    sku: str
    quantity: int
    unit_price_cents: int


@dataclass(frozen=True)
class Shortage:
    sku: str
    requested: int
    available: int


@dataclass(frozen=True)
class Reservation:
    order_id: UUID
    status: ReservationStatus
    lines: tuple[ReservedLine, ...]
    currency: str
    created_at: datetime
    updated_at: datetime
    shortages: tuple[Shortage, ...] = ()
    # sku -> token of the hold that was seen when the order became reserved: what a commit may sell.
    hold_tokens: Mapping[str, str] = field(default_factory=dict)

    @property
    def total_cents(self) -> int:
        return sum(line.quantity * line.unit_price_cents for line in self.lines)

    @property
    def settlement(self) -> Settlement | None:
        """What the decision means for the units the order holds on each product (None: leave them)."""
        if self.status is ReservationStatus.COMMITTED:
            return Settlement.SOLD
        if self.status in (ReservationStatus.RELEASED, ReservationStatus.REFUSED):
            return Settlement.RELEASED
        return None

    @classmethod
    def tombstone(cls, order_id: UUID, now: datetime) -> "Reservation":
        """A release for an order never reserved: it stays released, so a late reservation is refused."""
        return cls(order_id, ReservationStatus.RELEASED, (), "", now, now)

    def matches(self, requested: Sequence[RequestedLine]) -> bool:
        """Whether a request asks for the lines recorded here (in any order)."""
        return {line.sku: line.quantity for line in self.lines} == {line.sku: line.quantity for line in requested}

    def moved_to(
        self,
        status: ReservationStatus,
        now: datetime,
        shortages: Sequence[Shortage] = (),
        hold_tokens: Mapping[str, str] | None = None,
    ) -> "Reservation":
        if status not in _FORWARD[self.status]:
            raise ValueError(f"a reservation cannot move from {self.status} to {status}")
        return replace(
            self,
            status=status,
            updated_at=now,
            shortages=tuple(shortages) or self.shortages,
            hold_tokens=dict(hold_tokens) if hold_tokens is not None else self.hold_tokens,
        )

    def to_document(self) -> dict[str, Any]:
        return {
            "order_id": str(self.order_id),
            "status": self.status.value,
            "lines": [
                {"sku": line.sku, "quantity": line.quantity, "unit_price_cents": line.unit_price_cents}
                for line in self.lines
            ],
            "currency": self.currency,
            "shortages": [
                {"sku": shortage.sku, "requested": shortage.requested, "available": shortage.available}
                for shortage in self.shortages
            ],
            "hold_tokens": dict(self.hold_tokens),
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
        }

    @classmethod
    def from_document(cls, document: object) -> "Reservation":
        with fields_of(document, "reservation") as fields:
            return cls(
                order_id=UUID(str(fields["order_id"])),
                status=ReservationStatus(fields["status"]),
                lines=tuple(
                    ReservedLine(
                        str(line["sku"]), whole_number(line, "quantity", 1), whole_number(line, "unit_price_cents")
                    )
                    for line in fields["lines"]
                ),
                currency=str(fields["currency"]),
                shortages=tuple(
                    Shortage(str(item["sku"]), whole_number(item, "requested", 1), whole_number(item, "available"))
                    for item in fields.get("shortages", [])
                ),
                hold_tokens={str(sku): str(token) for sku, token in dict(fields.get("hold_tokens", {})).items()},
                created_at=datetime.fromisoformat(str(fields["created_at"])),
                updated_at=datetime.fromisoformat(str(fields["updated_at"])),
            )


def plan_reservation(
    order_id: UUID, requested: Sequence[RequestedLine], products: Mapping[str, Product], now: datetime
) -> Reservation:
    """The first decision for an order: its lines at today's prices, refused outright if a line is short now.

    Raises UnknownSkuError or MixedCurrencyError (nothing is recorded for those: the request is wrong).
    """
    unknown = [line.sku for line in requested if line.sku not in products]
    if unknown:
        raise UnknownSkuError(unknown)
    currencies = {products[line.sku].currency for line in requested}
    if len(currencies) > 1:
        raise MixedCurrencyError(currencies)
    lines = tuple(ReservedLine(line.sku, line.quantity, products[line.sku].price_cents) for line in requested)
    shortages = tuple(
        Shortage(line.sku, line.quantity, products[line.sku].available)
        for line in requested
        if products[line.sku].available < line.quantity
    )
    status = ReservationStatus.REFUSED if shortages else ReservationStatus.RESERVING
    return Reservation(order_id, status, lines, currencies.pop(), now, now, shortages)


@dataclass(frozen=True)
class DemoProduct:
    sku: str
    name: str
    price_cents: int


DEMO_CATALOGUE: tuple[DemoProduct, ...] = (
    DemoProduct("SC-MUG-01", "Sidecart mug", 1200),
    DemoProduct("SC-TEE-01", "Sidecart T-shirt", 2500),
    DemoProduct("SC-HOODIE-01", "Sidecart hoodie", 5900),
    DemoProduct("SC-CAP-01", "Sidecart cap", 1800),
    DemoProduct("SC-STICKERS-01", "Sidecart sticker pack", 500),
)
