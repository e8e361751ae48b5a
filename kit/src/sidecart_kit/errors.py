"""One error shape for every answer that is not a success: contracts.api.ErrorResponse, whatever raised it.

A route raises ApiError; a service names how each of its domain errors is answered in one table (exception type ->
ApiError) handed to install_error_handlers; FastAPI's routing and validation errors are rendered the same way, and
an exception nothing handles becomes the one 500 (see sidecart_kit.service).
"""

from collections.abc import Callable, Mapping, Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from contracts.api import ErrorBody, ErrorDetail, ErrorResponse
from sidecart_kit.logs import get_logger
from sidecart_kit.requests import current_request_id

log = get_logger(__name__)

ERROR_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    410: "gone",
    413: "payload_too_large",
    414: "uri_too_long",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "too_many_requests",
    500: "internal_error",
    502: "bad_gateway",
    503: "service_unavailable",
    504: "gateway_timeout",
}
INTERNAL_ERROR_MESSAGE = "Internal server error."


def error_code_for_status(status: int) -> str:
    """The stable error code a bare HTTP status maps to."""
    return ERROR_CODES.get(status, "client_error" if status < 500 else "server_error")


def error_body(code: str, message: str, details: Sequence[ErrorDetail] = ()) -> ErrorResponse:
    """The error shape, carrying the id of the request being answered."""
    return ErrorResponse(
        error=ErrorBody(code=code, message=message, details=list(details), request_id=current_request_id())
    )


def error_response(
    status: int,
    code: str,
    message: str,
    details: Sequence[ErrorDetail] = (),
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    body = error_body(code, message, details)
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

    def response(self) -> JSONResponse:
        return error_response(self.status, self.code, self.message, self.details, self.headers)


def error_responses(descriptions: Mapping[int, str]) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI `responses` of a route or router: each status with the error shape and what it means."""
    return {status: {"model": ErrorResponse, "description": text} for status, text in descriptions.items()}


# How a service answers each of its own errors: the exception type, and the ApiError it becomes.
DomainErrors = Mapping[type[Exception], Callable[[Exception], ApiError]]


def unavailable(
    message: str, *, retry_after_seconds: int, code: str = "unavailable"
) -> Callable[[Exception], ApiError]:
    """The answer to an error that passes (a store or a peer down for now): 503, and when to try again."""
    return lambda exc: ApiError(503, code, message, headers={"retry-after": str(retry_after_seconds)})


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
    return exc.response()


async def _on_http_exception(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    status = exc.status_code
    message = exc.detail if isinstance(exc.detail, str) and exc.detail else _phrase(status)
    return error_response(status, error_code_for_status(status), message, headers=exc.headers)


async def _on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    details = [
        ErrorDetail(
            field=_field_of(tuple(error.get("loc", ())), str(error.get("type", ""))),
            reason=str(error.get("msg", "invalid")),
        )
        for error in exc.errors()
    ]
    return error_response(422, "validation_error", "The request is invalid.", details)


def _domain_handler(answer: Callable[[Exception], ApiError]) -> Callable[[Request, Exception], object]:
    async def handle(request: Request, exc: Exception) -> JSONResponse:
        error = answer(exc)
        if error.status >= 500:
            log.warning("request_failed", code=error.code, error=str(exc))
        return error.response()

    return handle


def install_error_handlers(app: FastAPI, domain_errors: DomainErrors | None = None) -> None:
    """Answer ApiError, routing and validation errors, and the service's own errors with the error shape."""
    app.add_exception_handler(ApiError, _on_api_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_exception)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    for error_type, answer in (domain_errors or {}).items():
        app.add_exception_handler(error_type, _domain_handler(answer))  # type: ignore[arg-type]
