"""HTTP routes: the Dapr subscription and its deliveries, wallets, the saga's charge and refund."""

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from contracts.api import ErrorDetail
from contracts.users import UserRegistered
from payments.domain import (
    CURRENCY_PATTERN,
    ChargeMismatchError,
    ChargeVoidedError,
    CurrencyMismatchError,
    InsufficientFundsError,
    PaymentsError,
    Wallet,
    WalletNotFoundError,
)
from payments.handlers import ChargePayment, CreditOutcome, Payments, RefundOutcome
from payments.settings import Settings
from sidecart_kit.errors import ApiError, DomainErrors, error_responses
from sidecart_kit.events import EventDeliveries, EventRoutes
from sidecart_kit.logs import get_logger
from sidecart_kit.metrics import OperationCounter
from sidecart_kit.service import Service, from_app_state

log = get_logger(__name__)
router = APIRouter()
# Delivered in batches: every sign-up comes here, and one HTTP exchange per batch costs less than one per event.
events = EventRoutes(router, bulk=True)

USER_REGISTERED_ROUTE = "/events/user-registered"

SettingsDep = Annotated[Settings, Depends(from_app_state("settings"))]
PaymentsDep = Annotated[Payments, Depends(from_app_state("payments"))]
OperationsDep = Annotated[OperationCounter, Depends(from_app_state("operations"))]
DeliveriesDep = Annotated[EventDeliveries, Depends(from_app_state("deliveries"))]

_ERRORS = error_responses(
    {
        402: "Not enough balance (decided once per order)",
        404: "Not found",
        409: "Refused in the order's current state",
        422: "Invalid request",
        503: "The state store is unavailable; retry later",
    }
)


# --- Subscriptions and deliveries (the contract with the sidecar) -----------------------------------------------


@events.subscribe(UserRegistered, USER_REGISTERED_ROUTE)
async def on_user_registered(request: Request, payments: PaymentsDep, deliveries: DeliveriesDep) -> JSONResponse:
    """Delivery of `user.registered` (in bulk, or one event): the user's wallet gets the starting credit, once per
    user."""

    async def grant(event_id: str, user: UserRegistered) -> CreditOutcome:
        return await payments.grant_starting_credit(user.user_id)

    body = await request.body()
    return await deliveries.answer(
        USER_REGISTERED_ROUTE, UserRegistered, body, grant, log_context=lambda user: {"user_id": str(user.user_id)}
    )


# --- Wallets ---------------------------------------------------------------------------------------------------


class EntryView(BaseModel):
    kind: Literal["credit", "charge", "refund"]
    order_id: UUID | None
    amount_cents: int
    at: datetime


class WalletView(BaseModel):
    user_id: UUID
    balance_cents: int
    currency: str
    credits_granted_cents: int
    captured_cents: int
    entries: list[EntryView]

    @classmethod
    def of(cls, wallet: Wallet, max_entries: int) -> "WalletView":
        return cls(
            user_id=wallet.user_id,
            balance_cents=wallet.balance_cents,
            currency=wallet.currency,
            credits_granted_cents=wallet.credits_granted_cents,
            captured_cents=wallet.captured_cents,
            entries=[
                EntryView(kind=entry.kind.value, order_id=entry.order_id, amount_cents=entry.amount_cents, at=entry.at)
                for entry in wallet.entries[:max_entries]
            ],
        )


@router.get("/wallets/{user_id}", tags=["wallets"], response_model=WalletView, responses=_ERRORS)
async def get_wallet(user_id: UUID, payments: PaymentsDep, settings: SettingsDep) -> WalletView:
    """A user's balance, totals and latest entries (newest first); 404 until the starting credit arrived."""
    return WalletView.of(await payments.wallet(user_id), settings.max_wallet_entries)


# --- Charges and refunds (the order saga's steps) --------------------------------------------------------------


class ChargeIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    order_id: UUID
    user_id: UUID
    amount_cents: int = Field(ge=0, le=100_000_000_000)
    currency: str = Field(default="EUR", pattern=CURRENCY_PATTERN)


class ChargeView(BaseModel):
    order_id: UUID
    status: Literal["captured"]
    amount_cents: int
    balance_cents: int


class RefundView(BaseModel):
    order_id: UUID
    status: Literal["refunded", "voided"]


@router.post("/charges", tags=["charges"], response_model=ChargeView, responses=_ERRORS)
async def charge(body: ChargeIn, payments: PaymentsDep, operations: OperationsDep) -> ChargeView:
    """Captures an order's amount from the user's wallet, once (402 insufficient_funds, decided for good)."""
    command = ChargePayment(
        order_id=body.order_id, user_id=body.user_id, amount_cents=body.amount_cents, currency=body.currency
    )
    with operations.counted("charge", "captured"):
        decision = await payments.charge(command)
    log.info("charge_captured", order_id=str(body.order_id), amount_cents=body.amount_cents)
    return ChargeView(
        order_id=body.order_id,
        status="captured",
        amount_cents=decision.amount_cents,
        balance_cents=decision.balance_cents,
    )


@router.post("/charges/{order_id}/refund", tags=["charges"], response_model=RefundView, responses=_ERRORS)
async def refund(order_id: UUID, payments: PaymentsDep, operations: OperationsDep) -> RefundView:
    """Gives a captured charge back once (refunded), or voids an order never charged so it never is (voided)."""
    with operations.counted("refund") as ending:
        outcome = await payments.refund(order_id)
        ending.outcome = outcome.value
    log.info("charge_refunded", order_id=str(order_id), outcome=outcome.value)
    status: Literal["refunded", "voided"] = "refunded" if outcome is RefundOutcome.REFUNDED else "voided"
    return RefundView(order_id=order_id, status=status)


# --- Refusals as HTTP answers ----------------------------------------------------------------------------------


def _refusal(exc: Exception) -> ApiError:
    """Status, stable code, message and details for each refusal."""
    match exc:
        case WalletNotFoundError():
            return ApiError(404, "wallet_not_found", "The user has no wallet yet.")
        case InsufficientFundsError():
            detail = ErrorDetail(
                field="amount_cents", reason=f"balance {exc.balance_cents} < amount {exc.amount_cents}"
            )
            return ApiError(402, "insufficient_funds", "The wallet's balance does not cover the amount.", [detail])
        case ChargeVoidedError():
            return ApiError(409, "charge_voided", "The order was refunded or voided; it is not charged.")
        case ChargeMismatchError():
            return ApiError(409, "charge_mismatch", "The order was charged before to another user or amount.")
        case CurrencyMismatchError():
            detail = ErrorDetail(field="currency", reason=f"wallets hold {exc.expected}")
            return ApiError(422, "currency_mismatch", f"Charges must be in {exc.expected}.", [detail])
    return ApiError(409, "conflict", str(exc))


DOMAIN_ERRORS: DomainErrors = {
    PaymentsError: _refusal,
}

SERVICE = Service(
    "payments",
    "Wallets, charges and refunds for the order saga, never a negative balance.",
    routers=[router],
    domain_errors=DOMAIN_ERRORS,
)
