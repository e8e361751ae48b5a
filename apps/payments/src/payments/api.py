"""HTTP routes: the Dapr subscription and its deliveries, wallets, the saga's charge and refund, health, metrics."""

import base64
import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

import structlog
from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from contracts.api import ErrorDetail, ErrorResponse
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
from payments.errors import error_response
from payments.handlers import (
    ChargePayment,
    KeyLocks,
    Payments,
    RefundOutcome,
    RetryPolicy,
    SidecarHealth,
    StateStore,
    StoreUnavailableError,
)
from payments.observability import HttpMetrics
from payments.settings import Settings

log = structlog.get_logger("payments.api")
router = APIRouter()

USER_REGISTERED_ROUTE = "/events/user-registered"
UNHANDLED_EVENT_ROUTE = "/events/unhandled"


async def get_app_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_store(request: Request) -> StateStore:
    store: StateStore = request.app.state.store
    return store


async def get_sidecar_health(request: Request) -> SidecarHealth:
    health: SidecarHealth = request.app.state.sidecar_health
    return health


async def get_metrics(request: Request) -> HttpMetrics:
    metrics: HttpMetrics = request.app.state.metrics
    return metrics


SettingsDep = Annotated[Settings, Depends(get_app_settings)]
StoreDep = Annotated[StateStore, Depends(get_store)]
SidecarHealthDep = Annotated[SidecarHealth, Depends(get_sidecar_health)]
MetricsDep = Annotated[HttpMetrics, Depends(get_metrics)]


async def get_locks(request: Request) -> KeyLocks:
    locks: KeyLocks = request.app.state.locks
    return locks


LocksDep = Annotated[KeyLocks, Depends(get_locks)]


async def get_payments(store: StoreDep, settings: SettingsDep, locks: LocksDep) -> Payments:
    return Payments(
        store,
        currency=settings.currency,
        starting_credit_cents=settings.starting_credit_cents,
        max_entries=settings.max_wallet_entries,
        retry=RetryPolicy(
            settings.update_attempts, settings.update_backoff_seconds, settings.update_backoff_max_seconds
        ),
        locks=locks,
    )


PaymentsDep = Annotated[Payments, Depends(get_payments)]

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": description}
    for code, description in {
        402: "Not enough balance (decided once per order)",
        404: "Not found",
        409: "Refused in the order's current state",
        422: "Invalid request",
        503: "The state store is unavailable; retry later",
    }.items()
}


@contextmanager
def _counted(metrics: HttpMetrics, operation: str) -> Iterator[dict[str, str]]:
    """Counts how an operation ended: the outcome the route sets, or the refusal's error code."""
    ending = {"outcome": "ok"}
    try:
        yield ending
    except PaymentsError as exc:
        metrics.operations.labels(operation, _refusal(exc)[1]).inc()
        raise
    except StoreUnavailableError:
        metrics.operations.labels(operation, "unavailable").inc()
        raise
    metrics.operations.labels(operation, ending["outcome"]).inc()


# --- Subscriptions and deliveries (the contract with the sidecar) -----------------------------------------------


@router.get("/dapr/subscribe", tags=["dapr"])
async def subscriptions(settings: SettingsDep) -> list[dict[str, Any]]:
    """The topics this app subscribes to, routed by CloudEvent type (read by the sidecar at start)."""
    return [
        {
            "pubsubname": settings.pubsub_name,
            "topic": UserRegistered.TOPIC,
            "routes": {
                "rules": [
                    {"match": f'event.type == "{UserRegistered.TYPE}"', "path": USER_REGISTERED_ROUTE},
                ],
                # Types this version does not know (a future v2, say) are acknowledged and logged, not lost silently.
                "default": UNHANDLED_EVENT_ROUTE,
            },
            "deadLetterTopic": settings.dead_letter_topic,
        }
    ]


class CloudEvent(BaseModel):
    """The envelope the sidecar delivers; only what this app reads. Unknown attributes are ignored."""

    model_config = ConfigDict(extra="ignore")

    id: str = Field(min_length=1)
    type: str = ""
    source: str = ""
    data: Any = None
    data_base64: str | None = None

    def payload(self) -> Any:
        """The event data, whether the sidecar sent it as JSON, as a JSON string or base64-encoded."""
        if self.data is None and self.data_base64 is not None:
            return json.loads(base64.b64decode(self.data_base64, validate=True))
        if isinstance(self.data, str | bytes):
            return json.loads(self.data)
        return self.data


def _status(outcome: str, status_code: int = 200) -> JSONResponse:
    return JSONResponse({"status": outcome}, status_code=status_code)


def _problems(exc: Exception) -> list[str] | str:
    """What was wrong with an event, without the values (they may be personal data)."""
    if isinstance(exc, ValidationError):
        return [
            f"{'.'.join(str(part) for part in error['loc']) or '<root>'}: {error['type']}"
            for error in exc.errors(include_input=False, include_url=False)
        ]
    return f"{type(exc).__name__}: {exc}"


def _drop(metrics: HttpMetrics, exc: Exception, event_id: str | None) -> JSONResponse:
    # Redelivery cannot fix a malformed event: drop it, loudly.
    log.error("event_dropped_malformed", route=USER_REGISTERED_ROUTE, event_id=event_id, problems=_problems(exc))
    metrics.events.labels(USER_REGISTERED_ROUTE, "dropped").inc()
    return _status("DROP")


@router.post(USER_REGISTERED_ROUTE, tags=["dapr"])
async def on_user_registered(request: Request, payments: PaymentsDep, metrics: MetricsDep) -> JSONResponse:
    """Delivery of `user.registered`: the user's wallet gets the starting credit, once per user."""
    try:
        event = CloudEvent.model_validate_json(await request.body())
    except ValidationError as exc:
        return _drop(metrics, exc, event_id=None)
    try:
        user = UserRegistered.model_validate(event.payload())
    except (ValidationError, ValueError) as exc:
        return _drop(metrics, exc, event_id=event.id)
    log_context = {"event_id": event.id, "event_type": event.type, "user_id": str(user.user_id)}
    try:
        outcome = await payments.grant_starting_credit(user.user_id)
    except StoreUnavailableError as exc:
        log.warning("event_retry", error=str(exc), **log_context)
        metrics.events.labels(USER_REGISTERED_ROUTE, "retry").inc()
        return _status("RETRY", 500)  # any non-2xx makes the sidecar redeliver; the body says why
    log.info("event_handled", outcome=outcome.value, **log_context)
    metrics.events.labels(USER_REGISTERED_ROUTE, outcome.value).inc()
    return _status("SUCCESS")


@router.post(UNHANDLED_EVENT_ROUTE, tags=["dapr"])
async def on_unhandled_event(request: Request, metrics: MetricsDep) -> JSONResponse:
    """Delivery of an event type this version does not handle: acknowledged and logged."""
    raw = await request.body()
    try:
        envelope: Any = json.loads(raw)
    except ValueError:
        envelope = None
    attributes = envelope if isinstance(envelope, dict) else {}
    log.warning(
        "event_type_not_handled",
        event_id=attributes.get("id"),
        event_type=attributes.get("type"),
        topic=attributes.get("topic"),
        source=attributes.get("source"),
    )
    metrics.events.labels(UNHANDLED_EVENT_ROUTE, "ignored").inc()
    return _status("SUCCESS")


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
async def charge(body: ChargeIn, payments: PaymentsDep, metrics: MetricsDep) -> ChargeView:
    """Captures an order's amount from the user's wallet, once (402 insufficient_funds, decided for good)."""
    command = ChargePayment(
        order_id=body.order_id, user_id=body.user_id, amount_cents=body.amount_cents, currency=body.currency
    )
    with _counted(metrics, "charge") as ending:
        decision = await payments.charge(command)
        ending["outcome"] = "captured"
    log.info("charge_captured", order_id=str(body.order_id), amount_cents=body.amount_cents)
    return ChargeView(
        order_id=body.order_id,
        status="captured",
        amount_cents=decision.amount_cents,
        balance_cents=decision.balance_cents,
    )


@router.post("/charges/{order_id}/refund", tags=["charges"], response_model=RefundView, responses=_ERRORS)
async def refund(order_id: UUID, payments: PaymentsDep, metrics: MetricsDep) -> RefundView:
    """Gives a captured charge back once (refunded), or voids an order never charged so it never is (voided)."""
    with _counted(metrics, "refund") as ending:
        outcome = await payments.refund(order_id)
        ending["outcome"] = outcome.value
    log.info("charge_refunded", order_id=str(order_id), outcome=outcome.value)
    status: Literal["refunded", "voided"] = "refunded" if outcome is RefundOutcome.REFUNDED else "voided"
    return RefundView(order_id=order_id, status=status)


# --- Health and metrics ----------------------------------------------------------------------------------------


@router.get("/healthz", tags=["health"])
async def healthz() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


@router.get("/readyz", tags=["health"], responses={503: {"description": "Not ready", "model": ErrorResponse}})
async def readyz(health: SidecarHealthDep, request: Request) -> JSONResponse:
    """Readiness: this app's sidecar is up and its components are ready."""
    if await health.is_ready():
        return JSONResponse({"status": "ready"})
    return error_response(503, "not_ready", "The Dapr sidecar is not ready.", request.state.request_id)


@router.get("/metrics", include_in_schema=False)
async def metrics(http_metrics: MetricsDep) -> Response:
    """Prometheus metrics."""
    return Response(generate_latest(http_metrics.registry), media_type=CONTENT_TYPE_LATEST)


# --- Refusals as HTTP answers ----------------------------------------------------------------------------------


def _refusal(exc: PaymentsError) -> tuple[int, str, str, list[ErrorDetail]]:
    """Status, stable code, message and details for each refusal."""
    match exc:
        case WalletNotFoundError():
            return 404, "wallet_not_found", "The user has no wallet yet.", []
        case InsufficientFundsError():
            detail = ErrorDetail(
                field="amount_cents", reason=f"balance {exc.balance_cents} < amount {exc.amount_cents}"
            )
            return 402, "insufficient_funds", "The wallet's balance does not cover the amount.", [detail]
        case ChargeVoidedError():
            return 409, "charge_voided", "The order was refunded or voided; it is not charged.", []
        case ChargeMismatchError():
            return 409, "charge_mismatch", "The order was charged before to another user or amount.", []
        case CurrencyMismatchError():
            detail = ErrorDetail(field="currency", reason=f"wallets hold {exc.expected}")
            return 422, "currency_mismatch", f"Charges must be in {exc.expected}.", [detail]
    return 409, "conflict", str(exc), []


async def _on_refusal(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, PaymentsError)
    status, code, message, details = _refusal(exc)
    return error_response(status, code, message, request.state.request_id, details)


async def _on_store_unavailable(request: Request, exc: Exception) -> JSONResponse:
    log.warning("store_unavailable", error=str(exc))
    return error_response(
        503,
        "unavailable",
        "Payments cannot be read or changed right now; retry.",
        request.state.request_id,
        headers={"retry-after": "1"},
    )


def install_domain_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(PaymentsError, _on_refusal)
    app.add_exception_handler(StoreUnavailableError, _on_store_unavailable)
