"""The gateway's rules: which tokens it trusts, which headers cross the edge, how upstream answers map.

Plain Python: no routes, no Dapr (only the kit's error codes for bare statuses). Token checks use PyJWT with the
algorithm pinned, so a token can never choose how it is verified.
"""

import hmac
import json
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any
from urllib.parse import urlencode
from uuid import UUID

import jwt
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey
from pydantic import ValidationError

from contracts.api import ErrorBody, ErrorResponse
from contracts.products import SKU_PATTERN
from sidecart_kit.errors import error_code_for_status

ALGORITHM = "RS256"
MIN_RSA_KEY_BITS = 2048
REQUIRED_CLAIMS = ("exp", "iat", "sub", "iss", "aud")
# The subject becomes a path segment of an upstream call, so it must be a plain identifier (users issues UUIDs).
_ACCEPTABLE_SUBJECT = re.compile(r"[A-Za-z0-9_~-][A-Za-z0-9._~-]{0,127}")
# So do SKUs and order ids from the public path; an id that cannot exist is refused before any app is asked.
_ACCEPTABLE_SKU = re.compile(SKU_PATTERN)
# Anything but tab, space and visible ASCII. A compiled search: a Python loop over each header byte cost ~20 µs a
# request (with a bearer token), this ~3 µs.
_UNREADABLE_BYTE = re.compile(rb"[^\t\x20-\x7e]")
_CANONICAL_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


# --- Authentication -------------------------------------------------------------------------------------------


class AuthenticationError(Exception):
    """The request does not prove who sent it: answered 401 with WWW-Authenticate: Bearer."""

    code = "invalid_token"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class MissingTokenError(AuthenticationError):
    code = "missing_token"


class InvalidTokenError(AuthenticationError):
    code = "invalid_token"


class InvalidApiKeyError(AuthenticationError):
    code = "invalid_api_key"


class KeysUnavailableError(Exception):
    """The users service's signing keys cannot be had: the gateway cannot judge any token (503, not 401)."""


class ApiKeysUnavailableError(Exception):
    """The valid API keys cannot be read from the secret store: no API key can be judged (503, not 401)."""


class InvalidKeySetError(ValueError):
    """A JWKS document without a single usable RS256 verification key."""


@dataclass(frozen=True)
class TokenPolicy:
    issuer: str
    audience: str
    leeway_seconds: float


@dataclass(frozen=True)
class Principal:
    """The caller, as the verified token names them. The only source of identity the gateway has."""

    subject: str


def bearer_token(authorization: str | None) -> str:
    """The token of an `Authorization: Bearer <token>` header."""
    if authorization is None or not authorization.strip():
        raise MissingTokenError("the request carries no bearer token")
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or any(char.isspace() for char in token):
        raise InvalidTokenError("the Authorization header is not 'Bearer <token>'")
    return token


def signing_key_id(token: str) -> str | None:
    """The `kid` a token names, once its header shows the one algorithm accepted."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.InvalidTokenError as exc:
        raise InvalidTokenError("the token is malformed") from exc
    if header.get("alg") != ALGORITHM:
        raise InvalidTokenError(f"the token is not signed with {ALGORITHM}")
    kid = header.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise InvalidTokenError("the token's key id is malformed")
    return kid


@dataclass(frozen=True)
class KeySet:
    """The RS256 public keys of a JWKS document, by key id."""

    by_kid: Mapping[str, RSAPublicKey]
    without_kid: tuple[RSAPublicKey, ...] = ()

    @classmethod
    def from_jwks(cls, document: object) -> "KeySet":
        """Keeps only RSA signature keys of at least 2048 bits usable with RS256; ignores the rest."""
        if not isinstance(document, Mapping) or not isinstance(document.get("keys"), list):
            raise InvalidKeySetError("the document is not a JWKS (no 'keys' list)")
        by_kid: dict[str, RSAPublicKey] = {}
        without_kid: list[RSAPublicKey] = []
        for jwk in document["keys"]:
            key = _verification_key(jwk)
            if key is None:
                continue
            kid = jwk.get("kid")
            if isinstance(kid, str) and kid:
                by_kid[kid] = key
            else:
                without_kid.append(key)
        if not by_kid and not without_kid:
            raise InvalidKeySetError(f"the JWKS holds no usable {ALGORITHM} key")
        return cls(by_kid=by_kid, without_kid=tuple(without_kid))

    def find(self, kid: str | None) -> RSAPublicKey | None:
        """The key a token names; a token without `kid` is accepted only when the set holds a single key."""
        if kid is not None:
            return self.by_kid.get(kid)
        every_key = [*self.by_kid.values(), *self.without_kid]
        return every_key[0] if len(every_key) == 1 else None


def _verification_key(jwk: object) -> RSAPublicKey | None:
    if not isinstance(jwk, Mapping) or jwk.get("kty") != "RSA":
        return None
    if jwk.get("use", "sig") != "sig" or jwk.get("alg", ALGORITHM) != ALGORITHM:
        return None
    try:
        key = jwt.PyJWK(dict(jwk), algorithm=ALGORITHM).key
    except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError):
        return None
    if isinstance(key, RSAPrivateKey):  # a JWKS should never publish one, but only the public half is needed
        key = key.public_key()
    if not isinstance(key, RSAPublicKey) or key.key_size < MIN_RSA_KEY_BITS:
        return None
    return key


@dataclass(frozen=True)
class VerifiedToken:
    """A token whose signature, issuer and audience were checked, and the times it is valid between (seconds since
    the epoch), so that it can be accepted again without checking its signature again while they hold."""

    principal: Principal
    issued_at: float
    expires_at: float
    not_before: float | None

    def still_valid(self, now: float, leeway_seconds: float) -> bool:
        """As PyJWT judges exp, nbf and iat (each with the leeway), at `now`."""
        if self.expires_at <= now - leeway_seconds or self.issued_at > now + leeway_seconds:
            return False
        return self.not_before is None or self.not_before <= now + leeway_seconds


def verify_token(token: str, key: RSAPublicKey, policy: TokenPolicy) -> VerifiedToken:
    """Checks signature, expiry, issuer and audience; returns who the token speaks for and when it is valid."""
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=[ALGORITHM],
            audience=policy.audience,
            issuer=policy.issuer,
            leeway=policy.leeway_seconds,
            options={"require": list(REQUIRED_CLAIMS)},
        )
    except jwt.ExpiredSignatureError as exc:
        raise InvalidTokenError("the token has expired") from exc
    except jwt.ImmatureSignatureError as exc:
        raise InvalidTokenError("the token is not valid yet") from exc
    except jwt.MissingRequiredClaimError as exc:
        raise InvalidTokenError(f"the token lacks the '{exc.claim}' claim") from exc
    except jwt.InvalidAudienceError as exc:
        raise InvalidTokenError("the token is meant for another audience") from exc
    except jwt.InvalidIssuerError as exc:
        raise InvalidTokenError("the token was issued by an untrusted issuer") from exc
    except jwt.InvalidSignatureError as exc:
        raise InvalidTokenError("the token's signature does not verify") from exc
    except jwt.InvalidTokenError as exc:
        raise InvalidTokenError("the token is invalid") from exc
    subject = claims["sub"]
    if not isinstance(subject, str) or not _ACCEPTABLE_SUBJECT.fullmatch(subject):
        raise InvalidTokenError("the token's subject is not an acceptable user id")
    not_before = claims.get("nbf")
    return VerifiedToken(
        Principal(subject=subject),
        issued_at=float(claims["iat"]),
        expires_at=float(claims["exp"]),
        not_before=None if not_before is None else float(not_before),
    )


def parse_api_keys(secret_value: str) -> frozenset[str]:
    """The keys of a comma-separated secret value; blanks around and between commas are ignored."""
    return frozenset(key.strip() for key in secret_value.split(",") if key.strip())


def api_key_matches(candidate: str, keys: Iterable[str]) -> bool:
    """Whether `candidate` is one of `keys`, comparing in constant time and always against every key."""
    offered = candidate.encode()
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(offered, key.encode())
    return matched


# --- Resources ------------------------------------------------------------------------------------------------


class UnknownResourceError(Exception):
    """The path names something that cannot exist, such as a malformed id: 404, and no app is asked."""


def parse_sku(value: str) -> str:
    """A SKU from the public path: 1 to 64 of A-Z a-z 0-9 . _ -, and never a dot segment ('.', '..')."""
    if not _ACCEPTABLE_SKU.fullmatch(value) or not value.strip("."):  # see contracts.products
        raise UnknownResourceError("No product has this SKU.")
    return value


def parse_order_id(value: str) -> UUID:
    """An order id from the public path: a UUID in its canonical 8-4-4-4-12 form (either case)."""
    if not _CANONICAL_UUID.fullmatch(value):
        raise UnknownResourceError("No order has this id.")
    return UUID(value)


class AnalyticsReport(StrEnum):
    """The analytics reports the public API serves: the only methods of analytics a public route can reach."""

    SUMMARY = "summary"
    TOP_PRODUCTS = "top-products"
    FUNNEL = "funnel"
    TIMESERIES = "timeseries"


# The query parameters the reports take. Analytics validates the values (and answers 422); the gateway only decides
# which names cross, so nothing else a client appends reaches the app.
ANALYTICS_QUERY_PARAMETERS = frozenset({"limit", "type", "from", "to"})


def forwarded_query(pairs: Iterable[tuple[str, str]], allowed: Collection[str]) -> str:
    """The query string that travels on: the allowed parameters only (names match exactly), in the client's order.

    The values are decoded and encoded again, so whatever a client sends becomes plain percent-encoded data: it can
    add no parameter and never change the path.
    """
    return urlencode([(name, value) for name, value in pairs if name in allowed])


# --- Forwarding -----------------------------------------------------------------------------------------------

# Allow-lists, not deny-lists: hop-by-hop headers, cookies, credentials and anything aimed at the sidecar
# (dapr-api-token, dapr-app-id) never cross the edge, whatever a client sends.
# Idempotency-Key travels so that orders, which keeps the keys, can answer a retried POST with the same order.
# The request id and the trace context are not copied here: the kit's sidecar client adds the ones the kit
# accepted from the client to every call.
FORWARDED_REQUEST_HEADERS = frozenset({"accept", "accept-language", "content-type", "idempotency-key"})
RETURNED_RESPONSE_HEADERS = frozenset(
    {"cache-control", "content-language", "content-type", "etag", "retry-after", "www-authenticate"}
)


@dataclass(frozen=True)
class UpstreamRequest:
    """A call to another app's method, made through the sidecar."""

    method: str
    path: str
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    query: str = ""  # already encoded, without the "?"


@dataclass(frozen=True)
class UpstreamResponse:
    """What the other app answered (the sidecar's own failures are UpstreamError instead)."""

    status: int
    headers: Mapping[str, str]
    body: bytes


class UpstreamError(Exception):
    """The call did not reach the app or got no usable answer. Never the client's fault, never a 500."""

    status = 502
    code = "bad_gateway"
    message = "The service behind the gateway gave no usable answer."

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class SidecarUnreachableError(UpstreamError):
    status = 503
    code = "sidecar_unavailable"
    message = "The gateway cannot reach its Dapr sidecar."


class InvocationFailedError(UpstreamError):
    """The sidecar answered with its own error (ERR_DIRECT_INVOKE...): the app is down, unknown or not allowed."""

    status = 503
    code = "upstream_unavailable"
    message = "The service behind the gateway is unavailable."


class UpstreamTimeoutError(UpstreamError):
    status = 504
    code = "upstream_timeout"
    message = "The service behind the gateway did not answer in time."


class BadUpstreamResponseError(UpstreamError):
    """The app answered, but not usably (a 5xx outside the error shape, an unreadable success): 502 bad_gateway."""


def login_email(body: bytes) -> str | None:
    """The e-mail address a login body names, for the per-account limit (None when it names none: users will
    answer 422 for it)."""
    try:
        email = json.loads(body).get("email")
    except (ValueError, AttributeError):
        return None
    return email if isinstance(email, str) else None


def unreadable_header(raw_headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The name of the first header whose value is not visible ASCII, spaces and tabs (None: all are readable).

    HTTP lets a value carry other bytes (obs-text), but no header of this API needs them, and a value that is
    read as Latin-1 here and must be encoded again to travel on is where a 500 hides. Refusing them all at the
    edge covers the whole class: the headers the gateway reads itself and the ones it forwards."""
    for name, value in raw_headers:
        if _UNREADABLE_BYTE.search(value):
            return name.decode("latin-1").lower()
    return None


def forwarded_request_headers(incoming: Iterable[tuple[str, str]]) -> dict[str, str]:
    """The client's headers that travel on to the app."""
    return {name.lower(): value for name, value in incoming if name.lower() in FORWARDED_REQUEST_HEADERS}


def returned_response_headers(upstream: Mapping[str, str]) -> dict[str, str]:
    """The app's headers that travel back to the client."""
    return {name.lower(): value for name, value in upstream.items() if name.lower() in RETURNED_RESPONSE_HEADERS}


def client_response(upstream: UpstreamResponse, request_id: str | None) -> UpstreamResponse:
    """The answer the client gets: the app's own, except that every error leaves in the Sidecart error shape.

    An app error already in the shape passes through; another 4xx is wrapped keeping its status; a 5xx that is not
    in the shape means the app failed in a way it did not report, so the client gets 502.
    """
    headers = returned_response_headers(upstream.headers)
    if upstream.status < 400 or _is_error_shape(upstream.body):
        return UpstreamResponse(upstream.status, headers, upstream.body)
    if upstream.status >= 500:
        raise BadUpstreamResponseError(f"the app answered {upstream.status} outside the error shape")
    wrapped = ErrorResponse(
        error=ErrorBody(
            code=error_code_for_status(upstream.status), message="The request was refused.", request_id=request_id
        )
    )
    headers["content-type"] = "application/json"
    return UpstreamResponse(upstream.status, headers, wrapped.model_dump_json().encode())


def _is_error_shape(body: bytes) -> bool:
    try:
        ErrorResponse.model_validate(json.loads(body))
    except (ValueError, ValidationError):
        return False
    return True


def accepted_order_id(answer: UpstreamResponse) -> UUID | None:
    """The order a successful answer to placing one names (None for an error answer).

    The client is pointed at the order's public path, never at the Location the app gave (its own path), so a
    success that does not name its order is an answer the gateway cannot use.
    """
    if not 200 <= answer.status < 300:
        return None
    try:
        body: Any = json.loads(answer.body)
        return UUID(str(body["order_id"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise BadUpstreamResponseError("orders accepted an order without naming it") from exc
