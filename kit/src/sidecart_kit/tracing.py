"""Spans: each app records its own and sends them to the trace backend, where W3C trace context joins them with the
sidecars' spans into one trace per request: a server span per request (FastAPI's own OpenTelemetry support, on the
kit's provider: `fastapi_telemetry`), a client span per call to the sidecar, a span per saga step in the trace of the
request that placed the order, a span in each event's own trace for the events a bulk delivery carries, and the
workflow SDK's span per activity on the same provider.

Switched on by a trace endpoint (ServiceSettings.trace_endpoint, read from OTEL_EXPORTER_ZIPKIN_ENDPOINT, which the
dev stack sets for every app). Without one, no span is recorded and none is sent, and the caller's trace context
still passes through to the logs and the sidecar. Which traces are recorded is OpenTelemetry's own setting
(OTEL_TRACES_SAMPLER, OTEL_TRACES_SAMPLER_ARG; parent-based, so a request its caller sampled is recorded all the way
down). Spans leave in batches from a background thread, never on the request's path.
"""

from collections.abc import Callable, Iterable, Iterator, MutableMapping
from contextlib import contextmanager
from typing import Any

from asgi_correlation_id.context import correlation_id
from fastapi.telemetry import TelemetryConfig
from opentelemetry import propagate, trace
from opentelemetry.exporter.zipkin.json import ZipkinExporter
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Link, Span, SpanKind, StatusCode, Tracer


class _Tracing:
    """The provider this process records its spans with, and the kit's tracer on it; None (tracing off) is checked on
    the hot path, so a process without tracing pays nothing for it."""

    provider: TracerProvider | None = None
    tracer: Tracer | None = None


def configure_tracing(service_name: str, endpoint: str | None) -> None:
    """Records and exports this process's spans as `service_name` when `endpoint` is set. Once per process: the
    provider is also the global one, which the workflow SDK's activity spans use."""
    if not endpoint or _Tracing.provider is not None:  # none, or set empty to turn tracing off
        return
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: service_name}))
    # A backend that is down costs a dropped batch after 2 s, on the exporter's thread: never a request's time.
    provider.add_span_processor(BatchSpanProcessor(ZipkinExporter(endpoint=endpoint, timeout=2)))
    trace.set_tracer_provider(provider)
    record_spans_with(provider)


def record_spans_with(provider: TracerProvider | None) -> TracerProvider | None:
    """Makes `provider` the one the kit records spans with (None: off); answers the one before (tests put it back)."""
    previous, _Tracing.provider = _Tracing.provider, provider
    _Tracing.tracer = None if provider is None else provider.get_tracer("sidecart_kit")
    return previous


def tracing_enabled() -> bool:
    return _Tracing.provider is not None


def fastapi_telemetry(untraced_paths: frozenset[str]) -> TelemetryConfig:
    """The server span of every request, as FastAPI's own OpenTelemetry support makes it (the caller's trace context,
    the route template as its name, the status, the error), on the kit's provider. FastAPI's metrics and logs stay
    off (Prometheus and structlog have them), as do its spans of dependencies and serialization (a handful more spans
    per request, for detail the route's span and the sidecar calls already show)."""

    def untraced(scope: MutableMapping[str, Any]) -> bool:
        return scope.get("path") in untraced_paths

    exclude: Callable[[MutableMapping[str, Any]], bool] = untraced
    return {
        "tracing": _Tracing.provider is not None,
        "tracer_provider": _Tracing.provider,
        "metrics": False,
        "logs": False,
        "operation_spans": False,
        "exclude": exclude,
    }


def tag_request_span() -> None:
    """Tags the current request's span with its request id: a client's X-Request-ID then finds its trace with the
    backend's tag search (request.id=<id>)."""
    span = trace.get_current_span()
    request_id = correlation_id.get()
    if request_id is not None and span.is_recording():
        span.set_attribute("request.id", request_id)


@contextmanager
def sidecar_call_span(method: str, path: str) -> Iterator[Span | None]:
    """The span of one call to the sidecar, current while the call is made, so the trace context the call carries
    names it as the parent of the sidecar's own span. Named after the building block and component, never the key
    or id (`POST state/orders-store`, `POST invoke/inventory`): span names stay few."""
    tracer = _Tracing.tracer
    if tracer is None:
        yield None
        return
    with tracer.start_as_current_span(
        f"{method} {_api_of(path)}",
        kind=SpanKind.CLIENT,
        attributes={"http.request.method": method, "url.path": path, "peer.service": "daprd"},
    ) as span:
        yield span


def current_traceparent() -> str | None:
    """The W3C traceparent of the current context, to carry in the input of work done later on the request's behalf
    (a workflow's activities run in the workflow engine's time, outside any request)."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier.get("traceparent")


@contextmanager
def span_in_request_trace(name: str, traceparent: str | None) -> Iterator[Span | None]:
    """A span for work done on a request's behalf outside it (a saga step): a child of the request's trace, named by
    the `traceparent` the work's input carries, and linked to the trace the work runs in (the workflow engine's,
    which Dapr 1.18 starts anew when a workflow is started over HTTP). Calls made inside it join the request's trace."""
    tracer = _Tracing.tracer
    if tracer is None:
        yield None
        return
    running_in = trace.get_current_span().get_span_context()
    parent = propagate.extract({"traceparent": traceparent}) if traceparent else None
    with tracer.start_as_current_span(
        name, context=parent, links=[Link(running_in)] if running_in.is_valid else None
    ) as span:
        yield span


def event_traceparent(envelope: Any) -> str | None:
    """The trace context a delivered CloudEvent carries (the sidecar adds the publisher's as `traceparent`)."""
    traceparent = envelope.get("traceparent") if isinstance(envelope, dict) else None
    return traceparent if isinstance(traceparent, str) else None


@contextmanager
def spans_in_event_traces(name: str, traceparents: Iterable[str | None]) -> Iterator[None]:
    """Work done at once for a batch of events (a bulk delivery, whose request sits in the trace of one of them): a
    span in each other event's trace, child of its publisher's span and linked to the batch's span, for as long as
    the work runs. So an order's trace holds the batch that handled its event, whichever trace the batch's request
    took. One span per distinct trace context, not per event: a batch of one request's events costs one."""
    tracer = _Tracing.tracer
    if tracer is None:
        yield
        return
    batch = trace.get_current_span().get_span_context()
    own_trace = format(batch.trace_id, "032x") if batch.is_valid else None
    links = [Link(batch)] if batch.is_valid else None
    spans = [
        tracer.start_span(name, context=propagate.extract({"traceparent": traceparent}), links=links)
        for traceparent in dict.fromkeys(traceparents)
        if traceparent is not None and _trace_id_of(traceparent) != own_trace
    ]
    try:
        yield
    except BaseException as exc:
        for span in spans:
            span.record_exception(exc)
            span.set_status(StatusCode.ERROR, type(exc).__name__)
        raise
    finally:
        for span in spans:
            span.end()


def _trace_id_of(traceparent: str) -> str | None:
    # "00-<trace id>-<span id>-<flags>"
    parts = traceparent.split("-")
    return parts[1] if len(parts) == 4 else None


def _api_of(path: str) -> str:
    # "/state/orders-store/order:1" or "/v1.0-alpha1/workflows/dapr/..." -> "state/orders-store", "workflows/dapr".
    segments = [segment for segment in path.split("?", 1)[0].split("/") if segment]
    if segments and segments[0].startswith("v1."):
        segments = segments[1:]
    return "/".join(segments[:2]) or "/"
