"""JSON logs that carry the request id, the request id itself, and the HTTP metrics served at /metrics."""

import logging
import re
import sys
import time
import uuid

import structlog
from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from analytics.errors import error_response

REQUEST_ID_HEADER = "x-request-id"
# A caller's id is kept only if it is short and plain, so it cannot smuggle text into logs or headers.
_ACCEPTABLE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:/+=-]{1,128}")
# W3C traceparent: version-traceid-parentid-flags; the trace id ties log lines to Dapr's spans.
_TRACEPARENT = re.compile(r"[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}")

log = structlog.get_logger("analytics.http")


def configure_logging(level: str) -> None:
    """Route structlog and the standard library (uvicorn, httpx) through one JSON renderer on stdout."""
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
            structlog.processors.dict_tracebacks,
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
    # RequestContextMiddleware writes the access log, with the request id; uvicorn's own would say it twice.
    logging.getLogger("uvicorn.access").handlers = []
    logging.getLogger("uvicorn.access").propagate = False
    # httpx logs every call to the sidecar at INFO; the request log line already says what happened.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)


class HttpMetrics:
    """Request counts and latencies by route template (never the raw path, which would explode cardinality)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.requests = Counter(
            "http_requests_total", "HTTP requests answered.", ["method", "route", "status"], registry=registry
        )
        self.latency = Histogram(
            "http_request_duration_seconds",
            "Time to answer an HTTP request.",
            ["method", "route"],
            registry=registry,
        )
        self.events = Counter(
            "analytics_events_total",
            "Events delivered, by route and outcome (counted, duplicate, expired, dead_lettered, retry, ignored).",
            ["route", "outcome"],
            registry=registry,
        )
        self.document_writes = Counter(
            "analytics_document_writes_total",
            "Read-model document writes, by outcome (saved, conflict, failed).",
            ["outcome"],
            registry=registry,
        )


def request_id_of(scope: Scope) -> str | None:
    """The id RequestContextMiddleware gave this request."""
    state = scope.get("state") or {}
    value = state.get("request_id")
    return value if isinstance(value, str) else None


class RequestContextMiddleware:
    """Accepts or generates X-Request-ID, echoes it, binds it to every log line, and records metrics.

    An exception that escapes the app is answered here with the error shape, so even a 500 carries the id.
    """

    def __init__(self, app: ASGIApp, metrics: HttpMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        offered = headers.get(REQUEST_ID_HEADER, "")
        request_id = offered if _ACCEPTABLE_REQUEST_ID.fullmatch(offered) else uuid.uuid4().hex
        trace = _TRACEPARENT.fullmatch(headers.get("traceparent", ""))
        log_context = {"request_id": request_id, **({"trace_id": trace.group(1)} if trace else {})}
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

        started = time.perf_counter()
        with structlog.contextvars.bound_contextvars(**log_context):
            try:
                await self.app(scope, receive, send_with_id)
            except Exception:
                log.exception("unhandled_exception", method=scope["method"], path=scope["path"])
                if response_started:
                    raise
                response = error_response(500, "internal_error", "The server failed to answer.", request_id)
                await response(scope, receive, send_with_id)
            finally:
                elapsed = time.perf_counter() - started
                route = getattr(scope.get("route"), "path", None) or "unmatched"
                self.metrics.requests.labels(scope["method"], route, str(status)).inc()
                self.metrics.latency.labels(scope["method"], route).observe(elapsed)
                if route not in ("/healthz", "/readyz", "/metrics"):
                    log.info(
                        "request",
                        method=scope["method"],
                        path=scope["path"],
                        status=status,
                        duration_ms=round(elapsed * 1000, 1),
                    )
