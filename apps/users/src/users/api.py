"""HTTP routes of users (the gateway reaches them through Dapr service invocation) and their error shape."""

import hmac
from collections.abc import Mapping
from datetime import datetime
from http import HTTPStatus
from typing import Annotated, Any, Literal, Protocol
from uuid import UUID

from fastapi import APIRouter, Depends, FastAPI, Header, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    EmailStr,
    Field,
    StringConstraints,
)
from starlette.exceptions import HTTPException as StarletteHTTPException

from contracts.api import ErrorBody, ErrorDetail, ErrorResponse
from users.domain import (
    NAME_MAX_LENGTH,
    PASSWORD_MAX_LENGTH,
    PASSWORD_MIN_LENGTH,
    EmailTakenError,
    InvalidCredentialsError,
    User,
    UserNotFoundError,
    normalise_email,
)
from users.handlers import LogIn, RegisterUser, StoreUnavailableError, Users
from users.settings import Settings

# --- request and response bodies -----------------------------------------------------------------------


def _strip(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


Email = Annotated[EmailStr, BeforeValidator(_strip), AfterValidator(normalise_email)]
Password = Annotated[str, Field(min_length=PASSWORD_MIN_LENGTH, max_length=PASSWORD_MAX_LENGTH)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=NAME_MAX_LENGTH)]


class RegisterRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    email: Email
    password: Password
    name: Name


class TokenRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    email: Email
    # No length rule here beyond sanity: telling a caller the rule would only help guessing.
    password: Annotated[str, Field(min_length=1, max_length=PASSWORD_MAX_LENGTH)]


class RegisteredUser(BaseModel):
    id: UUID
    email: str
    name: str


class UserProfile(RegisteredUser):
    created_at: datetime


class TokenResponse(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 (the OAuth 2 token type)
    expires_in: int


class Status(BaseModel):
    status: str


class Jwks(BaseModel):
    keys: list[dict[str, str]]


# --- dependencies --------------------------------------------------------------------------------------


class KeySet(Protocol):
    def jwks(self) -> dict[str, list[dict[str, str]]]: ...


class SidecarProbe(Protocol):
    async def is_ready(self) -> bool: ...


async def get_users(request: Request) -> Users:
    users: Users = request.app.state.users
    return users


async def get_key_set(request: Request) -> KeySet:
    key_set: KeySet = request.app.state.key_set
    return key_set


async def get_sidecar_probe(request: Request) -> SidecarProbe:
    probe: SidecarProbe = request.app.state.sidecar_probe
    return probe


async def get_app_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


UsersDep = Annotated[Users, Depends(get_users)]
KeySetDep = Annotated[KeySet, Depends(get_key_set)]
SidecarProbeDep = Annotated[SidecarProbe, Depends(get_sidecar_probe)]
SettingsDep = Annotated[Settings, Depends(get_app_settings)]


class UnauthorizedError(Exception):
    """The call did not come through our sidecar (wrong or missing app token)."""


async def require_app_token(
    settings: SettingsDep, dapr_api_token: Annotated[str | None, Header(include_in_schema=False)] = None
) -> None:
    """When APP_API_TOKEN is set, only the sidecar (which sends it as dapr-api-token) may call the app."""
    expected = settings.app_api_token
    if expected is None:
        return
    if dapr_api_token is None or not hmac.compare_digest(dapr_api_token, expected.get_secret_value()):
        raise UnauthorizedError


# --- routes --------------------------------------------------------------------------------------------


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": ErrorResponse} for code in codes}


# Probes and public keys answer anyone; the rest only the sidecar when an app token is configured.
open_router = APIRouter()
router = APIRouter(dependencies=[Depends(require_app_token)], responses=_errors(401, 422, 503))


@open_router.get("/healthz")
async def healthz() -> Status:
    """Liveness: the process answers."""
    return Status(status="ok")


@open_router.get("/readyz", responses=_errors(503))
async def readyz(probe: SidecarProbeDep) -> Status:
    """Readiness: the process and its Dapr sidecar both answer."""
    if not await probe.is_ready():
        raise StoreUnavailableError("the Dapr sidecar is not ready")
    return Status(status="ready")


@router.post("/users", status_code=status.HTTP_201_CREATED, responses=_errors(409))
async def register(body: RegisterRequest, users: UsersDep) -> RegisteredUser:
    """Registers a user; the e-mail address must be unused."""
    user = await users.register(RegisterUser(email=body.email, password=body.password, name=body.name))
    return RegisteredUser(id=user.id, email=user.email, name=user.name)


@router.post("/auth/token")
async def issue_token(body: TokenRequest, users: UsersDep) -> TokenResponse:
    """Exchanges an e-mail and password for a signed access token (RS256 JWT)."""
    token = await users.log_in(LogIn(email=body.email, password=body.password))
    return TokenResponse(access_token=token.access_token, expires_in=token.expires_in)


@router.get("/users/{user_id}", responses=_errors(404))
async def get_user(user_id: str, users: UsersDep) -> UserProfile:
    """One user's profile; an id that is not a UUID names no user, so it is a 404 too."""
    try:
        parsed = UUID(user_id)
    except ValueError:
        raise UserNotFoundError(user_id) from None
    user: User = await users.get(parsed)
    return UserProfile(id=user.id, email=user.email, name=user.name, created_at=user.created_at)


@open_router.get("/.well-known/jwks.json")
async def jwks(key_set: KeySetDep) -> Jwks:
    """The public keys that verify this service's tokens (JWKS, RFC 7517)."""
    return Jwks.model_validate(key_set.jwks())


# --- errors --------------------------------------------------------------------------------------------

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "too_many_requests",
}
_REQUEST_PARTS = frozenset({"body", "query", "path", "header", "cookie"})


def error_response(
    request: Request,
    status_code: int,
    code: str,
    message: str,
    details: list[ErrorDetail] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    request_id = getattr(request.state, "request_id", None)
    body = ErrorResponse(error=ErrorBody(code=code, message=message, details=details or [], request_id=request_id))
    return JSONResponse(body.model_dump(mode="json"), status_code=status_code, headers=headers)


def _detail(error: dict[str, Any]) -> ErrorDetail:
    if error.get("type") == "json_invalid":
        return ErrorDetail(field=None, reason="The request body is not valid JSON.")
    location = [str(part) for part in error.get("loc", ())]
    if location and location[0] in _REQUEST_PARTS:
        location = location[1:]
    if not location:
        if error.get("type") == "missing":
            return ErrorDetail(field=None, reason="A JSON request body is required.")
        return ErrorDetail(field=None, reason="The request body must be a JSON object.")
    return ErrorDetail(field=".".join(location), reason=str(error.get("msg", "Invalid value.")))


async def _on_validation_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    details = [_detail(e) for e in error.errors()]
    return error_response(request, 422, "validation_error", "The request is not valid.", details)


async def _on_http_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, StarletteHTTPException)
    code = _CODES.get(error.status_code, "internal_error" if error.status_code >= 500 else "bad_request")
    message = HTTPStatus(error.status_code).phrase + "."
    return error_response(request, error.status_code, code, message, headers=error.headers)


async def _on_email_taken(request: Request, _: Exception) -> JSONResponse:
    return error_response(request, 409, "email_taken", "A user with this e-mail address already exists.")


async def _on_invalid_credentials(request: Request, _: Exception) -> JSONResponse:
    return error_response(
        request,
        401,
        "invalid_credentials",
        "The e-mail or password is incorrect.",
        headers={"WWW-Authenticate": "Bearer"},
    )


async def _on_user_not_found(request: Request, _: Exception) -> JSONResponse:
    return error_response(request, 404, "user_not_found", "No user with this id.")


async def _on_unauthorized(request: Request, _: Exception) -> JSONResponse:
    return error_response(request, 401, "unauthorized", "This service is reached through its Dapr sidecar only.")


async def _on_unavailable(request: Request, _: Exception) -> JSONResponse:
    return error_response(
        request,
        503,
        "unavailable",
        "The service is unavailable, try again shortly.",
        headers={"Retry-After": "1"},
    )


def install_error_handlers(app: FastAPI) -> None:
    """Every error, whoever raises it, leaves in the one contracts.api.ErrorResponse shape."""
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(EmailTakenError, _on_email_taken)
    app.add_exception_handler(InvalidCredentialsError, _on_invalid_credentials)
    app.add_exception_handler(UserNotFoundError, _on_user_not_found)
    app.add_exception_handler(UnauthorizedError, _on_unauthorized)
    app.add_exception_handler(StoreUnavailableError, _on_unavailable)
