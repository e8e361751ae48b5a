"""The orchestrator driven step by step with a fake workflow context, the activity shells, and the worker's
lifecycle (connect in the background once the sidecar answers; stop cleanly).
"""

import asyncio
import threading
from collections.abc import AsyncIterator, Generator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest
from dapr.ext.workflow import TaskFailedError
from dapr.ext.workflow._durabletask.internal import protos

from orders.domain import RequestedLine
from orders.handlers import SagaSteps
from orders.saga import Outcome, SagaInput, StepResult
from orders.settings import Settings
from orders.workflow import (
    EngineStatus,
    SagaPolicies,
    WorkflowWorker,
    _activity,
    build_runtime,
    order_saga,
    workflow_now,
)

NOW = datetime(2026, 1, 1, tzinfo=UTC)
POLICIES = SagaPolicies(step="step-policy", compensation="compensation-policy", pause=timedelta(minutes=5))


@dataclass
class FakeWorkflowContext:
    """Returns a description of each task instead of scheduling it; the test answers them."""

    instance_id: str = "order-1"
    current_utc_datetime: datetime = NOW
    is_replaying: bool = False

    def call_activity(self, name: str, *, input: dict[str, Any], retry_policy: Any) -> tuple[str, str, Any, Any]:  # noqa: A002 (the SDK's name)
        return ("activity", name, input, retry_policy)

    def create_timer(self, fire_at: timedelta) -> tuple[str, timedelta]:
        return ("timer", fire_at)


def payload() -> dict[str, Any]:
    return SagaInput(order_id=uuid4(), user_id=uuid4(), lines=(RequestedLine("SKU-A", 2),)).to_json()


def failure(message: str) -> Exception:
    error: Exception = TaskFailedError(
        f"Activity task #1 failed: {message}", protos.TaskFailureDetails(errorMessage=message, errorType="X")
    )
    return error


def drive(answers: dict[str, list[Any]]) -> tuple[list[tuple[Any, ...]], dict[str, Any]]:
    """Runs the orchestrator; each activity answers from its list (an Exception is thrown in, as the SDK does),
    then succeeds. Returns the tasks it asked for and the workflow's output.
    """
    tasks: list[tuple[Any, ...]] = []
    saga: Generator[Any, Any, dict[str, Any]] = order_saga(FakeWorkflowContext(), payload(), POLICIES)
    task = next(saga)
    try:
        while True:
            tasks.append(task)
            if task[0] == "timer":
                task = saga.send(None)
                continue
            queue = answers.get(task[1], [])
            answer = queue.pop(0) if queue else StepResult(Outcome.SUCCEEDED, total_cents=1000, currency="EUR")
            task = saga.throw(answer) if isinstance(answer, Exception) else saga.send(answer.to_json())
    except StopIteration as done:
        output: dict[str, Any] = done.value
        return tasks, output


def names(tasks: list[tuple[Any, ...]]) -> list[str]:
    return [task[1] if task[0] == "activity" else "timer" for task in tasks]


def test_the_happy_path_runs_three_steps_then_finishes() -> None:
    tasks, output = drive({})

    assert names(tasks) == ["reserve_stock", "charge_payment", "confirm", "finish_order"]
    assert output == {"status": "completed", "reason": None}
    charge_input = tasks[1][2]
    assert (charge_input["total_cents"], charge_input["currency"]) == (1000, "EUR")
    assert tasks[-1][2]["finish"] == {"status": "completed", "reason": None, "detail": ""}
    assert datetime.fromisoformat(tasks[-1][2]["at"]) == NOW  # the workflow's clock, never the wall clock


def test_steps_before_the_pivot_and_those_that_must_finish_get_their_own_retry_policies() -> None:
    tasks, _ = drive({"confirm": [StepResult(Outcome.REFUSED, code="reservation_released")]})

    policies = {task[1]: task[3] for task in tasks}
    assert policies == {
        "reserve_stock": "step-policy",
        "charge_payment": "step-policy",
        "confirm": "compensation-policy",
        "refund_payment": "compensation-policy",
        "release_stock": "compensation-policy",
        "finish_order": "compensation-policy",
    }


def test_a_business_refusal_compensates_and_cancels_with_its_reason() -> None:
    tasks, output = drive({"charge_payment": [StepResult(Outcome.REFUSED, code="insufficient_funds")]})

    assert names(tasks) == ["reserve_stock", "charge_payment", "release_stock", "finish_order"]
    assert output == {"status": "cancelled", "reason": "insufficient_funds"}


def test_a_step_the_retry_policy_gave_up_on_is_compensated_with_step_failed() -> None:
    tasks, output = drive({"charge_payment": [failure("payments: no answer (ReadTimeout)")]})

    assert names(tasks) == ["reserve_stock", "charge_payment", "refund_payment", "release_stock", "finish_order"]
    assert output == {"status": "cancelled", "reason": "step_failed"}
    refund_input = tasks[2][2]
    assert [{**step, "at": datetime.fromisoformat(step["at"])} for step in refund_input["failures"]] == [
        {"name": "charge_payment", "status": "failed", "at": NOW, "detail": "payments: no answer (ReadTimeout)"}
    ]
    assert tasks[-1][2]["finish"]["detail"] == "charge_payment: payments: no answer (ReadTimeout)"


def test_a_compensation_that_keeps_failing_is_retried_after_a_durable_pause() -> None:
    tasks, output = drive(
        {
            "charge_payment": [StepResult(Outcome.REFUSED, code="insufficient_funds")],
            "release_stock": [failure("inventory down"), failure("inventory down")],
        }
    )

    assert names(tasks) == [
        "reserve_stock",
        "charge_payment",
        "release_stock",
        "timer",
        "release_stock",
        "timer",
        "release_stock",
        "finish_order",
    ]
    assert tasks[3] == ("timer", timedelta(minutes=5))
    assert output["status"] == "cancelled"


def test_a_confirm_that_keeps_failing_is_retried_after_a_durable_pause_and_the_order_completes() -> None:
    tasks, output = drive({"confirm": [failure("inventory: no answer (ReadTimeout)")]})

    assert names(tasks) == ["reserve_stock", "charge_payment", "confirm", "timer", "confirm", "finish_order"]
    assert output == {"status": "completed", "reason": None}


def test_an_order_that_already_ended_stops_the_workflow_without_finishing_again() -> None:
    tasks, output = drive({"reserve_stock": [StepResult(Outcome.ALREADY_FINAL)]})

    assert names(tasks) == ["reserve_stock"]
    assert output == {"status": None, "reason": None}


def test_replays_take_the_same_path() -> None:
    answers: dict[str, list[Any]] = {"confirm": [failure("timeout")]}
    first, _ = drive({key: list(value) for key, value in answers.items()})
    second, _ = drive({key: list(value) for key, value in answers.items()})

    assert names(first) == names(second)


def test_policies_from_settings_are_bounded_with_backoff() -> None:
    policies = SagaPolicies.from_settings(Settings(step_max_attempts=4, compensation_pause_seconds=60))

    assert policies.step.max_number_of_attempts == 4
    assert policies.step.backoff_coefficient == 2.0
    assert policies.step.max_retry_interval == timedelta(seconds=8)
    assert policies.pause == timedelta(seconds=60)


def test_build_runtime_can_run_more_than_once() -> None:
    # The SDK marks registered functions; a second runtime (a reconnect, another test) must not collide.
    build_runtime(Settings(), lambda: _no_steps())
    build_runtime(Settings(), lambda: _no_steps())


@asynccontextmanager
async def _no_steps() -> AsyncIterator[SagaSteps]:
    raise AssertionError("not called")
    yield


async def test_an_activity_shell_runs_its_step_and_returns_json() -> None:
    seen: list[SagaInput] = []

    class Steps:
        async def reserve_stock(self, saga: SagaInput) -> StepResult:
            seen.append(saga)
            return StepResult(Outcome.REFUSED, code="out_of_stock")

    @asynccontextmanager
    async def open_steps() -> AsyncIterator[Any]:
        yield Steps()

    activity = _activity("reserve_stock", lambda steps, saga: steps.reserve_stock(saga), open_steps)
    data = payload()

    answer = await activity(None, data)

    assert answer["outcome"] == "refused"
    assert answer["code"] == "out_of_stock"
    assert seen[0].order_id.hex == data["order_id"].replace("-", "")


# --- the worker ------------------------------------------------------------------------------------------


@dataclass
class FakeRuntime:
    """start() blocks (in its thread) until `connect` is set or shutdown() is called, like the SDK's."""

    connect: threading.Event = field(default_factory=threading.Event)
    stopped: threading.Event = field(default_factory=threading.Event)
    fail_start: bool = False
    started: bool = False

    def start(self) -> None:
        if self.fail_start:
            raise RuntimeError("stream not ready")
        while not self.connect.wait(0.01):
            if self.stopped.is_set():
                raise RuntimeError("Worker was stopped before the work item stream was established")
        self.started = True

    def shutdown(self) -> None:
        self.stopped.set()


@dataclass
class FakeSidecar:
    """The sidecar as the worker sees it: ready or not, how many workflow workers it has connected (None: its
    metadata does not answer), and whether its actor runtime runs."""

    ready: bool = False
    workers: int | None = None
    actors_running: bool = True
    asked: int = 0

    async def is_ready(self) -> bool:
        self.asked += 1
        return self.ready

    async def engine_status(self) -> EngineStatus | None:
        self.asked += 1
        return None if self.workers is None else EngineStatus(self.workers, self.actors_running)


async def wait_for(condition: Any, seconds: float = 2.0) -> None:
    for _ in range(int(seconds / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")


def connecting_runtimes() -> tuple[list[FakeRuntime], Any]:
    made: list[FakeRuntime] = []

    def make() -> FakeRuntime:
        runtime = FakeRuntime()
        runtime.connect.set()
        made.append(runtime)
        return runtime

    return made, make


async def test_the_worker_connects_once_the_sidecar_answers() -> None:
    sidecar = FakeSidecar()
    made, make = connecting_runtimes()
    worker = WorkflowWorker(make, sidecar, check_interval_seconds=0.02)

    worker.start()
    await wait_for(lambda: sidecar.asked >= 3)
    assert not worker.connected
    assert made == []
    sidecar.ready, sidecar.workers = True, 1
    await wait_for(lambda: worker.connected)

    await worker.stop()
    assert not worker.connected
    assert [runtime.stopped.is_set() for runtime in made] == [True]


async def test_a_worker_the_sidecar_lost_is_replaced() -> None:
    sidecar = FakeSidecar(ready=True, workers=1)
    made, make = connecting_runtimes()
    worker = WorkflowWorker(make, sidecar, check_interval_seconds=0.02, reconnect_after_seconds=0.1)
    worker.start()
    await wait_for(lambda: worker.connected)

    sidecar.workers = None  # the sidecar restarts: it does not answer...
    await wait_for(lambda: not worker.connected)
    assert len(made) == 1
    sidecar.workers = 0  # ...then answers without our worker
    await wait_for(lambda: len(made) == 2)
    sidecar.workers = 1
    await wait_for(lambda: worker.connected)

    assert made[0].stopped.is_set()
    assert made[1].started
    await worker.stop()


async def test_a_failed_start_is_retried_with_a_fresh_runtime() -> None:
    made: list[FakeRuntime] = []

    def make() -> FakeRuntime:
        runtime = FakeRuntime(fail_start=not made)
        runtime.connect.set()
        made.append(runtime)
        return runtime

    worker = WorkflowWorker(make, FakeSidecar(ready=True, workers=1), check_interval_seconds=0.02)
    worker.start()
    await wait_for(lambda: worker.connected)

    assert len(made) == 2
    assert made[0].stopped.is_set()
    assert made[1].started
    await worker.stop()


async def test_stop_while_still_connecting_ends_the_blocked_start() -> None:
    runtime = FakeRuntime()  # never connects
    worker = WorkflowWorker(lambda: runtime, FakeSidecar(ready=True, workers=0))
    worker.start()
    await asyncio.sleep(0.05)

    await asyncio.wait_for(worker.stop(), timeout=2)

    assert runtime.stopped.is_set()
    assert not worker.connected


async def test_connected_only_once_the_sidecar_counts_the_worker() -> None:
    sidecar = FakeSidecar(ready=True, workers=0)
    made, make = connecting_runtimes()
    worker = WorkflowWorker(make, sidecar, check_interval_seconds=0.02, reconnect_after_seconds=10)
    worker.start()
    await wait_for(lambda: len(made) == 1 and made[0].started)
    await asyncio.sleep(0.1)
    assert not worker.connected  # the SDK opened its stream; the sidecar has not registered it yet

    sidecar.workers = 1
    await wait_for(lambda: worker.connected)
    await worker.stop()


async def test_nothing_connects_while_the_sidecars_actor_runtime_is_not_running() -> None:
    sidecar = FakeSidecar(ready=True, workers=0, actors_running=False)
    made, make = connecting_runtimes()
    worker = WorkflowWorker(make, sidecar, check_interval_seconds=0.02, reconnect_after_seconds=0.05)
    worker.start()
    await wait_for(lambda: sidecar.asked >= 5)
    assert made == []  # a stream opened now could not have the workflow actor types registered

    sidecar.actors_running = True
    await wait_for(lambda: len(made) == 1)
    sidecar.workers = 1
    await wait_for(lambda: worker.connected)
    sidecar.workers, sidecar.actors_running = 0, False  # the sidecar's actor runtime restarts
    await wait_for(lambda: not worker.connected)
    asked = sidecar.asked
    await wait_for(lambda: sidecar.asked >= asked + 5)
    assert len(made) == 1  # no replacement while it could not connect either

    sidecar.actors_running = True
    await wait_for(lambda: len(made) == 2)
    await worker.stop()


@pytest.mark.parametrize("ready", [False, True])
async def test_stop_before_anything_started(ready: bool) -> None:
    worker = WorkflowWorker(FakeRuntime, FakeSidecar(ready=ready))
    await worker.stop()
    assert not worker.connected


def test_the_workflow_clock_is_handed_on_as_aware_utc() -> None:
    class Ctx:
        current_utc_datetime = datetime(2026, 11, 22, 6, 0, 0)

    assert workflow_now(Ctx()) == datetime(2026, 11, 22, 6, 0, 0, tzinfo=UTC)
