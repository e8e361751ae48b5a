"""Token rules, key parsing, API keys, header allow-lists and the mapping of app answers."""

import base64
import json
import time
import uuid
from typing import Any

import pytest

from gateway.domain import (
    ANALYTICS_QUERY_PARAMETERS,
    BadUpstreamResponseError,
    InvalidKeySetError,
    InvalidTokenError,
    KeySet,
    MissingTokenError,
    TokenPolicy,
    UnknownResourceError,
    UpstreamResponse,
    accepted_order_id,
    api_key_matches,
    bearer_token,
    client_response,
    forwarded_query,
    forwarded_request_headers,
    parse_order_id,
    parse_sku,
    signing_key_id,
    verify_token,
)

POLICY = TokenPolicy(issuer="sidecart-users", audience="sidecart", leeway_seconds=10)


# --- bearer_token -------------------------------------------------------------------------------------------


def test_bearer_token_reads_the_token() -> None:
    assert bearer_token("Bearer abc.def.ghi") == "abc.def.ghi"
    assert bearer_token("bearer abc.def.ghi") == "abc.def.ghi"


@pytest.mark.parametrize("header", [None, "", "   "])
def test_absent_header_is_a_missing_token(header: str | None) -> None:
    with pytest.raises(MissingTokenError):
        bearer_token(header)


@pytest.mark.parametrize("header", ["Basic dXNlcjpwdw==", "Bearer", "Bearer ", "Bearer a b", "Token abc", "abc"])
def test_malformed_header_is_an_invalid_token(header: str) -> None:
    with pytest.raises(InvalidTokenError):
        bearer_token(header)


# --- signing_key_id -----------------------------------------------------------------------------------------


def test_signing_key_id_reads_kid(signer: Any) -> None:
    assert signing_key_id(signer.token()) == "key-1"


def test_signing_key_id_allows_no_kid(signer: Any) -> None:
    assert signing_key_id(signer.token(kid=None)) is None


@pytest.mark.parametrize("token", ["not-a-jwt", "a.b.c", "", "...."])
def test_garbage_token_is_invalid(token: str) -> None:
    with pytest.raises(InvalidTokenError, match="malformed"):
        signing_key_id(token)


@pytest.mark.parametrize("alg", ["none", "HS256", "RS512", "PS256", "ES256"])
def test_only_rs256_headers_pass(alg: str, forge: Any, claims: Any) -> None:
    token = forge({"alg": alg, "typ": "JWT", "kid": "key-1"}, claims(), None if alg == "none" else b"secret")
    with pytest.raises(InvalidTokenError, match="RS256"):
        signing_key_id(token)


# --- KeySet -------------------------------------------------------------------------------------------------


def test_keyset_keeps_rs256_signature_keys_by_kid(signer: Any, other_signer: Any) -> None:
    keys = KeySet.from_jwks({"keys": [signer.jwk(), other_signer.jwk()]})
    assert set(keys.by_kid) == {"key-1", "key-2"}
    assert keys.find("key-2") is not None
    assert keys.find("key-3") is None


def test_keyset_ignores_keys_that_must_not_verify_rs256(signer: Any, small_signer: Any) -> None:
    document = {
        "keys": [
            {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0", "alg": "HS256"},
            {"kty": "EC", "kid": "ec", "crv": "P-256", "x": "AA", "y": "AA"},
            signer.jwk(kid="for-encryption", use="enc"),
            signer.jwk(kid="pss", alg="PS256"),
            small_signer.jwk(),  # 1024 bits
            "not a key",
            signer.jwk(),
        ]
    }
    keys = KeySet.from_jwks(document)
    assert set(keys.by_kid) == {"key-1"}


@pytest.mark.parametrize("document", [{}, {"keys": []}, {"keys": "x"}, [], "jwks", {"keys": [{"kty": "oct"}]}])
def test_keyset_without_a_usable_key_is_refused(document: object) -> None:
    with pytest.raises(InvalidKeySetError):
        KeySet.from_jwks(document)


def test_token_without_kid_uses_the_only_key(signer: Any, other_signer: Any) -> None:
    assert KeySet.from_jwks({"keys": [signer.jwk()]}).find(None) is not None
    assert KeySet.from_jwks({"keys": [signer.jwk(), other_signer.jwk()]}).find(None) is None


# --- verify_token -------------------------------------------------------------------------------------------


def _key(signer: Any) -> Any:
    return signer.private_key.public_key()


def test_valid_token_names_its_subject(signer: Any) -> None:
    token = signer.token(sub="6f1c2a4e-2b0b-4bb8-9a57-6f0a1d2f9c11")
    assert verify_token(token, _key(signer), POLICY).principal.subject == "6f1c2a4e-2b0b-4bb8-9a57-6f0a1d2f9c11"


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"exp": int(time.time()) - 60}, "expired"),
        ({"aud": "someone-else"}, "audience"),
        ({"iss": "evil-issuer"}, "issuer"),
        ({"iat": int(time.time()) + 3600}, "not valid yet"),
        ({"exp": None}, "'exp'"),
        ({"iat": None}, "'iat'"),
        ({"sub": None}, "'sub'"),
        ({"iss": None}, "'iss'"),
        ({"aud": None}, "'aud'"),
        ({"sub": "../admin"}, "subject"),
        ({"sub": "a/b"}, "subject"),
    ],
)
def test_token_failing_a_check_is_refused(signer: Any, claims: dict[str, Any], reason: str) -> None:
    with pytest.raises(InvalidTokenError, match=reason):
        verify_token(signer.token(**claims), _key(signer), POLICY)


def test_small_leeway_tolerates_clock_skew(signer: Any) -> None:
    token = signer.token(exp=int(time.time()) - 5)
    assert verify_token(token, _key(signer), POLICY).principal.subject


def test_signature_by_another_key_is_refused(signer: Any, other_signer: Any) -> None:
    token = other_signer.token(kid="key-1")
    with pytest.raises(InvalidTokenError, match="signature"):
        verify_token(token, _key(signer), POLICY)


def test_tampered_payload_is_refused(signer: Any, claims: Any) -> None:
    header, _, signature = signer.token().split(".")
    forged_payload = json.dumps(claims(subject="someone-else")).encode()
    payload = base64.urlsafe_b64encode(forged_payload).rstrip(b"=").decode()
    with pytest.raises(InvalidTokenError):
        verify_token(f"{header}.{payload}.{signature}", _key(signer), POLICY)


def test_hs256_signed_with_the_public_key_is_refused(signer: Any, forge: Any, claims: Any) -> None:
    # The classic key-confusion attack: HMAC keyed with the public key a verifier already trusts.
    token = forge({"alg": "HS256", "typ": "JWT", "kid": "key-1"}, claims(), signer.public_pem())
    with pytest.raises(InvalidTokenError):
        verify_token(token, _key(signer), POLICY)


# --- API keys -----------------------------------------------------------------------------------------------


def test_api_key_matches_only_whole_keys() -> None:
    assert api_key_matches("a", {"b", "a"})
    assert not api_key_matches("a", {"ab", "ba"})
    assert not api_key_matches("", set())


# --- forwarding ---------------------------------------------------------------------------------------------


def test_only_allowed_request_headers_are_forwarded() -> None:
    incoming = [
        ("Content-Type", "application/json"),
        ("Accept", "application/json"),
        ("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
        ("tracestate", "congo=t61rcWkgMzE"),
        ("Authorization", "Bearer secret"),
        ("Cookie", "session=1"),
        ("Connection", "keep-alive"),
        ("Transfer-Encoding", "chunked"),
        ("Host", "evil.example"),
        ("Content-Length", "12"),
        ("dapr-api-token", "guess"),
        ("dapr-app-id", "payments"),
        ("X-Request-ID", "from-client"),
        ("Idempotency-Key", "order-attempt-1"),
        ("X-User-Id", "someone-else"),
    ]
    # The request id and trace context are the kit's to pass on (as it accepted them), never copied from here.
    assert forwarded_request_headers(incoming) == {
        "content-type": "application/json",
        "accept": "application/json",
        "idempotency-key": "order-attempt-1",
    }


def test_only_allowed_query_parameters_are_forwarded_in_order() -> None:
    pairs = [("to", "2026-01-31"), ("user_id", "x"), ("limit", "5"), ("LIMIT", "6"), ("from", "2026-01-01")]
    assert forwarded_query(pairs, ANALYTICS_QUERY_PARAMETERS) == "to=2026-01-31&limit=5&from=2026-01-01"


def test_forwarded_query_values_are_encoded_so_they_add_nothing() -> None:
    pairs = [("type", "orders&admin=1"), ("from", "../admin?x=#y"), ("to", "a b/é")]
    assert forwarded_query(pairs, ANALYTICS_QUERY_PARAMETERS) == (
        "type=orders%26admin%3D1&from=..%2Fadmin%3Fx%3D%23y&to=a+b%2F%C3%A9"
    )


def test_no_allowed_parameter_is_an_empty_query() -> None:
    assert forwarded_query([("page", "2")], ANALYTICS_QUERY_PARAMETERS) == ""


def test_app_answer_passes_with_only_allowed_headers() -> None:
    upstream = UpstreamResponse(
        201,
        {
            "Content-Type": "application/json",
            "ETag": '"v1"',
            "Connection": "close",
            "Transfer-Encoding": "chunked",
            "Set-Cookie": "a=b",
            "Location": "/users/1",
            "traceparent": "00-x",
            "Server": "uvicorn",
        },
        b'{"id": "1"}',
    )
    answer = client_response(upstream, "req-1")
    assert answer.status == 201
    assert answer.body == b'{"id": "1"}'
    assert dict(answer.headers) == {"content-type": "application/json", "etag": '"v1"'}


def test_app_error_in_the_error_shape_passes_through() -> None:
    body = json.dumps(
        {"error": {"code": "email_taken", "message": "taken", "details": [], "request_id": "req-1"}}
    ).encode()
    answer = client_response(UpstreamResponse(409, {"content-type": "application/json"}, body), "req-1")
    assert (answer.status, answer.body) == (409, body)


@pytest.mark.parametrize(
    ("status", "code"), [(404, "not_found"), (410, "gone"), (414, "uri_too_long"), (418, "client_error")]
)
def test_app_4xx_outside_the_shape_is_wrapped_keeping_its_status(status: int, code: str) -> None:
    answer = client_response(UpstreamResponse(status, {"content-type": "text/plain"}, b"Refused"), "req-7")
    assert answer.status == status
    assert answer.headers["content-type"] == "application/json"
    assert json.loads(answer.body) == {
        "error": {"code": code, "message": "The request was refused.", "details": [], "request_id": "req-7"}
    }


@pytest.mark.parametrize("body", [b"Internal Server Error", b'{"detail": "boom"}', b""])
def test_app_5xx_outside_the_shape_is_a_bad_gateway(body: bytes) -> None:
    with pytest.raises(BadUpstreamResponseError):
        client_response(UpstreamResponse(500, {}, body), "req-1")


# --- resource ids -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sku", ["A", "sku-1", "SKU_42.b", "x" * 64, "1.5", ".hidden", "..x"])
def test_plain_skus_are_accepted(sku: str) -> None:
    assert parse_sku(sku) == sku


@pytest.mark.parametrize("sku", ["", ".", "..", "...", "a/b", "a%2Fb", "a b", "x" * 65, "sku\n", "caf\u00e9"])
def test_skus_that_cannot_exist_are_refused(sku: str) -> None:
    with pytest.raises(UnknownResourceError):
        parse_sku(sku)


def test_canonical_order_ids_are_accepted_in_either_case() -> None:
    order_id = uuid.uuid4()
    assert parse_order_id(str(order_id)) == order_id
    assert parse_order_id(str(order_id).upper()) == order_id


@pytest.mark.parametrize(
    "value",
    ["", "42", "not-a-uuid", "6f1c2a4e2b0b4bb89a576f0a1d2f9c11", "urn:uuid:6f1c2a4e-2b0b-4bb8-9a57-6f0a1d2f9c11"],
)
def test_order_ids_other_than_canonical_uuids_are_refused(value: str) -> None:
    with pytest.raises(UnknownResourceError):
        parse_order_id(value)


# --- placing orders -----------------------------------------------------------------------------------------


def test_an_accepted_order_names_its_id() -> None:
    order_id = uuid.uuid4()
    body = json.dumps({"order_id": str(order_id), "status": "pending"}).encode()
    assert accepted_order_id(UpstreamResponse(202, {"location": "/users/u/orders/x"}, body)) == order_id


@pytest.mark.parametrize("status", [400, 404, 409, 422, 503])
def test_a_refused_order_names_none(status: int) -> None:
    assert accepted_order_id(UpstreamResponse(status, {}, b'{"error": {}}')) is None


@pytest.mark.parametrize("body", [b"", b"[]", b'"x"', b"{}", b'{"order_id": "not-a-uuid"}', b'{"order_id": null}'])
def test_an_accepted_order_without_its_id_is_a_bad_gateway(body: bytes) -> None:
    with pytest.raises(BadUpstreamResponseError):
        accepted_order_id(UpstreamResponse(202, {}, body))
