"""The error shape every Sidecart HTTP API answers with, whatever the status code."""

from pydantic import BaseModel, ConfigDict


class ErrorDetail(BaseModel):
    """One thing wrong with a request: which field (a dotted path, or None for the whole body) and why."""

    model_config = ConfigDict(frozen=True)

    field: str | None
    reason: str


class ErrorBody(BaseModel):
    model_config = ConfigDict(frozen=True)

    code: str
    message: str
    details: list[ErrorDetail] = []
    request_id: str | None = None


class ErrorResponse(BaseModel):
    """`{"error": {...}}`: a stable envelope, so clients branch on `error.code`, never on message text."""

    model_config = ConfigDict(frozen=True)

    error: ErrorBody
