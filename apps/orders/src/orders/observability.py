"""JSON logs carrying the request id, HTTP and saga metrics, and each request's context (request id, trace)."""

import logging
import re
import sys
from contextvars import ContextVar
from time import perf_counter
from uuid import uuid4

import structlog
from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from contracts.api import ErrorBody, ErrorResponse
from orders.domain import Order

log = structlog.get_logger(__name__)

REQUEST_ID_HEADER = "X-Request-ID"
# A caller's id is echoed into logs and headers: accept only plain tokens, generate one for anything else.
_ACCEPTED_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
# Polled every few seconds by the sidecar and by Prometheus: logged at debug, not info.
_QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})

current_traceparent: ContextVar[str | None] = ContextVar("current_traceparent", default=None)


def configure_logging(level: str) -> None:
    """structlog and the standard library (uvicorn) both write one JSON object per line to stdout."""
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers = []
        logging.getLogger(name).propagate = True
    # The request middleware writes the access log, with the request id; uvicorn's own would say it twice.
    logging.getLogger("uvicorn.access").handlers = []
    logging.getLogger("uvicorn.access").propagate = False
    # httpx logs every call to the sidecar at info; the request and saga log lines already say what happened.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
    # The workflow SDK logs each registration and (re)connection at info, and every work item at debug.
    for name in ("WorkflowRuntime", "DaprWorkflowContext", "durabletask-worker", "durabletask-client"):
        logging.getLogger(name).setLevel(logging.WARNING)


class HttpMetrics:
    """Request count and latency by method, route template and status, in the app's own registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "http_requests", "HTTP requests handled.", ["method", "route", "status"], registry=registry
        )
        self.latency = Histogram(
            "http_request_duration_seconds",
            "Time to answer an HTTP request.",
            ["method", "route"],
            registry=registry,
        )

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)


class SagaMetrics:
    """How sagas end (status and reason) and how long an order takes from acceptance to its final status."""

    def __init__(self, registry: CollectorRegistry) -> None:
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

    def saga_finished(self, order: Order) -> None:
        self.finished.labels(order.status.value, order.reason.value if order.reason else "").inc()
        self.duration.labels(order.status.value).observe((order.updated_at - order.created_at).total_seconds())


def _route_template(scope: Scope) -> str:
    # The template, never the raw path: ids in paths would make a time series per user.
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"


def _request_id(headers: Headers) -> str:
    offered = headers.get(REQUEST_ID_HEADER)
    if offered and _ACCEPTED_REQUEST_ID.fullmatch(offered):
        return offered
    return uuid4().hex


def _trace_id(traceparent: str | None) -> str | None:
    parts = traceparent.split("-") if traceparent else []
    return parts[1] if len(parts) == 4 else None


class RequestContextMiddleware:
    """Gives each request an id (the caller's X-Request-ID or a new one), echoes it, logs and measures the
    request, and turns an unexpected exception into a 500 `internal_error` in the standard error shape.
    """

    def __init__(self, app: ASGIApp, metrics: HttpMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        request_id = _request_id(headers)
        traceparent = headers.get("traceparent")
        scope.setdefault("state", {})["request_id"] = request_id
        status = 500
        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            await send(message)

        method, path = scope["method"], scope["path"]
        started = perf_counter()
        trace_token = current_traceparent.set(traceparent)
        with structlog.contextvars.bound_contextvars(request_id=request_id, trace_id=_trace_id(traceparent)):
            try:
                await self.app(scope, receive, send_with_id)
            except Exception:
                log.exception("unhandled_error", method=method, path=path)
                if response_started:
                    raise
                body = ErrorResponse(
                    error=ErrorBody(code="internal_error", message="Internal server error.", request_id=request_id)
                )
                await JSONResponse(body.model_dump(mode="json"), status_code=500)(scope, receive, send_with_id)
            finally:
                current_traceparent.reset(trace_token)
                seconds = perf_counter() - started
                self.metrics.observe(method, _route_template(scope), status, seconds)
                level = logging.DEBUG if path in _QUIET_PATHS else logging.INFO
                log.log(level, "request", method=method, path=path, status=status, ms=round(seconds * 1000, 1))
