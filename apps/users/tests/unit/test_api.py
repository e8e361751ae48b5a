"""The HTTP API through TestClient, with the ports behind its dependencies replaced by fakes."""

from typing import Any
from uuid import uuid4

import httpx
import jwt
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from sidecart_kit.state import StoreUnavailableError
from sidecart_kit.testing import assert_probes_follow_the_sidecar
from users.settings import Settings

ANN = {"email": "ann@example.com", "password": "correct horse", "name": "Ann"}


def assert_error(response: httpx.Response, status: int, code: str) -> list[dict[str, Any]]:
    """The one error shape: {"error": {code, message, details, request_id}}, request id echoed in the header."""
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"code", "message", "details", "request_id"}
    assert error["code"] == code
    assert error["message"]
    assert error["request_id"] == response.headers["x-request-id"]
    details: list[dict[str, Any]] = error["details"]
    return details


def sign_up(client: TestClient, **changes: str) -> httpx.Response:
    response: httpx.Response = client.post("/users", json={**ANN, **changes})
    return response


# --- probes and keys ---------------------------------------------------------------------------------------


def test_probes_follow_the_sidecar(client: TestClient, sidecar_health: Any) -> None:
    assert_probes_follow_the_sidecar(client, sidecar_health)


def test_jwks_publishes_the_rsa_signing_key(client: TestClient, signer: Any) -> None:
    keys = client.get("/.well-known/jwks.json").json()["keys"]

    assert len(keys) == 1
    assert {k: keys[0][k] for k in ("kty", "use", "alg", "kid")} == {
        "kty": "RSA",
        "use": "sig",
        "alg": "RS256",
        "kid": signer.kid,
    }
    assert keys[0]["n"]
    assert keys[0]["e"]
    assert "d" not in keys[0]  # never the private part


# --- sign-up -----------------------------------------------------------------------------------------------


def test_sign_up_is_201_with_the_normalised_email_and_no_password(client: TestClient, repository: Any) -> None:
    response = sign_up(client, email="  Ann@Example.COM ", name="  Ann  ", role="admin")

    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == {"id", "email", "name"}  # unknown fields ignored, nothing secret echoed
    assert (body["email"], body["name"]) == ("ann@example.com", "Ann")
    assert str(next(iter(repository.users))) == body["id"]


def test_invalid_fields_are_422_naming_each_field(client: TestClient, repository: Any) -> None:
    response = client.post("/users", json={"email": "not-an-email", "password": "short", "name": "   "})

    details = assert_error(response, 422, "validation_error")
    assert {d["field"] for d in details} == {"email", "password", "name"}
    assert all(d["reason"] for d in details)
    assert repository.claims == {}


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"password": "x" * 257}, "password"),
        ({"name": "n" * 101}, "name"),
        ({"email": "ann@"}, "email"),
    ],
    ids=["password-too-long", "name-too-long", "email-without-domain"],
)
def test_each_limit_is_enforced(client: TestClient, changes: dict[str, str], field: str) -> None:
    details = assert_error(sign_up(client, **changes), 422, "validation_error")
    assert [d["field"] for d in details] == [field]


def test_missing_fields_are_named(client: TestClient) -> None:
    details = assert_error(client.post("/users", json={"email": "ann@example.com"}), 422, "validation_error")
    assert {d["field"] for d in details} == {"password", "name"}


def test_malformed_json_is_422_about_the_whole_body(client: TestClient) -> None:
    response = client.post("/users", content=b'{"email": "ann@', headers={"content-type": "application/json"})

    details = assert_error(response, 422, "validation_error")
    assert len(details) == 1
    assert details[0]["field"] is None
    assert "JSON" in details[0]["reason"]


@pytest.mark.parametrize("body", [b"[1, 2]", b'"ann"', b""], ids=["array", "string", "empty"])
def test_a_body_that_is_not_an_object_is_422(client: TestClient, body: bytes) -> None:
    response = client.post("/users", content=body, headers={"content-type": "application/json"})

    details = assert_error(response, 422, "validation_error")
    assert [d["field"] for d in details] == [None]


@pytest.mark.parametrize(
    "look_alike",
    [
        "\uff41\uff4e\uff4e@example.com",  # full-width letters
        "ann\uff20example.com",  # a full-width at sign
        "ANN@EXAMPLE.COM",
        "ann@\uff45xample.com",  # a full-width letter in the domain
    ],
)
def test_an_address_that_folds_to_a_taken_one_is_that_one(client: TestClient, look_alike: str) -> None:
    assert sign_up(client, email="ann@example.com").status_code == 201

    assert_error(sign_up(client, email=look_alike, password="other password"), 409, "email_taken")


def test_a_local_part_in_another_script_is_422(client: TestClient, repository: Any) -> None:
    cyrillic_a = "\u0430"
    details = assert_error(sign_up(client, email=f"{cyrillic_a}nn@example.com"), 422, "validation_error")

    assert [d["field"] for d in details] == ["email"]
    assert repository.claims == {}


def test_logging_in_with_the_full_width_spelling_finds_the_user(client: TestClient) -> None:
    assert sign_up(client, email="ann@example.com").status_code == 201

    login = client.post("/auth/token", json={"email": "\uff41\uff4e\uff4e@example.com", "password": ANN["password"]})

    assert login.status_code == 200, login.text


def test_a_duplicate_email_is_409_email_taken(client: TestClient) -> None:
    assert sign_up(client).status_code == 201

    assert_error(sign_up(client, email="ANN@example.com", password="other password"), 409, "email_taken")


def test_a_failed_save_is_503_and_frees_the_email(client: TestClient, repository: Any) -> None:
    repository.add_user_error = StoreUnavailableError("ERR_STATE_TRANSACTION")

    response = sign_up(client)

    assert_error(response, 503, "unavailable")
    assert response.headers["retry-after"]
    assert repository.claims == {}
    assert repository.events == []


# --- login and tokens --------------------------------------------------------------------------------------


def test_login_returns_a_bearer_token_that_verifies_with_the_published_key(client: TestClient) -> None:
    user_id = sign_up(client).json()["id"]

    response = client.post("/auth/token", json={"email": " ANN@example.com", "password": "correct horse"})

    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["token_type"], body["expires_in"]) == ("bearer", 300)
    token = body["access_token"]
    jwks = jwt.PyJWKSet.from_dict(client.get("/.well-known/jwks.json").json())
    kid = jwt.get_unverified_header(token)["kid"]
    public_key = next(key for key in jwks.keys if key.key_id == kid)
    claims = jwt.decode(
        token,
        public_key,
        algorithms=["RS256"],
        audience="test-audience",
        issuer="test-issuer",
        options={"require": ["sub", "email", "iss", "aud", "iat", "nbf", "exp", "jti"]},
    )
    assert (claims["sub"], claims["email"]) == (user_id, "ann@example.com")
    assert claims["exp"] - claims["iat"] == 300


def test_wrong_password_and_unknown_email_are_the_same_401(client: TestClient, passwords: Any) -> None:
    sign_up(client)

    wrong_password = client.post("/auth/token", json={"email": "ann@example.com", "password": "wrong horse"})
    unknown_email = client.post("/auth/token", json={"email": "bob@example.com", "password": "correct horse"})

    first = wrong_password.json()["error"]
    second = unknown_email.json()["error"]
    assert_error(wrong_password, 401, "invalid_credentials")
    assert_error(unknown_email, 401, "invalid_credentials")
    assert first["message"] == second["message"]
    assert passwords.verified[-1] is None  # the unknown e-mail still paid for a password check


# --- profiles ----------------------------------------------------------------------------------------------


def test_get_user_shows_the_profile(client: TestClient) -> None:
    created = sign_up(client).json()

    response = client.get(f"/users/{created['id']}")

    assert response.status_code == 200
    body = response.json()
    assert {k: body[k] for k in ("id", "email", "name")} == created
    assert body["created_at"]
    assert "password_hash" not in body


@pytest.mark.parametrize("user_id", [str(uuid4()), "not-a-uuid"], ids=["unknown", "not-a-uuid"])
def test_get_user_that_does_not_exist_is_404(client: TestClient, user_id: str) -> None:
    assert_error(client.get(f"/users/{user_id}"), 404, "user_not_found")


# --- app token ---------------------------------------------------------------------------------------------


def test_with_an_app_token_only_the_sidecar_gets_in(make_app: Any) -> None:
    client = TestClient(make_app(Settings(app_api_token=SecretStr("sidecar-secret"))))

    assert_error(sign_up(client), 401, "unauthorized")
    headers = {"dapr-api-token": "sidecar-secret"}
    assert client.post("/users", json=ANN, headers=headers).status_code == 201
    assert client.get("/.well-known/jwks.json", headers=headers).status_code == 200
    assert client.get("/healthz").status_code == 200  # probes stay open
    assert client.get("/readyz").status_code == 200
