"""The order saga as a Dapr Workflow (`order_saga`, instance id = order id) and the worker that runs it.

The orchestrator only drives saga.Saga: it asks for the next command, runs it as an activity (or a durable
timer) and reports the answer back. It does no I/O and reads time only from the workflow context, so replays
take the same path. Activities are thin shells over handlers.SagaSteps.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable, Generator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import structlog
from dapr.ext.workflow import RetryPolicy, TaskFailedError, WorkflowRuntime
from dapr.ext.workflow.logger import LoggerOptions

from orders.domain import StepName
from orders.handlers import SagaSteps
from orders.saga import FinishOrder, RunStep, Saga, SagaInput, StepResult, Wait
from orders.settings import Settings
from sidecart_kit.logs import get_logger
from sidecart_kit.sidecar import ReadinessProbe
from sidecart_kit.tracing import span_in_request_trace

log = get_logger(__name__)

WORKFLOW_NAME = "order_saga"
FINISH_ORDER = "finish_order"

StepMethod = Callable[[SagaSteps, SagaInput], Awaitable[StepResult]]
ACTIVITIES: dict[str, StepMethod] = {
    StepName.RESERVE_STOCK.value: SagaSteps.reserve_stock,
    StepName.CHARGE_PAYMENT.value: SagaSteps.charge_payment,
    StepName.CONFIRM.value: SagaSteps.confirm,
    StepName.RELEASE_STOCK.value: SagaSteps.release_stock,
    StepName.REFUND_PAYMENT.value: SagaSteps.refund_payment,
    FINISH_ORDER: SagaSteps.finish_order,
}


@dataclass(frozen=True)
class SagaPolicies:
    """Steps before the pivot retry briefly, then the saga compensates; confirm, compensations and the final save
    retry longer, in rounds separated by `pause`, until they succeed.
    """

    step: Any  # RetryPolicy (the SDK is untyped)
    compensation: Any
    pause: timedelta

    @classmethod
    def from_settings(cls, settings: Settings) -> "SagaPolicies":
        return cls(
            step=RetryPolicy(
                first_retry_interval=timedelta(seconds=settings.step_first_retry_seconds),
                backoff_coefficient=2.0,
                max_retry_interval=timedelta(seconds=settings.step_max_retry_seconds),
                max_number_of_attempts=settings.step_max_attempts,
            ),
            compensation=RetryPolicy(
                first_retry_interval=timedelta(seconds=settings.compensation_first_retry_seconds),
                backoff_coefficient=2.0,
                max_retry_interval=timedelta(seconds=settings.compensation_max_retry_seconds),
                max_number_of_attempts=settings.compensation_max_attempts,
            ),
            pause=timedelta(seconds=settings.compensation_pause_seconds),
        )

    def for_command(self, command: RunStep | FinishOrder) -> Any:
        if isinstance(command, RunStep) and not command.step.must_finish:
            return self.step
        return self.compensation


def _activity_name(command: RunStep | FinishOrder) -> str:
    return command.step.value if isinstance(command, RunStep) else FINISH_ORDER


def workflow_now(ctx: Any) -> datetime:
    """The workflow's deterministic clock, as an aware UTC time (the SDK hands it over without a time zone)."""
    now: datetime = ctx.current_utc_datetime
    return now if now.tzinfo is not None else now.replace(tzinfo=UTC)


def order_saga(ctx: Any, payload: dict[str, Any], policies: SagaPolicies) -> Generator[Any, Any, dict[str, Any]]:
    """The orchestrator: deterministic, so it can be replayed from the workflow history at any point."""
    saga = Saga(SagaInput.from_json(payload))
    while (command := saga.next_command()) is not None:
        if isinstance(command, Wait):
            yield ctx.create_timer(policies.pause)
            saga.completed(command)
            continue
        name = _activity_name(command)
        try:
            answer = yield ctx.call_activity(
                name,
                input=saga.activity_input(command, at=workflow_now(ctx)).to_json(),
                retry_policy=policies.for_command(command),
            )
        except TaskFailedError as error:
            detail = str(getattr(error.details, "message", "") or error)
            if not ctx.is_replaying:
                log.warning("saga_step_gave_up", order_id=ctx.instance_id, step=name, error=detail)
            saga.failed(command, detail, workflow_now(ctx))
            continue
        saga.completed(command, StepResult.from_json(answer))
    result = saga.result
    return {
        "status": None if result is None else result.status.value,
        "reason": None if result is None or result.reason is None else result.reason.value,
    }


StepsFactory = Callable[[], AbstractAsyncContextManager[SagaSteps]]


def _activity(name: str, method: StepMethod, open_steps: StepsFactory) -> Callable[[Any, Any], Awaitable[Any]]:
    async def activity(ctx: Any, payload: dict[str, Any]) -> dict[str, Any]:
        saga = SagaInput.from_json(payload)
        with (
            structlog.contextvars.bound_contextvars(order_id=str(saga.order_id), step=name),
            span_in_request_trace(f"saga {name}", saga.traceparent),
        ):
            async with open_steps() as steps:
                result = await method(steps, saga)
        return result.to_json()

    activity.__name__ = name
    return activity


def build_runtime(settings: Settings, open_steps: StepsFactory) -> Any:
    """A WorkflowRuntime with the saga and its activities registered (a fresh one per call)."""
    runtime = WorkflowRuntime(
        host=settings.sidecar_host,
        port=str(settings.dapr_grpc_port),
        # The SDK's records reach the root logger (JSON) instead of a plain-text handler of its own.
        logger_options=LoggerOptions(log_handler=logging.NullHandler()),
        maximum_concurrent_activity_work_items=settings.max_concurrent_activities,
    )
    policies = SagaPolicies.from_settings(settings)

    def saga_workflow(ctx: Any, payload: dict[str, Any]) -> Generator[Any, Any, dict[str, Any]]:
        return (yield from order_saga(ctx, payload, policies))

    runtime.register_workflow(saga_workflow, name=WORKFLOW_NAME)
    for name, method in ACTIVITIES.items():
        runtime.register_activity(_activity(name, method, open_steps), name=name)
    return runtime


class Runtime(Protocol):
    def start(self) -> None: ...

    def shutdown(self) -> None: ...


@dataclass(frozen=True)
class EngineStatus:
    """What the sidecar says of its workflow engine (metadata API)."""

    connected_workers: int
    # The actor runtime runs: the engine can register the workflow actor types for a worker that connects now.
    actors_running: bool


class SidecarWatch(ReadinessProbe, Protocol):
    async def engine_status(self) -> EngineStatus | None:
        """The sidecar's workflow engine as its metadata describes it (None: the sidecar did not say)."""
        ...


class WorkflowWorker:
    """Runs the workflow runtime beside the app and keeps it connected.

    The app and its sidecar start together, so the runtime is started in the background once the sidecar answers
    and its actor runtime runs (a worker that connects earlier cannot have the workflow actor types registered).
    Afterwards the sidecar's own count of connected workers is watched: `connected` (which feeds /readyz) follows
    it, and a runtime the sidecar has lost (a restarted sidecar) is replaced at once instead of waiting for the
    SDK's reconnect backoff (up to 15 s, during which workflow starts hang). A sidecar that is down or whose actor
    runtime is not running is waited for: a new runtime could not connect to it any better.
    """

    def __init__(
        self,
        make_runtime: Callable[[], Runtime],
        sidecar: SidecarWatch,
        *,
        check_interval_seconds: float = 2.0,
        reconnect_after_seconds: float = 4.0,
    ) -> None:
        self._make_runtime = make_runtime
        self._sidecar = sidecar
        self._interval = check_interval_seconds
        self._reconnect_after = reconnect_after_seconds
        self._runtime: Runtime | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._connected = False
        self._lost_at: float | None = None

    @property
    def connected(self) -> bool:
        return self._connected

    def start(self) -> None:
        self._task = asyncio.create_task(self._supervise(), name="workflow-worker")

    async def _supervise(self) -> None:
        delay = min(0.2, self._interval)
        while not self._stopping:
            try:
                await self._check()
            except Exception:
                log.exception("workflow_worker_check_failed")
            # Quick checks until connected, then a steady pace.
            delay = self._interval if self._connected else min(delay * 2, self._interval)
            await asyncio.sleep(delay)

    async def _check(self) -> None:
        engine = await self._sidecar.engine_status()
        can_connect = engine is not None and engine.actors_running
        if self._runtime is None:
            if can_connect and await self._sidecar.is_ready():
                await self._start_runtime()
            else:
                log.info("workflow_worker_waiting_for_sidecar", actors_running=can_connect)
            return
        if engine is not None and can_connect and engine.connected_workers > 0:
            if not self._connected:
                log.info("workflow_worker_connected", connected_workers=engine.connected_workers)
            self._connected, self._lost_at = True, None
            return
        if self._connected:
            log.warning(
                "workflow_worker_disconnected",
                sidecar_answered=engine is not None,
                connected_workers=engine.connected_workers if engine else None,
                actors_running=can_connect,
            )
        self._connected = False
        now = asyncio.get_running_loop().time()
        self._lost_at = self._lost_at if self._lost_at is not None else now
        if can_connect and now - self._lost_at >= self._reconnect_after:
            log.warning("workflow_worker_reconnecting")
            self._lost_at = None
            await self._stop_runtime()
            await self._start_runtime()

    async def _start_runtime(self) -> None:
        runtime = self._make_runtime()
        self._runtime = runtime
        try:
            # Returns once the SDK has opened its work-item stream; `connected` waits for the sidecar to count it.
            await asyncio.to_thread(runtime.start)
        except Exception as error:
            if self._stopping:
                return
            log.warning("workflow_worker_start_failed", error=repr(error))
            await self._stop_runtime()
            return
        if not self._stopping:
            log.info("workflow_worker_started")

    async def _stop_runtime(self) -> None:
        runtime, self._runtime = self._runtime, None
        self._connected = False
        if runtime is not None:
            await asyncio.to_thread(runtime.shutdown)

    async def stop(self) -> None:
        """Stops taking work items; the runtime's own stop waits for its thread to end."""
        self._stopping = True
        await self._stop_runtime()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        log.info("workflow_worker_stopped")
