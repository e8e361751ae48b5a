"""Request ids (asgi-correlation-id) and W3C trace context (OpenTelemetry's propagator), for every request.

A caller's X-Request-ID is kept when it is a plain token (visible ASCII, no spaces, at most 128 characters: what a
UUID, a base64 id or a gateway's own id look like), so the same id follows one request through every app; anything
else (too long, spaces, control characters) is replaced by a new id, which the response's header and error body
then both carry. traceparent is read and written by OpenTelemetry's W3C propagator, never parsed by hand: an
invalid one is ignored.
"""

import re
from collections.abc import Mapping

import httpx
from asgi_correlation_id.context import correlation_id
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from starlette.types import ASGIApp, Receive, Scope, Send

from sidecart_kit.tracing import tracing_enabled

REQUEST_ID_HEADER = "X-Request-ID"
_PLAIN_TOKEN = re.compile(r"[\x21-\x7e]{1,128}")


def is_acceptable_request_id(value: str) -> bool:
    return _PLAIN_TOKEN.fullmatch(value) is not None


def current_request_id() -> str | None:
    """The id of the request being handled (None outside one)."""
    return correlation_id.get()


def current_trace_ids() -> tuple[str | None, str | None]:
    """(trace id, span id) of the trace context the request being handled carries, as W3C hex strings."""
    span = trace.get_current_span().get_span_context()
    if not span.is_valid:
        return None, None
    return format(span.trace_id, "032x"), format(span.span_id, "016x")


_TRACE_HEADERS = (b"traceparent", b"tracestate")


class TraceContextMiddleware:
    """Makes the caller's W3C trace context current for the request, so logs and calls to the sidecar carry it. With
    tracing on, FastAPI's own server span has done so already (but for `untraced_paths`: probes and scrapes)."""

    def __init__(self, app: ASGIApp, untraced_paths: frozenset[str] = frozenset()) -> None:
        self.app = app
        self._untraced = untraced_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        carrier = {
            name.decode("latin-1"): value.decode("latin-1")
            for name, value in scope["headers"]
            if name in _TRACE_HEADERS
        }
        if not carrier or (tracing_enabled() and scope["path"] not in self._untraced):
            await self.app(scope, receive, send)
            return
        token = otel_context.attach(propagate.extract(carrier))
        try:
            await self.app(scope, receive, send)
        finally:
            otel_context.detach(token)


def outgoing_headers() -> Mapping[str, str]:
    """The trace context and request id to pass on with a call made while handling a request."""
    headers: dict[str, str] = {}
    propagate.inject(headers)
    request_id = correlation_id.get()
    if request_id is not None:
        headers[REQUEST_ID_HEADER] = request_id
    return headers


async def pass_request_context_on(request: httpx.Request) -> None:
    """httpx request hook: every call to the sidecar carries the current trace context and request id."""
    for name, value in outgoing_headers().items():
        request.headers.setdefault(name, value)
