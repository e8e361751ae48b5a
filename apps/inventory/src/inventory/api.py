"""HTTP routes: the catalogue, stock administration, the saga's reservation steps."""

from typing import Annotated, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel, ConfigDict, Field, field_validator

from contracts.api import ErrorDetail
from contracts.products import SKU_PATTERN, Sku
from inventory.domain import (
    CURRENCY_PATTERN,
    InventoryError,
    MixedCurrencyError,
    OutOfStockError,
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
    UnknownSkuError,
)
from inventory.handlers import CreateProduct, Inventory, ReserveStock
from sidecart_kit.errors import ApiError, DomainErrors, error_responses
from sidecart_kit.logs import get_logger
from sidecart_kit.metrics import OperationCounter
from sidecart_kit.service import Service, from_app_state

log = get_logger(__name__)
router = APIRouter()


InventoryDep = Annotated[Inventory, Depends(from_app_state("inventory"))]
OperationsDep = Annotated[OperationCounter, Depends(from_app_state("operations"))]

SkuPath = Annotated[str, Path(pattern=SKU_PATTERN, description="1 to 64 of A-Z a-z 0-9 . _ -")]

_ERRORS = error_responses(
    {
        404: "Not found",
        409: "Refused in the order's current state",
        422: "Invalid request",
        503: "The state store is unavailable; retry later",
    }
)


# --- catalogue -------------------------------------------------------------------------------------------------


class ProductView(BaseModel):
    # Read from a Product by attribute name (model_validate): the view names what it shows, nothing is copied by hand.
    model_config = ConfigDict(from_attributes=True)

    sku: str
    name: str
    price_cents: int
    currency: str
    available: int


class ProductList(BaseModel):
    items: list[ProductView]


class StockView(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    sku: str
    initial: int
    available: int
    reserved: int
    sold: int


class NewProduct(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str = Field(min_length=1, max_length=200)
    price_cents: int = Field(ge=0, le=100_000_000)
    currency: str = Field(default="EUR", pattern=CURRENCY_PATTERN)
    stock: int = Field(ge=0, le=1_000_000_000)


@router.get("/products", tags=["catalogue"], response_model=ProductList, responses=_ERRORS)
async def list_products(inventory: InventoryDep) -> ProductList:
    """Every product with the units available now."""
    return ProductList(items=[ProductView.model_validate(product) for product in await inventory.list_products()])


@router.get("/products/{sku}", tags=["catalogue"], response_model=ProductView, responses=_ERRORS)
async def get_product(sku: SkuPath, inventory: InventoryDep) -> ProductView:
    """One product with the units available now."""
    return ProductView.model_validate(await inventory.get_product(sku))


@router.put("/admin/products/{sku}", tags=["admin"], status_code=201, response_model=ProductView, responses=_ERRORS)
async def create_product(sku: SkuPath, body: NewProduct, inventory: InventoryDep) -> ProductView:
    """Creates a product with its initial stock (internal: the gateway never routes /admin)."""
    product = await inventory.create_product(
        CreateProduct(sku=sku, name=body.name, price_cents=body.price_cents, currency=body.currency, stock=body.stock)
    )
    log.info("product_created", sku=sku, stock=body.stock)
    return ProductView.model_validate(product)


@router.get("/admin/products/{sku}/stock", tags=["admin"], response_model=StockView, responses=_ERRORS)
async def get_stock(sku: SkuPath, inventory: InventoryDep) -> StockView:
    """The stock figures of a product: available + reserved + sold == initial."""
    return StockView.model_validate(await inventory.get_product(sku))


# --- reservations (the order saga's steps) ---------------------------------------------------------------------


class LineIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    sku: Sku
    quantity: int = Field(ge=1, le=1_000_000)


class ReserveIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    order_id: UUID
    lines: list[LineIn] = Field(min_length=1, max_length=20)

    @field_validator("lines")
    @classmethod
    def _one_line_per_sku(cls, lines: list[LineIn]) -> list[LineIn]:
        skus = [line.sku for line in lines]
        if len(set(skus)) != len(skus):
            raise ValueError("each sku may appear in one line only")
        return lines


class LineView(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    sku: str
    quantity: int
    unit_price_cents: int


class ReservationView(BaseModel):
    order_id: UUID
    status: Literal["reserved"]
    lines: list[LineView]
    total_cents: int
    currency: str

    @classmethod
    def of(cls, reservation: Reservation) -> "ReservationView":
        return cls(
            order_id=reservation.order_id,
            status="reserved",  # the answer to "reserve": the same after a commit, since it is a replay
            lines=[LineView.model_validate(line) for line in reservation.lines],
            total_cents=reservation.total_cents,
            currency=reservation.currency,
        )


class ReservationStatusView(BaseModel):
    order_id: UUID
    status: Literal["released", "committed"]


@router.post("/reservations", tags=["reservations"], response_model=ReservationView, responses=_ERRORS)
async def reserve(body: ReserveIn, inventory: InventoryDep, operations: OperationsDep) -> ReservationView:
    """Holds every line of an order or none (409 out_of_stock); idempotent by order id."""
    command = ReserveStock(
        order_id=body.order_id, lines=tuple(RequestedLine(line.sku, line.quantity) for line in body.lines)
    )
    with operations.counted("reserve", "reserved"):
        reservation = await inventory.reserve(command)
    log.info("stock_reserved", order_id=str(body.order_id), total_cents=reservation.total_cents)
    return ReservationView.of(reservation)


@router.post(
    "/reservations/{order_id}/release", tags=["reservations"], response_model=ReservationStatusView, responses=_ERRORS
)
async def release(order_id: UUID, inventory: InventoryDep, operations: OperationsDep) -> ReservationStatusView:
    """Gives back the order's units (compensation); for an unknown order, refuses its reservation from now on."""
    with operations.counted("release", "released"):
        await inventory.release(order_id)
    log.info("stock_released", order_id=str(order_id))
    return ReservationStatusView(order_id=order_id, status="released")


@router.post(
    "/reservations/{order_id}/commit", tags=["reservations"], response_model=ReservationStatusView, responses=_ERRORS
)
async def commit(order_id: UUID, inventory: InventoryDep, operations: OperationsDep) -> ReservationStatusView:
    """The order's held units become sold; idempotent."""
    with operations.counted("commit", "committed"):
        await inventory.commit(order_id)
    log.info("stock_committed", order_id=str(order_id))
    return ReservationStatusView(order_id=order_id, status="committed")


# --- refusals as HTTP answers ----------------------------------------------------------------------------------


def _refusal(exc: Exception) -> ApiError:
    """Status, stable code, message and details for each refusal."""
    match exc:
        case ProductNotFoundError():
            return ApiError(404, "product_not_found", f"No product has sku {exc.sku!r}.")
        case ProductExistsError():
            return ApiError(409, "product_exists", f"A product with sku {exc.sku!r} exists already.")
        case UnknownSkuError():
            details = [ErrorDetail(field="lines.sku", reason=f"unknown sku {sku}") for sku in exc.skus]
            return ApiError(422, "unknown_sku", "Some lines name products that do not exist.", details)
        case MixedCurrencyError():
            return ApiError(422, "mixed_currency", "The lines are priced in different currencies.")
        case OutOfStockError():
            details = [
                ErrorDetail(
                    field="lines.sku",
                    reason=f"{shortage.sku}: {shortage.requested} requested, {shortage.available} available",
                )
                for shortage in exc.shortages
            ]
            return ApiError(409, "out_of_stock", "Not enough stock for the order; nothing is held.", details)
        case ReservationNotFoundError():
            return ApiError(404, "reservation_not_found", "The order has no reservation.")
        case ReservationReleasedError():
            return ApiError(409, "reservation_released", "The order's reservation was released.")
        case ReservationCommittedError():
            return ApiError(409, "reservation_committed", "The order's reservation is committed.")
        case ReservationPendingError():
            return ApiError(409, "reservation_pending", "The order's reservation is not complete.")
        case ReservationRefusedError():
            return ApiError(409, "reservation_refused", "The order's reservation was refused for stock.")
        case ReservationMismatchError():
            return ApiError(409, "reservation_mismatch", "The order was reserved before with other lines.")
    return ApiError(409, "conflict", str(exc))


DOMAIN_ERRORS: DomainErrors = {
    InventoryError: _refusal,
}

# /readyz asks app.state.readiness: ready once the demo catalogue is seeded, not as soon as the sidecar is.
SERVICE = Service(
    "inventory",
    "The catalogue and its stock, reserved and released by the order saga, never oversold.",
    routers=[router],
    domain_errors=DOMAIN_ERRORS,
    readiness="readiness",
)
