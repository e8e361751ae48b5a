"""HTTP routes: receive a telemetry batch (the probes are the kit's); and how ingest's errors are answered."""

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from contracts.api import ErrorResponse
from contracts.telemetry import TelemetryBatchAccepted
from ingest.domain import MalformedBatchError, TooManyEventsError, is_json_media_type
from ingest.handlers import Ingest, IngestBatch, PublishFailedError
from ingest.settings import Settings
from sidecart_kit.errors import ApiError, DomainErrors
from sidecart_kit.service import from_app_state, read_limited_body

router = APIRouter()


# --- What the lifespan built (main.py), read from app.state -------------------------------------------------

SettingsDep = Annotated[Settings, Depends(from_app_state("settings"))]
IngestDep = Annotated[Ingest, Depends(from_app_state("ingest"))]


async def read_json_body(request: Request, settings: SettingsDep) -> bytes:
    """The body, once it is declared as JSON (else 415) and known not to exceed the limit (else 413)."""
    if not is_json_media_type(request.headers.get("content-type")):
        raise ApiError(415, "unsupported_media_type", "The body must be sent as application/json.")
    return await read_limited_body(request, settings.max_body_bytes)


JsonBodyDep = Annotated[bytes, Depends(read_json_body)]

# --- Routes ---------------------------------------------------------------------------------------------------

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
async def ingest_events(ingest: IngestDep, body: JsonBodyDep) -> TelemetryBatchAccepted:
    """Receive a batch of telemetry events: each is judged on its own, the valid ones are published together."""
    outcome = await ingest.ingest(IngestBatch(body))
    return TelemetryBatchAccepted(accepted=len(outcome.accepted), rejected=list(outcome.rejected))


# --- Ingest's errors, as the client gets them --------------------------------------------------------------


def domain_errors(settings: Settings) -> DomainErrors:
    """The table of ingest's errors; a function, not a constant, as a failed publish's Retry-After is a setting."""
    return {
        MalformedBatchError: lambda exc: ApiError(422, "validation_error", f"The request is invalid: {exc}."),
        TooManyEventsError: lambda exc: ApiError(413, "too_many_events", f"The request is too large: {exc}."),
        PublishFailedError: lambda exc: ApiError(
            503,
            "unavailable",
            "The events could not be published and none was accepted; resend the whole batch.",
            headers={"retry-after": str(settings.retry_after_seconds)},
        ),
    }
