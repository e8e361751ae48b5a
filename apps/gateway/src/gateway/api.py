"""The public HTTP API: thin routes that authenticate, call a use case and pass the app's answer on; and how each
of the gateway's errors is answered."""

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Request, Response

from contracts.api import ErrorDetail
from gateway.domain import (
    AnalyticsReport,
    ApiKeysUnavailableError,
    AuthenticationError,
    InvalidApiKeyError,
    KeysUnavailableError,
    MissingTokenError,
    Principal,
    UnknownResourceError,
    UpstreamError,
    UpstreamResponse,
    accepted_order_id,
    forwarded_request_headers,
    login_email,
    unreadable_header,
)
from gateway.handlers import ApiKeys, Authenticator, Gateway
from gateway.rate_limits import RateLimitedError, RateLimits
from gateway.settings import Settings
from sidecart_kit.errors import ApiError, DomainErrors
from sidecart_kit.service import Service, from_app_state, read_limited_body


async def refuse_unreadable_headers(request: Request) -> None:
    """Every public route starts here: a header value that is not visible ASCII is the client's mistake (400)."""
    name = unreadable_header(request.headers.raw)
    if name is not None:
        raise ApiError(
            400,
            "invalid_header",
            "A header value may hold only visible ASCII characters, spaces and tabs.",
            [ErrorDetail(field=name, reason="This header's value holds other bytes.")],
        )


def client_address(request: Request) -> str:
    """The peer of the connection (uvicorn runs without proxy headers: no X-Forwarded-For is believed)."""
    return request.client.host if request.client else "unknown"


# --- What the lifespan built (main.py), read from app.state -------------------------------------------------

SettingsDep = Annotated[Settings, Depends(from_app_state("settings"))]
GatewayDep = Annotated[Gateway, Depends(from_app_state("gateway"))]
AuthenticatorDep = Annotated[Authenticator, Depends(from_app_state("authenticator"))]
ApiKeysDep = Annotated[ApiKeys, Depends(from_app_state("api_keys"))]
RateLimitsDep = Annotated[RateLimits, Depends(from_app_state("rate_limits"))]


async def count_request(request: Request, rate_limits: RateLimitsDep) -> None:
    rate_limits.count_request(client_address(request))


router = APIRouter(dependencies=[Depends(refuse_unreadable_headers), Depends(count_request)])

# --- What each request brings ---------------------------------------------------------------------------------

AuthorizationHeader = Annotated[str | None, Header(description="Bearer <token> from POST /api/v1/auth/token")]


async def get_caller(
    authenticator: AuthenticatorDep, rate_limits: RateLimitsDep, authorization: AuthorizationHeader = None
) -> Principal:
    caller = await authenticator.authenticate(authorization)
    rate_limits.count_caller(caller.subject)
    return caller


async def authenticate_event_sender(
    authenticator: AuthenticatorDep,
    api_keys: ApiKeysDep,
    authorization: AuthorizationHeader = None,
    x_api_key: Annotated[str | None, Header(description="An API key, for machine clients instead of a token")] = None,
) -> None:
    """A signed-in user (bearer token) or a machine client (X-API-Key); an API key, when sent, is what is judged."""
    if x_api_key is not None:
        await api_keys.verify(x_api_key)
        return
    await authenticator.authenticate(authorization)


async def get_forwarded_headers(request: Request) -> dict[str, str]:
    return forwarded_request_headers(request.headers.items())


async def read_body(request: Request, settings: SettingsDep) -> bytes:
    """The request body, held to the general limit."""
    return await read_limited_body(request, settings.max_body_bytes)


async def count_login(request: Request, rate_limits: RateLimitsDep, body: Annotated[bytes, Depends(read_body)]) -> None:
    await rate_limits.count_login(client_address(request), login_email(body))


async def count_sign_up(request: Request, rate_limits: RateLimitsDep) -> None:
    await rate_limits.count_sign_up(client_address(request))


async def read_event_batch(request: Request, settings: SettingsDep) -> bytes:
    """The body of a telemetry batch, held to ingest's own limit (1 MiB) whatever the general limit is."""
    return await read_limited_body(request, settings.max_event_batch_bytes)


async def read_query(request: Request, settings: SettingsDep) -> list[tuple[str, str]]:
    """The query parameters, refused with 414 when the query string exceeds the limit (it is never trimmed)."""
    limit = settings.max_query_bytes
    if len(request.scope.get("query_string", b"")) > limit:
        raise ApiError(414, "uri_too_long", f"The query string exceeds {limit} bytes.")
    return request.query_params.multi_items()


CallerDep = Annotated[Principal, Depends(get_caller)]
EventSenderDep = Annotated[None, Depends(authenticate_event_sender)]
ForwardedHeadersDep = Annotated[dict[str, str], Depends(get_forwarded_headers)]
BodyDep = Annotated[bytes, Depends(read_body)]
EventBatchDep = Annotated[bytes, Depends(read_event_batch)]
QueryDep = Annotated[list[tuple[str, str]], Depends(read_query)]

# --- Routes ---------------------------------------------------------------------------------------------------


def _passed_on(answer: UpstreamResponse) -> Response:
    return Response(content=answer.body, status_code=answer.status, headers=dict(answer.headers))


@router.post("/api/v1/users", tags=["users"], response_class=Response, dependencies=[Depends(count_sign_up)])
async def sign_up(gateway: GatewayDep, body: BodyDep, headers: ForwardedHeadersDep) -> Response:
    """Sign up: create an account."""
    return _passed_on(await gateway.sign_up(body, headers))


@router.post("/api/v1/auth/token", tags=["auth"], response_class=Response, dependencies=[Depends(count_login)])
async def issue_token(gateway: GatewayDep, body: BodyDep, headers: ForwardedHeadersDep) -> Response:
    """Log in: exchange credentials for a bearer token."""
    return _passed_on(await gateway.issue_token(body, headers))


@router.get("/api/v1/users/me", tags=["users"], response_class=Response)
async def get_my_profile(gateway: GatewayDep, caller: CallerDep, headers: ForwardedHeadersDep) -> Response:
    """The signed-in user's profile."""
    return _passed_on(await gateway.get_profile(caller, headers))


@router.get("/api/v1/users/me/notifications", tags=["notifications"], response_class=Response)
async def list_my_notifications(gateway: GatewayDep, caller: CallerDep, headers: ForwardedHeadersDep) -> Response:
    """The signed-in user's notifications, newest first."""
    return _passed_on(await gateway.list_notifications(caller, headers))


@router.get("/api/v1/products", tags=["products"], response_class=Response)
async def list_products(gateway: GatewayDep, caller: CallerDep, headers: ForwardedHeadersDep) -> Response:
    """The products on sale."""
    return _passed_on(await gateway.list_products(headers))


@router.get("/api/v1/products/{sku}", tags=["products"], response_class=Response)
async def get_product(gateway: GatewayDep, caller: CallerDep, headers: ForwardedHeadersDep, sku: str) -> Response:
    """One product, by SKU."""
    return _passed_on(await gateway.get_product(sku, headers))


@router.get("/api/v1/users/me/wallet", tags=["payments"], response_class=Response)
async def get_my_wallet(gateway: GatewayDep, caller: CallerDep, headers: ForwardedHeadersDep) -> Response:
    """The signed-in user's wallet balance."""
    return _passed_on(await gateway.get_wallet(caller, headers))


@router.post("/api/v1/orders", tags=["orders"], status_code=202, response_class=Response)
async def place_order(
    request: Request,
    gateway: GatewayDep,
    caller: CallerDep,
    body: BodyDep,
    headers: ForwardedHeadersDep,
    # Declared so the OpenAPI document shows it; it reaches orders with the other forwarded headers.
    idempotency_key: Annotated[
        str | None, Header(description="Any unique string; the same key sent again gives the same order")
    ] = None,
) -> Response:
    """Place an order: accepted at once (202, Location of the order) while the saga reserves, charges, confirms."""
    answer = await gateway.place_order(caller, body, headers)
    response = _passed_on(answer)
    accepted = accepted_order_id(answer)
    if accepted is not None:
        response.headers["location"] = request.app.url_path_for("get_my_order", order_id=str(accepted))
    return response


@router.get("/api/v1/orders", tags=["orders"], response_class=Response)
async def list_my_orders(gateway: GatewayDep, caller: CallerDep, headers: ForwardedHeadersDep) -> Response:
    """The signed-in user's orders."""
    return _passed_on(await gateway.list_orders(caller, headers))


@router.get("/api/v1/orders/{order_id}", tags=["orders"], response_class=Response)
async def get_my_order(gateway: GatewayDep, caller: CallerDep, headers: ForwardedHeadersDep, order_id: str) -> Response:
    """One of the signed-in user's orders: its status and each step of the saga."""
    return _passed_on(await gateway.get_order(caller, order_id, headers))


@router.post("/api/v1/events", tags=["telemetry"], status_code=202, response_class=Response)
async def send_events(
    gateway: GatewayDep, sender: EventSenderDep, body: EventBatchDep, headers: ForwardedHeadersDep
) -> Response:
    """Send a batch of telemetry events (at most 1,000, 1 MiB): 202 with how many were accepted and why others not."""
    return _passed_on(await gateway.send_events(body, headers))


# The analytics reports. Of the query string only limit, type, from and to travel on (analytics validates them);
# the caller is declared before the query, so a request without a token is 401 whatever its query string.


@router.get("/api/v1/analytics/summary", tags=["analytics"], response_class=Response)
async def get_analytics_summary(
    gateway: GatewayDep, caller: CallerDep, query: QueryDep, headers: ForwardedHeadersDep
) -> Response:
    """The analytics summary report."""
    return _passed_on(await gateway.get_report(AnalyticsReport.SUMMARY, query, headers))


@router.get("/api/v1/analytics/top-products", tags=["analytics"], response_class=Response)
async def get_analytics_top_products(
    gateway: GatewayDep, caller: CallerDep, query: QueryDep, headers: ForwardedHeadersDep
) -> Response:
    """The analytics top-products report."""
    return _passed_on(await gateway.get_report(AnalyticsReport.TOP_PRODUCTS, query, headers))


@router.get("/api/v1/analytics/funnel", tags=["analytics"], response_class=Response)
async def get_analytics_funnel(
    gateway: GatewayDep, caller: CallerDep, query: QueryDep, headers: ForwardedHeadersDep
) -> Response:
    """The analytics funnel report."""
    return _passed_on(await gateway.get_report(AnalyticsReport.FUNNEL, query, headers))


@router.get("/api/v1/analytics/timeseries", tags=["analytics"], response_class=Response)
async def get_analytics_timeseries(
    gateway: GatewayDep, caller: CallerDep, query: QueryDep, headers: ForwardedHeadersDep
) -> Response:
    """The analytics timeseries report."""
    return _passed_on(await gateway.get_report(AnalyticsReport.TIMESERIES, query, headers))


# --- The gateway's errors, as the client gets them ---------------------------------------------------------


def _authentication_failed(exc: Exception) -> ApiError:
    assert isinstance(exc, AuthenticationError)
    # RFC 6750: a request without credentials gets the bare challenge, a bad token also gets error="invalid_token".
    challenge = 'Bearer realm="sidecart"'
    field = "Authorization"
    if isinstance(exc, InvalidApiKeyError):
        field = "X-API-Key"
    elif not isinstance(exc, MissingTokenError):
        challenge += f', error="invalid_token", error_description="{exc.reason}"'
    return ApiError(
        401,
        exc.code,
        "Authentication failed.",
        [ErrorDetail(field=field, reason=exc.reason)],
        {"www-authenticate": challenge},
    )


def _rate_limited(exc: Exception) -> ApiError:
    assert isinstance(exc, RateLimitedError)
    seconds = exc.retry_after_seconds
    message = f"Too many requests (the limit per {exc.scope}). Try again in {seconds} s."
    return ApiError(429, "rate_limited", message, headers={"retry-after": str(seconds)})


def _upstream_failed(exc: Exception) -> ApiError:
    assert isinstance(exc, UpstreamError)
    return ApiError(exc.status, exc.code, exc.message, headers={"retry-after": "2"} if exc.status == 503 else {})


DOMAIN_ERRORS: DomainErrors = {
    AuthenticationError: _authentication_failed,
    KeysUnavailableError: lambda exc: ApiError(
        503,
        "auth_unavailable",
        "Tokens cannot be verified right now: the signing keys are unavailable.",
        headers={"retry-after": "5"},
    ),
    ApiKeysUnavailableError: lambda exc: ApiError(
        503,
        "auth_unavailable",
        "API keys cannot be checked right now: the secret store is unavailable.",
        headers={"retry-after": "5"},
    ),
    UnknownResourceError: lambda exc: ApiError(404, "not_found", str(exc)),
    RateLimitedError: _rate_limited,
    UpstreamError: _upstream_failed,
}

# Public: no app token, the gateway is the public edge, called by clients rather than by its sidecar.
SERVICE = Service(
    "gateway",
    "The public entry point: verifies tokens and routes each call to its app through Dapr.",
    routers=[router],
    domain_errors=DOMAIN_ERRORS,
    public=True,
)
