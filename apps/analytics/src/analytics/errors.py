"""Every error leaves as contracts.api.ErrorResponse, whatever raised it."""

from collections.abc import Mapping, Sequence
from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from contracts.api import ErrorBody, ErrorDetail, ErrorResponse

_ERROR_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "too_many_requests",
    500: "internal_error",
    503: "service_unavailable",
}


def error_code_for_status(status: int) -> str:
    """The stable error code a bare HTTP status maps to."""
    return _ERROR_CODES.get(status, "client_error" if status < 500 else "server_error")


def error_body(code: str, message: str, request_id: str | None, details: Sequence[ErrorDetail] = ()) -> ErrorResponse:
    return ErrorResponse(error=ErrorBody(code=code, message=message, details=list(details), request_id=request_id))


def error_response(
    status: int,
    code: str,
    message: str,
    request_id: str | None,
    details: Sequence[ErrorDetail] = (),
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    body = error_body(code, message, request_id, details)
    return JSONResponse(body.model_dump(mode="json"), status_code=status, headers=dict(headers or {}))


class ApiError(Exception):
    """An error a route chooses to answer with: status, stable code, message, optional details and headers."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: Sequence[ErrorDetail] = (),
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = tuple(details)
        self.headers = dict(headers or {})


def _request_id(request: Request) -> str | None:
    value = getattr(request.state, "request_id", None)
    return value if isinstance(value, str) else None


_LOCATIONS = frozenset({"body", "path", "query", "header", "cookie"})


def _field_of(location: Sequence[int | str], error_type: str) -> str | None:
    # ("body", "email") -> "email"; ("path", "user_id") -> "user_id"; a JSON syntax error names no field.
    if error_type == "json_invalid":
        return None
    parts = list(location)
    if parts and parts[0] in _LOCATIONS:
        parts = parts[1:]
    return ".".join(str(part) for part in parts) or None


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


async def _on_api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.code, exc.message, _request_id(request), exc.details, exc.headers)


async def _on_http_exception(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    status = exc.status_code
    message = exc.detail if isinstance(exc.detail, str) and exc.detail else _phrase(status)
    return error_response(status, error_code_for_status(status), message, _request_id(request), headers=exc.headers)


async def _on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    details = [
        ErrorDetail(
            field=_field_of(tuple(error.get("loc", ())), str(error.get("type", ""))),
            reason=str(error.get("msg", "invalid")),
        )
        for error in exc.errors()
    ]
    return error_response(422, "validation_error", "The request is invalid.", _request_id(request), details)


def install_error_handlers(app: FastAPI) -> None:
    """Answer routing errors, validation errors and ApiError with the error shape."""
    app.add_exception_handler(ApiError, _on_api_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_exception)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
