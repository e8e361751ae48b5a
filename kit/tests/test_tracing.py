"""The app's own spans: a server span per request, child of the caller's trace, and a client span per call to the
sidecar, whose trace context names it as the sidecar's parent."""

from collections.abc import AsyncIterator

import httpx
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from fastapi import FastAPI
from fastapi.testclient import TestClient
from opentelemetry import trace
from opentelemetry.trace import SpanKind, StatusCode

from sidecart_kit.service import QUIET_PATHS, install_plumbing
from sidecart_kit.sidecar import ServiceSettings, create_sidecar_client
from sidecart_kit.testing import recorded_spans
from sidecart_kit.tracing import (
    configure_tracing,
    current_traceparent,
    fastapi_telemetry,
    span_in_request_trace,
    spans_in_event_traces,
    tracing_enabled,
)

CALLER_TRACE = "0af7651916cd43dd8448eb211c80319c"
CALLER_SPAN = "b7ad6b7169203331"
TRACEPARENT = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"


def _app() -> FastAPI:
    """Built as service_app builds every service: with FastAPI's server spans on the kit's provider (none when off)."""
    app = FastAPI(telemetry=fastapi_telemetry(QUIET_PATHS))
    install_plumbing(app)

    @app.get("/items/{item_id}")
    async def item(item_id: str) -> dict[str, str]:
        return {"id": item_id}

    @app.get("/carry")
    async def carry() -> dict[str, str | None]:
        return {"traceparent": current_traceparent()}

    @app.get("/broken")
    async def broken() -> None:
        raise RuntimeError("a bug")

    return app


def test_without_an_endpoint_no_span_is_recorded_and_the_context_still_passes() -> None:
    configure_tracing("demo", None)
    assert not tracing_enabled()
    with TestClient(_app()) as client:
        assert client.get("/items/7", headers={"traceparent": TRACEPARENT}).status_code == 200


def test_a_request_is_a_server_span_in_the_callers_trace_named_after_its_route_and_tagged_with_its_id() -> None:
    with recorded_spans() as spans, TestClient(_app(), raise_server_exceptions=False) as client:
        client.get("/items/7", headers={"traceparent": TRACEPARENT, "X-Request-ID": "req-7"})
        client.get("/broken")
        client.get("/healthz")  # probes are polled every few seconds: no spans

    item, broken = spans.get_finished_spans()
    assert (item.name, item.kind) == ("GET /items/{item_id}", SpanKind.SERVER)
    assert format(item.context.trace_id, "032x") == CALLER_TRACE
    assert item.parent is not None
    assert format(item.parent.span_id, "016x") == CALLER_SPAN
    assert item.attributes is not None
    assert (item.attributes["http.response.status_code"], item.attributes["request.id"]) == (200, "req-7")
    assert broken.attributes is not None
    assert "request.id" in broken.attributes  # the id the app gave a request that came without one
    assert broken.name == "GET /broken"
    assert broken.parent is None  # no caller's context: a trace of its own
    assert broken.status.status_code is StatusCode.ERROR


async def _echo_traceparent(request: web.Request) -> web.Response:
    return web.json_response({"traceparent": request.headers.get("traceparent")})


@pytest.fixture
async def sidecar() -> AsyncIterator[TestServer]:
    app = web.Application()
    app.router.add_route("*", "/v1.0/{tail:.*}", _echo_traceparent)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield server
    await server.close()


async def test_a_call_to_the_sidecar_is_a_client_span_named_after_its_building_block(sidecar: TestServer) -> None:
    assert sidecar.port is not None
    with recorded_spans() as spans:
        async with create_sidecar_client(ServiceSettings(dapr_http_port=sidecar.port)) as client:
            answer = await client.post("/state/orders-store/order:42", json=[])

    (call,) = spans.get_finished_spans()
    assert (call.name, call.kind) == ("POST state/orders-store", SpanKind.CLIENT)
    assert call.attributes is not None
    assert call.attributes["http.response.status_code"] == 200
    # The sidecar's span will be this call's child.
    sent = answer.json()["traceparent"]
    assert sent.startswith(f"00-{format(call.context.trace_id, '032x')}-{format(call.context.span_id, '016x')}-")


async def test_a_fake_sidecar_in_tests_is_called_without_spans() -> None:
    with recorded_spans() as spans:
        async with create_sidecar_client(ServiceSettings(), httpx.MockTransport(lambda _: httpx.Response(204))) as c:
            await c.get("/metadata")
    assert spans.get_finished_spans() == ()


def test_work_done_later_for_a_request_is_a_span_of_that_requests_trace_linked_to_where_it_runs() -> None:
    with recorded_spans() as spans:
        assert current_traceparent() is None  # outside any request
        with TestClient(_app()) as client:
            carried = client.get("/carry", headers={"traceparent": TRACEPARENT}).json()["traceparent"]
        # Later, in the workflow engine's own trace (the activity's span is current while the step runs):
        engine = trace.NonRecordingSpan(
            trace.SpanContext(trace_id=0x1234, span_id=0x5678, is_remote=True, trace_flags=trace.TraceFlags(1))
        )
        with trace.use_span(engine), span_in_request_trace("saga reserve_stock", carried):
            pass

    request, step = spans.get_finished_spans()
    assert format(step.context.trace_id, "032x") == CALLER_TRACE
    assert step.parent is not None
    assert step.parent.span_id == request.context.span_id
    assert [link.context.trace_id for link in step.links] == [0x1234]


def _publisher(trace_id: int, span_id: int) -> str:
    return f"00-{trace_id:032x}-{span_id:016x}-01"


def test_a_batch_of_events_is_a_span_in_each_other_events_trace_linked_to_the_batch() -> None:
    delivery = trace.NonRecordingSpan(  # the bulk delivery's request: in the trace of one of its events
        trace.SpanContext(trace_id=0xA, span_id=0xA1, is_remote=True, trace_flags=trace.TraceFlags(1))
    )
    carried = [_publisher(0xA, 0xA0), _publisher(0xB, 0xB0), _publisher(0xB, 0xB0), None, _publisher(0xC, 0xC0)]
    with recorded_spans() as spans:
        with trace.use_span(delivery), spans_in_event_traces("events /events/r", carried):
            pass
        with pytest.raises(RuntimeError), spans_in_event_traces("events /events/r", [_publisher(0xD, 0xD0)]):
            raise RuntimeError("the store failed")

    in_b, in_c, failed = spans.get_finished_spans()
    # One per distinct trace other than the batch's own: two events of one request cost one span.
    assert [(span.context.trace_id, span.parent and span.parent.span_id) for span in (in_b, in_c)] == [
        (0xB, 0xB0),
        (0xC, 0xC0),
    ]
    assert [[link.context.span_id for link in span.links] for span in (in_b, in_c)] == [[0xA1], [0xA1]]
    assert failed.context.trace_id == 0xD
    assert failed.status.status_code is StatusCode.ERROR


def test_without_tracing_a_batch_of_events_records_nothing() -> None:
    with spans_in_event_traces("events /events/r", [_publisher(0xB, 0xB0)]):
        pass  # tracing off in this process: nothing to record, nothing to fail
