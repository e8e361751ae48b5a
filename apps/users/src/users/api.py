"""HTTP routes of users (the gateway reaches them through Dapr service invocation) and how its errors answer."""

from datetime import datetime
from typing import Annotated, Any, Literal, Protocol
from uuid import UUID

from fastapi import APIRouter, Depends, status
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    EmailStr,
    Field,
    StringConstraints,
)

from contracts.api import ErrorResponse
from contracts.users import normalise_email
from sidecart_kit.errors import ApiError, DomainErrors
from sidecart_kit.service import Service, from_app_state
from users.domain import (
    NAME_MAX_LENGTH,
    PASSWORD_MAX_LENGTH,
    PASSWORD_MIN_LENGTH,
    EmailTakenError,
    InvalidCredentialsError,
    User,
    UserNotFoundError,
    has_ascii_local_part,
)
from users.handlers import LogIn, RegisterUser, Users

# --- request and response bodies -----------------------------------------------------------------------


def _normalised(value: Any) -> Any:
    return normalise_email(value) if isinstance(value, str) else value


def _ascii_local_part(email: str) -> str:
    if not has_ascii_local_part(email):
        raise ValueError("the part before the @ may hold only ASCII characters")
    return email


# Normalised before the address is validated too: a full-width at sign is an '@' once folded.
Email = Annotated[
    EmailStr, BeforeValidator(_normalised), AfterValidator(normalise_email), AfterValidator(_ascii_local_part)
]
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


# --- dependencies: what the lifespan built once, read from app.state -----------------------------------


class KeySet(Protocol):
    def jwks(self) -> dict[str, list[dict[str, str]]]: ...


UsersDep = Annotated[Users, Depends(from_app_state("users"))]
KeySetDep = Annotated[KeySet, Depends(from_app_state("key_set"))]


# --- routes --------------------------------------------------------------------------------------------


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": ErrorResponse} for code in codes}


# The probes (/healthz, /readyz) are the kit's; the rest answers only the sidecar when an app token is configured.
router = APIRouter(responses=_errors(401, 422, 503))


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


@router.get("/.well-known/jwks.json")
async def jwks(key_set: KeySetDep) -> Jwks:
    """The public keys that verify this service's tokens (JWKS, RFC 7517)."""
    return Jwks.model_validate(key_set.jwks())


# --- how the domain's errors answer --------------------------------------------------------------------

DOMAIN_ERRORS: DomainErrors = {
    EmailTakenError: lambda _: ApiError(409, "email_taken", "A user with this e-mail address already exists."),
    InvalidCredentialsError: lambda _: ApiError(
        401, "invalid_credentials", "The e-mail or password is incorrect.", headers={"WWW-Authenticate": "Bearer"}
    ),
    UserNotFoundError: lambda _: ApiError(404, "user_not_found", "No user with this id."),
}

SERVICE = Service(
    "users",
    "Sign-up, login (RS256 JWTs) and profiles, reached through Dapr service invocation.",
    routers=[router],
    domain_errors=DOMAIN_ERRORS,
)
