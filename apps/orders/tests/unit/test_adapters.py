"""The Dapr adapters against a fake sidecar (httpx.MockTransport) that answers like daprd 1.18 on Redis."""

import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote
from uuid import uuid4

import httpx
import pytest

from orders.adapters import DaprInventory, DaprOrderRepository, DaprPayments, DaprWorkflows, WorkflowSidecarHealth
from orders.domain import IdempotencyClaim, Line, Order, Reason, RequestedLine, StepName, StepRecord, StepStatus
from orders.handlers import ParticipantRefusedError, ParticipantUnavailableError
from orders.saga import SagaInput
from orders.workflow import EngineStatus
from sidecart_kit.state import OutcomeUnknownError, StoreUnavailableError
from sidecart_kit.testing import fake_sidecar_client

STORE = "orders-store"
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def dapr_error(status: int, code: str) -> httpx.Response:
    return httpx.Response(status, json={"errorCode": code, "message": f"{code} from the fake sidecar"})


def app_error(status: int, code: str, message: str = "") -> httpx.Response:
    return httpx.Response(status, json={"error": {"code": code, "message": message, "details": [], "request_id": "r"}})


class FakeSidecar:
    """The slice of daprd's HTTP API the adapters use, with the Redis state store's answers.

    A first-write save without etag on an existing key fails with 500 ERR_STATE_SAVE (not 409), as daprd does;
    so does a transaction whose ETag is stale (500 ERR_STATE_TRANSACTION).
    """

    def __init__(self) -> None:
        self.state: dict[str, tuple[Any, int]] = {}
        self.transactions: list[list[dict[str, Any]]] = []
        self.requests: list[httpx.Request] = []
        self.invoked: dict[tuple[str, str, str], httpx.Response | Exception] = {}
        self.workflows: dict[str, dict[str, Any]] = {}
        self.failing: set[str] = set()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        match request.method, [unquote(part) for part in request.url.raw_path.decode().split("?")[0].split("/")[2:]]:
            case "GET", ["healthz", "outbound"]:
                return httpx.Response(204)
            case "POST", ["state", store, "transaction"] if store == STORE:
                return self._transaction(json.loads(request.content)["operations"])
            case "POST", ["state", store, "bulk"] if store == STORE:
                keys = json.loads(request.content)["keys"]
                return httpx.Response(
                    200,
                    json=[
                        {"key": key, "data": self.state[key][0], "etag": str(self.state[key][1])}
                        if key in self.state
                        else {"key": key}
                        for key in keys
                    ],
                )
            case "POST", ["state", store] if store == STORE:
                return self._save(json.loads(request.content))
            case "GET", ["state", store, key] if store == STORE:
                if "get" in self.failing:
                    return dapr_error(500, "ERR_STATE_GET")
                if key not in self.state:
                    return httpx.Response(204)
                value, version = self.state[key]
                return httpx.Response(200, json=value, headers={"etag": str(version)})
            case method, ["invoke", app, "method", *path]:
                answer = self.invoked.get((method, app, "/".join(path)), httpx.Response(404, text="no route"))
                if isinstance(answer, Exception):
                    raise answer
                return answer
            case "GET", ["workflows", "dapr", instance]:
                if instance not in self.workflows:
                    return dapr_error(404, "ERR_INSTANCE_ID_NOT_FOUND")
                status = self.workflows[instance].get("status", "RUNNING")
                return httpx.Response(200, json={"instanceID": instance, "runtimeStatus": status})
            case "POST", ["workflows", "dapr", name, "start"]:
                instance = request.url.params["instanceID"]
                self.workflows[instance] = {"name": name, "input": json.loads(request.content)}
                return httpx.Response(202, json={"instanceID": instance})
            case "POST", ["workflows", "dapr", instance, "raiseEvent", event]:
                if instance not in self.workflows:
                    return dapr_error(404, "ERR_INSTANCE_ID_NOT_FOUND")
                self.workflows[instance].setdefault("events", []).append((event, json.loads(request.content)))
                return httpx.Response(202)
        return httpx.Response(404, text="404 page not found")

    def _save(self, items: list[dict[str, Any]]) -> httpx.Response:
        if "save" in self.failing:
            return dapr_error(500, "ERR_STATE_SAVE")
        for item in items:  # first-write, as the kit's store always writes
            if self._stale(item["key"], item.get("etag")):
                return dapr_error(409 if "etag" in item else 500, "ERR_STATE_SAVE")
            self._put(item["key"], item["value"])
        return httpx.Response(204)

    def _transaction(self, operations: list[dict[str, Any]]) -> httpx.Response:
        self.transactions.append(operations)
        requests = [op["request"] for op in operations]
        stored = [request for request in requests if request.get("metadata", {}).get("outbox.projection") != "true"]
        if any("etag" in request and self._stale(request["key"], request["etag"]) for request in stored):
            return dapr_error(500, "ERR_STATE_TRANSACTION")
        for request in stored:
            self._put(request["key"], request["value"])
        return httpx.Response(204)

    def _stale(self, key: str, etag: str | None) -> bool:
        """First-write: without an ETag, only a key that holds nothing may be written; with one, only that version."""
        current = self.state.get(key)
        return current is not None if etag is None else current is None or str(current[1]) != etag

    def _put(self, key: str, value: Any) -> None:
        current = self.state.get(key)
        self.state[key] = (value, current[1] + 1 if current else 1)


@pytest.fixture
def sidecar() -> FakeSidecar:
    return FakeSidecar()


@pytest.fixture
def repository(sidecar_client: httpx.AsyncClient) -> DaprOrderRepository:
    return DaprOrderRepository(sidecar_client, STORE)


def an_order() -> Order:
    return Order.place(
        order_id=uuid4(), user_id=uuid4(), lines=[Line("SKU-A", 2, 500)], total_cents=1000, currency="EUR", now=NOW
    )


# --- state -------------------------------------------------------------------------------------------------


async def test_claims_are_first_write(repository: DaprOrderRepository, sidecar: FakeSidecar) -> None:
    user = uuid4()
    claim = IdempotencyClaim(order_id=uuid4(), request_hash="h1", claimed_at=NOW)
    rival = IdempotencyClaim(order_id=uuid4(), request_hash="h2", claimed_at=NOW)

    assert await repository.create_claim(user, "digest", claim)
    assert not await repository.create_claim(user, "digest", rival)  # Redis: 500 ERR_STATE_SAVE, key exists
    assert await repository.get_claim(user, "digest") == claim
    assert f"idempotency:{user}:digest" in sidecar.state
    assert await repository.get_claim(uuid4(), "digest") is None


async def test_a_failing_store_is_not_mistaken_for_a_lost_race(
    repository: DaprOrderRepository, sidecar: FakeSidecar
) -> None:
    sidecar.failing.add("save")
    with pytest.raises(StoreUnavailableError, match="500 ERR_STATE_SAVE"):
        await repository.create_claim(uuid4(), "digest", IdempotencyClaim(uuid4(), "h", NOW))


async def test_orders_round_trip_with_etags(repository: DaprOrderRepository) -> None:
    order = an_order()
    assert await repository.create_order(order)
    assert not await repository.create_order(order)

    stored = await repository.get_order(order.id)
    assert stored is not None
    assert stored.order == order

    step = StepRecord(StepName.RESERVE_STOCK, StepStatus.SUCCEEDED, NOW, "reserved")
    changed = order.record([step], NOW)
    assert await repository.save_order(changed, stored.etag)
    assert not await repository.save_order(changed, stored.etag)  # stale ETag
    again = await repository.get_order(order.id)
    assert again is not None
    assert again.order.steps == (step,)
    assert await repository.get_order(uuid4()) is None


async def test_finish_saves_the_record_and_its_event_in_one_outbox_transaction(
    repository: DaprOrderRepository, sidecar: FakeSidecar
) -> None:
    order = an_order()
    await repository.create_order(order)
    stored = await repository.get_order(order.id)
    assert stored is not None
    final = order.cancel(Reason.OUT_OF_STOCK, "reserve_stock: out_of_stock", NOW)

    assert await repository.finish_order(final, final.final_event(), stored.etag)

    (operations,) = sidecar.transactions
    record, projection = (op["request"] for op in operations)
    assert record["key"] == projection["key"] == f"order:{order.id}"
    assert record["etag"] == stored.etag
    assert record["metadata"] == {"type": "sidecart.order.cancelled.v1"}
    assert record["value"]["status"] == "cancelled"
    assert projection["metadata"] == {"outbox.projection": "true", "contentType": "application/json"}
    assert projection["value"]["reason"] == "out_of_stock"
    assert projection["value"]["order_id"] == str(order.id)


async def test_a_finish_over_a_stale_etag_is_a_conflict(repository: DaprOrderRepository) -> None:
    order = an_order()
    await repository.create_order(order)
    stored = await repository.get_order(order.id)
    assert stored is not None
    await repository.save_order(order.with_workflow_requested(NOW), stored.etag)
    final = order.complete(NOW)

    assert not await repository.finish_order(final, final.final_event(), stored.etag)


async def test_bulk_get_skips_missing_orders(repository: DaprOrderRepository) -> None:
    first, second = an_order(), an_order()
    await repository.create_order(first)
    await repository.create_order(second)

    found = await repository.get_orders([first.id, uuid4(), second.id])

    assert [order.id for order in found] == [first.id, second.id]
    assert await repository.get_orders([]) == []


async def test_the_index_is_saved_under_its_etag(repository: DaprOrderRepository) -> None:
    user, ids = uuid4(), [uuid4(), uuid4()]
    empty = await repository.get_index(user)
    assert (empty.order_ids, empty.etag) == ((), None)

    assert await repository.save_index(user, ids[:1], None)
    index = await repository.get_index(user)
    assert index.order_ids == (ids[0],)
    assert await repository.save_index(user, ids, index.etag)
    assert not await repository.save_index(user, ids, index.etag)


async def test_keys_are_url_encoded(repository: DaprOrderRepository, sidecar: FakeSidecar) -> None:
    await repository.get_claim(uuid4(), "a/b?c")
    assert "a%2Fb%3Fc" in sidecar.requests[-1].url.raw_path.decode()


# --- inventory and payments ------------------------------------------------------------------------------------


async def test_product_lookup(sidecar_client: httpx.AsyncClient, sidecar: FakeSidecar) -> None:
    sidecar.invoked[("GET", "inventory", "products/SKU-A")] = httpx.Response(
        200, json={"sku": "SKU-A", "name": "A", "price_cents": 500, "currency": "EUR", "available": 3}
    )
    sidecar.invoked[("GET", "inventory", "products/NOPE")] = app_error(404, "product_not_found")
    inventory = DaprInventory(sidecar_client, "inventory")

    product = await inventory.get_product("SKU-A")
    assert product is not None
    assert (product.price_cents, product.currency) == (500, "EUR")
    assert await inventory.get_product("NOPE") is None


async def test_a_reservation_is_read_with_its_prices(sidecar_client: httpx.AsyncClient, sidecar: FakeSidecar) -> None:
    order_id = uuid4()
    sidecar.invoked[("POST", "inventory", "reservations")] = httpx.Response(
        200,
        json={
            "order_id": str(order_id),
            "status": "reserved",
            "lines": [{"sku": "SKU-A", "quantity": 2, "unit_price_cents": 450}],
            "total_cents": 900,
            "currency": "EUR",
        },
    )

    reservation = await DaprInventory(sidecar_client, "inventory").reserve(order_id, [RequestedLine("SKU-A", 2)])

    assert reservation.total_cents == 900
    assert reservation.lines == (Line("SKU-A", 2, 450),)
    sent = json.loads(sidecar.requests[-1].content)
    assert sent == {"order_id": str(order_id), "lines": [{"sku": "SKU-A", "quantity": 2}]}


@pytest.mark.parametrize(
    ("answer", "code"),
    [
        (app_error(409, "out_of_stock", "SKU-A: 1 left"), "out_of_stock"),
        (app_error(409, "reservation_released"), "reservation_released"),
        (app_error(422, "unknown_sku"), "unknown_sku"),
        (dapr_error(403, "ERR_PERMISSION_DENIED"), "ERR_PERMISSION_DENIED"),
    ],
)
async def test_a_4xx_is_a_final_refusal_with_its_code(
    sidecar_client: httpx.AsyncClient, sidecar: FakeSidecar, answer: httpx.Response, code: str
) -> None:
    sidecar.invoked[("POST", "inventory", "reservations")] = answer
    with pytest.raises(ParticipantRefusedError) as refused:
        await DaprInventory(sidecar_client, "inventory").reserve(uuid4(), [RequestedLine("SKU-A", 1)])
    assert refused.value.code == code


async def test_insufficient_funds_is_a_refusal(sidecar_client: httpx.AsyncClient, sidecar: FakeSidecar) -> None:
    sidecar.invoked[("POST", "payments", "charges")] = app_error(402, "insufficient_funds", "balance 100")
    with pytest.raises(ParticipantRefusedError) as refused:
        await DaprPayments(sidecar_client, "payments").charge(uuid4(), uuid4(), 1000, "EUR")
    assert (refused.value.status, refused.value.code, refused.value.message) == (
        402,
        "insufficient_funds",
        "balance 100",
    )


@pytest.mark.parametrize(
    "answer",
    [
        dapr_error(500, "ERR_DIRECT_INVOKE"),
        app_error(503, "unavailable"),
        app_error(429, "too_many_requests"),
        httpx.Response(502, text="bad gateway"),
        httpx.ReadTimeout("timed out"),
        httpx.ConnectError("refused"),
        httpx.Response(200, json={"unexpected": True}),
    ],
)
async def test_transient_failures_are_unavailable(
    sidecar_client: httpx.AsyncClient, sidecar: FakeSidecar, answer: httpx.Response | Exception
) -> None:
    sidecar.invoked[("POST", "payments", "charges")] = answer
    with pytest.raises(ParticipantUnavailableError):
        await DaprPayments(sidecar_client, "payments").charge(uuid4(), uuid4(), 1000, "EUR")


async def test_charge_commit_release_refund_paths(sidecar_client: httpx.AsyncClient, sidecar: FakeSidecar) -> None:
    order_id = uuid4()
    sidecar.invoked[("POST", "payments", "charges")] = httpx.Response(
        200, json={"order_id": str(order_id), "status": "captured", "amount_cents": 1000, "balance_cents": 0}
    )
    sidecar.invoked[("POST", "payments", f"charges/{order_id}/refund")] = httpx.Response(200, json={"status": "voided"})
    sidecar.invoked[("POST", "inventory", f"reservations/{order_id}/commit")] = httpx.Response(
        200, json={"status": "committed"}
    )
    sidecar.invoked[("POST", "inventory", f"reservations/{order_id}/release")] = httpx.Response(
        200, json={"status": "released"}
    )
    payments, inventory = DaprPayments(sidecar_client, "payments"), DaprInventory(sidecar_client, "inventory")

    assert await payments.charge(order_id, uuid4(), 1000, "EUR") == 1000
    assert await payments.refund(order_id) == "voided"
    await inventory.commit(order_id)
    await inventory.release(order_id)


# --- workflows and health -------------------------------------------------------------------------------------


async def test_workflows_start_report_their_status_and_wake(
    sidecar_client: httpx.AsyncClient, sidecar: FakeSidecar
) -> None:
    workflows = DaprWorkflows(sidecar_client, "order_saga")
    order_id = uuid4()
    saga = SagaInput(order_id=order_id, user_id=uuid4(), lines=(RequestedLine("SKU-A", 1),))

    assert await workflows.runtime_status(order_id) is None
    await workflows.start(order_id, saga)

    assert await workflows.runtime_status(order_id) == "RUNNING"
    started = sidecar.workflows[str(order_id)]
    assert started["name"] == "order_saga"
    assert SagaInput.from_json(started["input"]) == saga
    started["status"] = "PENDING"
    assert await workflows.runtime_status(order_id) == "PENDING"
    await workflows.wake(order_id)
    assert started["events"] == [(DaprWorkflows.WAKE_EVENT, {})]


async def test_waking_an_instance_the_sidecar_does_not_know_fails(sidecar_client: httpx.AsyncClient) -> None:
    with pytest.raises(StoreUnavailableError):
        await DaprWorkflows(sidecar_client, "order_saga").wake(uuid4())


async def test_probe(sidecar_client: httpx.AsyncClient) -> None:
    assert await WorkflowSidecarHealth(sidecar_client, 1.0).is_ready()


RUNNING = {"runtimeStatus": "RUNNING", "placement": "placement: connected"}


@pytest.mark.parametrize(
    ("answer", "status"),
    [
        (
            httpx.Response(200, json={"id": "orders", "workflows": {"connectedWorkers": 2}, "actorRuntime": RUNNING}),
            EngineStatus(connected_workers=2, actors_running=True),
        ),
        (
            httpx.Response(200, json={"id": "orders", "workflows": {}, "actorRuntime": RUNNING}),
            EngineStatus(connected_workers=0, actors_running=True),
        ),
        (
            httpx.Response(200, json={"id": "orders", "actorRuntime": {"runtimeStatus": "INITIALIZING"}}),
            EngineStatus(connected_workers=0, actors_running=False),
        ),
        (httpx.Response(200, json={"id": "orders"}), EngineStatus(connected_workers=0, actors_running=False)),
        (httpx.Response(500, text="oops"), None),
        (httpx.Response(200, text="not json"), None),
    ],
)
async def test_the_workflow_engine_from_the_metadata_api(answer: httpx.Response, status: EngineStatus | None) -> None:
    async with fake_sidecar_client(lambda _: answer) as client:
        assert await WorkflowSidecarHealth(client, 1.0).engine_status() == status


async def test_probe_without_a_sidecar() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused")

    async with fake_sidecar_client(refuse) as client:
        assert not await WorkflowSidecarHealth(client, 1.0).is_ready()


@pytest.mark.parametrize(("status", "in_doubt"), [(500, True), (503, True), (400, False)])
async def test_a_failed_workflow_start_says_whether_it_may_have_started(status: int, in_doubt: bool) -> None:
    answer = dapr_error(status, "ERR_START_WORKFLOW")
    async with fake_sidecar_client(lambda _: answer) as client:
        with pytest.raises(StoreUnavailableError) as raised:
            await DaprWorkflows(client, "order_saga").start(
                uuid4(), SagaInput(uuid4(), uuid4(), (RequestedLine("A", 1),))
            )
    assert isinstance(raised.value, OutcomeUnknownError) is in_doubt
