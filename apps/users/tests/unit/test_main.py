"""The composition root: the whole app, started (lifespan included) against the fake sidecar."""

from typing import Any

import argon2
import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from fastapi.testclient import TestClient

from sidecart_kit.service import Fakes
from users.main import create_app
from users.settings import Settings


def _pem(key: RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def test_the_app_starts_with_the_keys_from_the_secret_store_and_serves_a_sign_up(
    sidecar: Any, private_key: RSAPrivateKey
) -> None:
    next_key, previous_key = rsa.generate_private_key(65537, 2048), rsa.generate_private_key(65537, 2048)
    sidecar.secrets |= {
        "jwt-signing-key": _pem(private_key),
        "jwt-next-signing-key": _pem(next_key),
        "jwt-previous-signing-key": _pem(previous_key),
    }
    settings = Settings(password_hash_memory_kib=20 * 1024, password_hash_time_cost=3)
    app = create_app(settings, Fakes(sidecar_transport=httpx.MockTransport(sidecar)))

    with TestClient(app) as client:  # runs the lifespan: key, hasher, adapters
        signed_up = client.post("/users", json={"email": "ann@example.com", "password": "correct horse", "name": "A"})
        token = client.post("/auth/token", json={"email": "ann@example.com", "password": "correct horse"})
        jwks = client.get("/.well-known/jwks.json").json()
        ready = client.get("/readyz")

    assert signed_up.status_code == 201, signed_up.text
    assert token.status_code == 200, token.text
    assert ready.json() == {"status": "ready"}
    [operations] = sidecar.transactions
    assert operations[1]["request"]["value"]["user_id"] == signed_up.json()["id"]
    [stored_hash] = [
        op["request"]["value"]["password_hash"] for op in operations if "password_hash" in op["request"]["value"]
    ]
    assert argon2.extract_parameters(stored_hash) == argon2.Parameters(
        type=argon2.Type.ID, version=19, salt_len=16, hash_len=32, time_cost=3, memory_cost=20 * 1024, parallelism=1
    )  # the settings' parameters
    published = jwt.PyJWKSet.from_dict(jwks).keys
    assert len(published) == 3
    kid = jwt.get_unverified_header(token.json()["access_token"])["kid"]
    public_key = next(key for key in published if key.key_id == kid)
    assert public_key.key.public_numbers() == private_key.public_key().public_numbers()  # the current key signs
    claims = jwt.decode(token.json()["access_token"], public_key, algorithms=["RS256"], audience="sidecart")
    assert (claims["sub"], claims["iss"]) == (signed_up.json()["id"], "sidecart-users")
