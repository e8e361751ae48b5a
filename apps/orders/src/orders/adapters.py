"""What orders reaches through its sidecar, over the kit's client: state (the kit's store for single documents, an
outbox transaction for the final status), service invocation of inventory and payments, the workflow API and the
sidecar's health; and the saga metrics, in the app's Prometheus registry.

Plain httpx rather than the Dapr SDK clients: one async client, and the HTTP status codes this module maps
(a refused first-write, an ETag conflict, a participant's 402) stay visible instead of hidden in gRPC errors.
"""

from collections.abc import Sequence
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import quote
from uuid import UUID

import httpx
from prometheus_client import CollectorRegistry, Counter, Histogram
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from contracts.orders import OrderCancelled, OrderCompleted
from orders.domain import IdempotencyClaim, Line, Order, OrderStatus, Product, Reason, RequestedLine, StepRecord
from orders.handlers import (
    ParticipantRefusedError,
    ParticipantUnavailableError,
    Reservation,
    StoredIndex,
    StoredOrder,
)
from orders.saga import SagaInput
from orders.workflow import EngineStatus
from sidecart_kit.sidecar import SidecarHealth
from sidecart_kit.state import (
    FIRST_WRITE,
    NOT_SENT,
    ConcurrencyConflictError,
    DaprStateStore,
    OutcomeUnknownError,
    SidecarError,
    send_to_sidecar,
)

Record = TypeVar("Record", bound=BaseModel)

# An outbox transaction's operation with this metadata is published instead of the state it names, never stored.
_OUTBOX_PROJECTION = {"outbox.projection": "true", "contentType": "application/json"}


def _parse(model: type[Record], data: Any) -> Record:
    try:
        return model.model_validate(data)
    except ValidationError as error:
        # Our own records: a bad one is a bug or corruption, not the caller's fault, so it stays a 500.
        raise RuntimeError(f"a stored {model.__name__} is unreadable") from error


# --- stored records ------------------------------------------------------------------------------------------


class _ClaimRecord(BaseModel):
    model_config = ConfigDict(extra="ignore")

    order_id: UUID
    request_hash: str
    claimed_at: datetime


class _OrderRecord(BaseModel):
    model_config = ConfigDict(extra="ignore")

    order_id: UUID
    user_id: UUID
    status: OrderStatus
    lines: list[Line]
    total_cents: int | None = None
    currency: str | None = None
    steps: list[StepRecord] = []
    reason: Reason | None = None
    detail: str = ""
    created_at: datetime
    updated_at: datetime
    workflow_requested_at: datetime | None = None

    @classmethod
    def of(cls, order: Order) -> "_OrderRecord":
        return cls(
            order_id=order.id,
            user_id=order.user_id,
            status=order.status,
            lines=list(order.lines),
            total_cents=order.total_cents,
            currency=order.currency,
            steps=list(order.steps),
            reason=order.reason,
            detail=order.detail,
            created_at=order.created_at,
            updated_at=order.updated_at,
            workflow_requested_at=order.workflow_requested_at,
        )

    def to_order(self) -> Order:
        return Order(
            id=self.order_id,
            user_id=self.user_id,
            status=self.status,
            lines=tuple(self.lines),
            total_cents=self.total_cents,
            currency=self.currency,
            steps=tuple(self.steps),
            reason=self.reason,
            detail=self.detail,
            created_at=self.created_at,
            updated_at=self.updated_at,
            workflow_requested_at=self.workflow_requested_at,
        )


class _IndexRecord(BaseModel):
    model_config = ConfigDict(extra="ignore")

    order_ids: list[UUID]


def claim_key(user_id: UUID, digest: str) -> str:
    return f"idempotency:{user_id}:{digest}"


def order_key(order_id: UUID) -> str:
    return f"order:{order_id}"


def index_key(user_id: UUID) -> str:
    return f"user-orders:{user_id}"


class DaprOrderRepository:
    """Orders, idempotency claims and per-user indexes in one Dapr state store, whose outbox publishes the
    final event of each order on the `orders` topic.
    """

    def __init__(self, client: httpx.AsyncClient, store: str) -> None:
        self._client = client
        self._state = DaprStateStore(client, store)

    async def get_claim(self, user_id: UUID, digest: str) -> IdempotencyClaim | None:
        found = await self._state.get(claim_key(user_id, digest))
        if found is None:
            return None
        record = _parse(_ClaimRecord, found.document)
        return IdempotencyClaim(
            order_id=record.order_id, request_hash=record.request_hash, claimed_at=record.claimed_at
        )

    async def create_claim(self, user_id: UUID, digest: str, claim: IdempotencyClaim) -> bool:
        record = _ClaimRecord(order_id=claim.order_id, request_hash=claim.request_hash, claimed_at=claim.claimed_at)
        return await self._save(claim_key(user_id, digest), record, etag=None)

    async def get_order(self, order_id: UUID) -> StoredOrder | None:
        found = await self._state.get(order_key(order_id))
        if found is None:
            return None
        return StoredOrder(_parse(_OrderRecord, found.document).to_order(), found.etag or "")

    async def create_order(self, order: Order) -> bool:
        return await self._save(order_key(order.id), _OrderRecord.of(order), etag=None)

    async def save_order(self, order: Order, etag: str) -> bool:
        return await self._save(order_key(order.id), _OrderRecord.of(order), etag=etag)

    async def finish_order(self, order: Order, event: OrderCompleted | OrderCancelled, etag: str) -> bool:
        key = order_key(order.id)
        record = _OrderRecord.of(order).model_dump(mode="json")
        # Both upserted in one transaction: the record, stored under its ETag (its metadata becomes the CloudEvent's
        # type when published), and the projection, published on the outbox topic instead of it, never stored.
        stored = {"key": key, "value": record, "etag": etag, "options": FIRST_WRITE, "metadata": {"type": event.TYPE}}
        projection = {"key": key, "value": event.model_dump(mode="json"), "metadata": _OUTBOX_PROJECTION}
        operations = [{"operation": "upsert", "request": request} for request in (stored, projection)]
        response = await send_to_sidecar(
            self._client, "POST", f"/state/{self._state.name}/transaction", json={"operations": operations}
        )
        if response.is_success:
            return True
        # An ETag mismatch fails the whole transaction (Redis answers 500, not 409): the caller re-reads.
        current = await self._state.get(key)
        if current is not None and current.etag != etag:
            return False
        raise SidecarError("finish order (outbox transaction)", response)

    async def get_orders(self, order_ids: Sequence[UUID]) -> list[Order]:
        keys = [order_key(order_id) for order_id in order_ids]
        found = await self._state.get_many(keys)
        return [_parse(_OrderRecord, found[key].document).to_order() for key in keys if key in found]

    async def get_index(self, user_id: UUID) -> StoredIndex:
        found = await self._state.get(index_key(user_id))
        if found is None:
            return StoredIndex((), None)
        return StoredIndex(tuple(_parse(_IndexRecord, found.document).order_ids), found.etag)

    async def save_index(self, user_id: UUID, order_ids: Sequence[UUID], etag: str | None) -> bool:
        return await self._save(index_key(user_id), _IndexRecord(order_ids=list(order_ids)), etag=etag)

    async def _save(self, key: str, record: BaseModel, *, etag: str | None) -> bool:
        """First-write save: without etag only if `key` is new, with etag only over that version; False when
        another version is stored (a lost race, which the caller resolves by reading again)."""
        try:
            await self._state.save(key, record.model_dump(mode="json"), etag)
        except ConcurrencyConflictError:
            return False
        return True


# --- inventory and payments, through Dapr service invocation -------------------------------------------------


class _ProductBody(BaseModel):
    model_config = ConfigDict(extra="ignore")

    sku: str
    price_cents: int = Field(ge=0)
    currency: str


class _ReservedLine(BaseModel):
    model_config = ConfigDict(extra="ignore")

    sku: str
    quantity: int
    unit_price_cents: int = Field(ge=0)


class _ReservationBody(BaseModel):
    model_config = ConfigDict(extra="ignore")

    lines: list[_ReservedLine]
    total_cents: int = Field(ge=0)
    currency: str


class _ChargeBody(BaseModel):
    model_config = ConfigDict(extra="ignore")

    amount_cents: int


class _RefundBody(BaseModel):
    model_config = ConfigDict(extra="ignore")

    status: str


# Answers that say "try again later": retried by the workflow's retry policy.
_TRANSIENT_STATUSES = frozenset({408, 425, 429})


class _Participant:
    """Calls one app through this app's sidecar (`/v1.0/invoke/{app}/method/...`) and sorts the answers:
    2xx → the body; a 4xx → ParticipantRefusedError with the participant's error code (final);
    5xx, 408/429, Dapr's own invoke errors, timeouts → ParticipantUnavailableError (transient).
    """

    def __init__(self, client: httpx.AsyncClient, app_id: str) -> None:
        self._client = client
        self._app_id = app_id

    async def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        url = f"/invoke/{self._app_id}/method/{path.lstrip('/')}"
        try:
            response = await self._client.request(method, url, json=body)
        except NOT_SENT as error:
            raise ParticipantUnavailableError(
                f"{self._app_id}: sidecar unreachable ({type(error).__name__})"
            ) from error
        except httpx.HTTPError as error:
            raise ParticipantUnavailableError(f"{self._app_id}: no answer ({type(error).__name__})") from error
        if response.is_success:
            try:
                return response.json() if response.content else None
            except ValueError as error:
                raise ParticipantUnavailableError(f"{self._app_id}: answer is not JSON") from error
        code, message = _error_of(response)
        if response.status_code >= 500 or response.status_code in _TRANSIENT_STATUSES:
            raise ParticipantUnavailableError(f"{self._app_id} {method} {path}: {response.status_code} {code}")
        raise ParticipantRefusedError(response.status_code, code, message)


def _error_of(response: httpx.Response) -> tuple[str, str]:
    """(code, message) from a participant's error shape, or from Dapr's own ({"errorCode", "message"})."""
    try:
        body = response.json()
    except ValueError:
        return f"http_{response.status_code}", ""
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and isinstance(error.get("code"), str):
            return error["code"], str(error.get("message") or "")[:300]
        if isinstance(body.get("errorCode"), str):
            return body["errorCode"], str(body.get("message") or "")[:300]
    return f"http_{response.status_code}", ""


class DaprInventory:
    def __init__(self, client: httpx.AsyncClient, app_id: str) -> None:
        self._app = _Participant(client, app_id)

    async def get_product(self, sku: str) -> Product | None:
        try:
            body = await self._app.call("GET", f"products/{quote(sku, safe='')}")
        except ParticipantRefusedError as refusal:
            if refusal.status in (404, 422):
                return None
            raise ParticipantUnavailableError(f"inventory refused a product lookup: {refusal}") from refusal
        product = _answer(_ProductBody, body, "inventory product")
        return Product(sku=sku, price_cents=product.price_cents, currency=product.currency)

    async def reserve(self, order_id: UUID, lines: Sequence[RequestedLine]) -> Reservation:
        body = await self._app.call(
            "POST",
            "reservations",
            {"order_id": str(order_id), "lines": [{"sku": x.sku, "quantity": x.quantity} for x in lines]},
        )
        reservation = _answer(_ReservationBody, body, "inventory reservation")
        return Reservation(
            lines=tuple(Line(x.sku, x.quantity, x.unit_price_cents) for x in reservation.lines),
            total_cents=reservation.total_cents,
            currency=reservation.currency,
        )

    async def commit(self, order_id: UUID) -> None:
        await self._app.call("POST", f"reservations/{order_id}/commit")

    async def release(self, order_id: UUID) -> None:
        await self._app.call("POST", f"reservations/{order_id}/release")


class DaprPayments:
    def __init__(self, client: httpx.AsyncClient, app_id: str) -> None:
        self._app = _Participant(client, app_id)

    async def charge(self, order_id: UUID, user_id: UUID, amount_cents: int, currency: str) -> int:
        body = await self._app.call(
            "POST",
            "charges",
            {"order_id": str(order_id), "user_id": str(user_id), "amount_cents": amount_cents, "currency": currency},
        )
        return _answer(_ChargeBody, body, "payments charge").amount_cents

    async def refund(self, order_id: UUID) -> str:
        body = await self._app.call("POST", f"charges/{order_id}/refund")
        return _answer(_RefundBody, body, "payments refund").status


def _answer(model: type[Record], body: Any, what: str) -> Record:
    try:
        return model.model_validate(body)
    except ValidationError as error:
        # A participant answering 2xx with an unexpected shape: likely a deploy in progress, so retry.
        raise ParticipantUnavailableError(f"{what}: unexpected answer") from error


# --- the workflow engine (Dapr's workflow HTTP API) ----------------------------------------------------------


class DaprWorkflows:
    """Starts, looks up and wakes instances of one workflow. Starting an id that exists RESTARTS it in Dapr 1.18
    (even a running one), so callers look first (`runtime_status`) and start only what does not exist.
    """

    # The event `wake` raises. The saga never waits for it: raising it only makes the engine run the instance.
    WAKE_EVENT = "wake"

    def __init__(self, client: httpx.AsyncClient, workflow: str, component: str = "dapr") -> None:
        self._client = client
        self._workflow = workflow
        self._component = component

    async def runtime_status(self, order_id: UUID) -> str | None:
        response = await send_to_sidecar(self._client, "GET", f"/workflows/{self._component}/{order_id}")
        if response.status_code == httpx.codes.NOT_FOUND:
            return None
        if not response.is_success:
            raise SidecarError("get workflow", response)
        try:
            status = response.json().get("runtimeStatus")
        except (ValueError, AttributeError):
            status = None
        return status if isinstance(status, str) else "UNKNOWN"

    async def wake(self, order_id: UUID) -> None:
        response = await send_to_sidecar(
            self._client,
            "POST",
            f"/workflows/{self._component}/{order_id}/raiseEvent/{self.WAKE_EVENT}",
            json={},
        )
        if not response.is_success:
            raise SidecarError("wake workflow", response)

    async def start(self, order_id: UUID, saga: SagaInput) -> None:
        response = await send_to_sidecar(
            self._client,
            "POST",
            f"/workflows/{self._component}/{self._workflow}/start",
            params={"instanceID": str(order_id)},
            json=saga.to_json(),
        )
        if response.is_success:
            return
        failure = SidecarError("start workflow", response)
        if response.status_code >= 500:
            # The engine may have created the instance before failing: in doubt, so a retry checks first.
            raise OutcomeUnknownError(str(failure)) from failure
        raise failure


class WorkflowSidecarHealth(SidecarHealth):
    """The kit's sidecar health probe, and what the sidecar's metadata says of its workflow engine: how many
    workflow workers it has connected and whether its actor runtime runs."""

    async def engine_status(self) -> EngineStatus | None:
        try:
            response = await self._client.get("/metadata", timeout=self._timeout)
            body = response.json() if response.is_success else None
        except (httpx.HTTPError, ValueError):
            return None
        if not isinstance(body, dict):
            return None
        workflows, actors = body.get("workflows"), body.get("actorRuntime")
        count = workflows.get("connectedWorkers") if isinstance(workflows, dict) else None
        return EngineStatus(
            # Protobuf JSON leaves out a zero count.
            connected_workers=count if isinstance(count, int) else 0,
            actors_running=isinstance(actors, dict) and actors.get("runtimeStatus") == "RUNNING",
        )


# --- business metrics -------------------------------------------------------------------------------------------


class SagaMetrics:
    """Orders placed, how their sagas end (status and reason) and how long an order takes from acceptance to its
    final status."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.placed = Counter(
            "orders_placed",
            "Orders accepted (a retry with the same Idempotency-Key is the same order).",
            registry=registry,
        )
        self.finished = Counter(
            "orders_sagas_finished", "Order sagas that reached a final status.", ["status", "reason"], registry=registry
        )
        self.duration = Histogram(
            "orders_saga_duration_seconds",
            "Time from accepting an order to its final status.",
            ["status"],
            buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800),
            registry=registry,
        )

    def order_placed(self, order: Order) -> None:
        self.placed.inc()

    def saga_finished(self, order: Order) -> None:
        self.finished.labels(order.status.value, order.reason.value if order.reason else "").inc()
        self.duration.labels(order.status.value).observe((order.updated_at - order.created_at).total_seconds())
