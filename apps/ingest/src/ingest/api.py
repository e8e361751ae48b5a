"""HTTP routes: receive a telemetry batch, health and metrics."""

from typing import Annotated

import structlog
from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from contracts.api import ErrorResponse
from contracts.telemetry import TelemetryBatchAccepted
from ingest.domain import MalformedBatchError, TooManyEventsError, is_json_media_type
from ingest.errors import ApiError, error_response
from ingest.handlers import Ingest, IngestBatch, PublishFailedError, SidecarHealth, TelemetryPublisher
from ingest.observability import HttpMetrics
from ingest.settings import Settings

log = structlog.get_logger("ingest.api")
router = APIRouter()


async def get_app_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_publisher(request: Request) -> TelemetryPublisher:
    publisher: TelemetryPublisher = request.app.state.publisher
    return publisher


async def get_sidecar_health(request: Request) -> SidecarHealth:
    health: SidecarHealth = request.app.state.sidecar_health
    return health


async def get_metrics(request: Request) -> HttpMetrics:
    metrics: HttpMetrics = request.app.state.metrics
    return metrics


SettingsDep = Annotated[Settings, Depends(get_app_settings)]
PublisherDep = Annotated[TelemetryPublisher, Depends(get_publisher)]
SidecarHealthDep = Annotated[SidecarHealth, Depends(get_sidecar_health)]
MetricsDep = Annotated[HttpMetrics, Depends(get_metrics)]


async def get_ingest(publisher: PublisherDep, settings: SettingsDep) -> Ingest:
    return Ingest(publisher, max_events=settings.max_events_per_batch)


async def read_json_body(request: Request, settings: SettingsDep) -> bytes:
    """The body, once it is declared as JSON (else 415) and known not to exceed the limit (else 413)."""
    if not is_json_media_type(request.headers.get("content-type")):
        raise ApiError(415, "unsupported_media_type", "The body must be sent as application/json.")
    limit = settings.max_body_bytes
    too_large = ApiError(413, "payload_too_large", f"The request body exceeds {limit} bytes.")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large
    # Content-Length can lie or be absent (chunked): count what actually arrives, and stop at the limit.
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


IngestDep = Annotated[Ingest, Depends(get_ingest)]
JsonBodyDep = Annotated[bytes, Depends(read_json_body)]

_ERRORS: dict[int | str, dict[str, object]] = {
    status: {"model": ErrorResponse, "description": description}
    for status, description in (
        (413, "The body exceeds 1 MiB or holds more than 1,000 events"),
        (415, "The body is not application/json"),
        (422, "The body is not a batch: not JSON, no 'events' list, or no events"),
        (503, "The events could not be published; none was accepted, resend the whole batch"),
    )
}


@router.post("/events", tags=["telemetry"], status_code=202, response_model=TelemetryBatchAccepted, responses=_ERRORS)
async def ingest_events(ingest: IngestDep, body: JsonBodyDep, metrics: MetricsDep) -> TelemetryBatchAccepted:
    """Receive a batch of telemetry events: each is judged on its own, the valid ones are published together."""
    try:
        outcome = await ingest.ingest(IngestBatch(body))
    except MalformedBatchError as exc:
        raise ApiError(422, "validation_error", f"The request is invalid: {exc}.") from exc
    except TooManyEventsError as exc:
        raise ApiError(413, "too_many_events", f"The request is too large: {exc}.") from exc
    except PublishFailedError as exc:
        metrics.events.labels("failed").inc(exc.events)
        raise
    metrics.events.labels("accepted").inc(len(outcome.accepted))
    metrics.events.labels("rejected").inc(len(outcome.rejected))
    return TelemetryBatchAccepted(accepted=len(outcome.accepted), rejected=list(outcome.rejected))


@router.get("/healthz", tags=["health"])
async def healthz() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


@router.get("/readyz", tags=["health"], responses={503: {"description": "The sidecar is not ready"}})
async def readyz(health: SidecarHealthDep, request: Request) -> JSONResponse:
    """Readiness: this app's sidecar is up and its components are ready."""
    if await health.is_ready():
        return JSONResponse({"status": "ready"})
    return error_response(503, "not_ready", "The Dapr sidecar is not ready.", request.state.request_id)


@router.get("/metrics", include_in_schema=False)
async def metrics(http_metrics: MetricsDep) -> Response:
    """Prometheus metrics."""
    return Response(generate_latest(http_metrics.registry), media_type=CONTENT_TYPE_LATEST)


async def _on_publish_failed(request: Request, exc: Exception) -> JSONResponse:
    log.warning("batch_not_published", error=str(exc))
    settings: Settings = request.app.state.settings
    return error_response(
        503,
        "unavailable",
        "The events could not be published and none was accepted; resend the whole batch.",
        request.state.request_id,
        headers={"retry-after": str(settings.retry_after_seconds)},
    )


def install_domain_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(PublishFailedError, _on_publish_failed)
