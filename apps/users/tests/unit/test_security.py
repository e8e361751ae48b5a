"""argon2 off the event loop with a dummy check for missing users; RS256 tokens and their RFC 7638 key id."""

import threading
from datetime import UTC, datetime, timedelta
from typing import Literal
from uuid import uuid4

import argon2
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from users.domain import User
from users.security import Argon2PasswordHasher, RsaTokenSigner, rsa_thumbprint

NOW = datetime(2026, 1, 1, tzinfo=UTC)


class RecordingArgon2(argon2.PasswordHasher):
    """Cheap parameters for speed; remembers which hash each verify checked and on which thread."""

    def __init__(self) -> None:
        super().__init__(time_cost=1, memory_cost=8, parallelism=1)
        self.checked: list[str] = []
        self.threads: list[int] = []

    def hash(self, password: str | bytes, *, salt: bytes | None = None) -> str:
        self.threads.append(threading.get_ident())
        return super().hash(password, salt=salt)

    def verify(self, hash: str | bytes, password: str | bytes) -> Literal[True]:  # noqa: A002 (the base class name)
        self.threads.append(threading.get_ident())
        self.checked.append(str(hash))
        return super().verify(hash, password)


@pytest.fixture
async def hasher() -> Argon2PasswordHasher:
    return await Argon2PasswordHasher.create(concurrency=2, hasher=RecordingArgon2())


async def test_a_hash_verifies_its_password_only(hasher: Argon2PasswordHasher) -> None:
    password_hash = await hasher.hash("correct horse")

    assert password_hash.startswith("$argon2id$")
    assert await hasher.verify(password_hash, "correct horse")
    assert not await hasher.verify(password_hash, "wrong horse")


async def test_hashing_runs_off_the_event_loop_thread() -> None:
    recorder = RecordingArgon2()
    hasher = await Argon2PasswordHasher.create(concurrency=1, hasher=recorder)

    await hasher.verify(await hasher.hash("correct horse"), "correct horse")

    assert recorder.threads
    assert threading.get_ident() not in recorder.threads


async def test_a_missing_user_is_checked_against_a_dummy_hash() -> None:
    recorder = RecordingArgon2()
    hasher = await Argon2PasswordHasher.create(concurrency=1, hasher=recorder)

    assert not await hasher.verify(None, "any password")
    assert len(recorder.checked) == 1
    assert recorder.checked[0].startswith("$argon2id$")


async def test_an_unreadable_stored_hash_is_a_mismatch_not_a_crash(hasher: Argon2PasswordHasher) -> None:
    assert not await hasher.verify("", "correct horse")
    assert not await hasher.verify("not-an-argon2-hash", "correct horse")


def test_the_kid_is_the_rfc_7638_thumbprint() -> None:
    # The example of RFC 7638, section 3.1.
    jwk = {
        "kty": "RSA",
        "n": (
            "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWK"
            "RXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMic"
            "AtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3"
            "XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
        ),
        "e": "AQAB",
        "alg": "RS256",
        "kid": "2011-04-29",
    }

    assert rsa_thumbprint(jwk) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def test_a_token_carries_the_claims_and_the_kid(private_key: RSAPrivateKey) -> None:
    signer = RsaTokenSigner(private_key, issuer="iss-x", audience="aud-y", ttl=timedelta(seconds=90), clock=lambda: NOW)
    user = User(id=uuid4(), email="ann@example.com", name="Ann", password_hash="h", created_at=NOW)

    issued = signer.issue(user)

    assert issued.expires_in == 90
    header = jwt.get_unverified_header(issued.access_token)
    assert (header["alg"], header["kid"]) == ("RS256", signer.kid)
    claims = jwt.decode(
        issued.access_token,
        private_key.public_key(),
        algorithms=["RS256"],
        audience="aud-y",
        issuer="iss-x",
        options={"verify_exp": False, "verify_nbf": False, "verify_iat": False},
    )
    stamp = int(NOW.timestamp())
    assert claims["sub"] == str(user.id)
    assert claims["email"] == "ann@example.com"
    assert (claims["iat"], claims["nbf"], claims["exp"]) == (stamp, stamp, stamp + 90)
    assert claims["jti"] != jwt.decode(signer.issue(user).access_token, options={"verify_signature": False})["jti"]


def test_the_signer_loads_a_pkcs8_pem_and_refuses_other_keys(private_key: RSAPrivateKey) -> None:
    def pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
        return key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()

    def signer_from(pem_text: str) -> RsaTokenSigner:
        return RsaTokenSigner.from_pems(pem_text, issuer="i", audience="a", ttl=timedelta(hours=1))

    loaded = signer_from(pem(private_key))
    assert loaded.kid == RsaTokenSigner(private_key, issuer="i", audience="a", ttl=timedelta(hours=1)).kid

    with pytest.raises(ValueError, match="RSA"):
        signer_from(pem(ec.generate_private_key(ec.SECP256R1())))
    with pytest.raises(ValueError, match="bits"):
        signer_from(pem(rsa.generate_private_key(65537, 1024)))  # noqa: S505 (the weak key under test)
    with pytest.raises(ValueError, match="RSA"):
        RsaTokenSigner.from_pems(
            pem(private_key), next_pem=pem(ec.generate_private_key(ec.SECP256R1())), issuer="i", audience="a", ttl=HOUR
        )
    with pytest.raises(ValueError, match="bits"):
        RsaTokenSigner(
            private_key,
            previous_key=rsa.generate_private_key(65537, 1024),  # noqa: S505 (the weak key under test)
            issuer="i",
            audience="a",
            ttl=HOUR,
        )


HOUR = timedelta(hours=1)


def _kid(key: RSAPrivateKey) -> str:
    return RsaTokenSigner(key, issuer="i", audience="a", ttl=HOUR).kid


def test_the_jwks_publishes_the_current_next_and_previous_keys_and_tokens_name_the_current(
    private_key: RSAPrivateKey,
) -> None:
    next_key, previous_key = rsa.generate_private_key(65537, 2048), rsa.generate_private_key(65537, 2048)
    signer = RsaTokenSigner(
        private_key, next_key=next_key, previous_key=previous_key, issuer="i", audience="a", ttl=HOUR, clock=lambda: NOW
    )
    user = User(id=uuid4(), email="ann@example.com", name="Ann", password_hash="h", created_at=NOW)

    published = jwt.PyJWKSet.from_dict(signer.jwks())
    token = signer.issue(user).access_token

    assert [key.key_id for key in published.keys] == [_kid(private_key), _kid(next_key), _kid(previous_key)]
    assert signer.kid == _kid(private_key) == jwt.get_unverified_header(token)["kid"]
    assert all("d" not in jwk for jwk in signer.jwks()["keys"])  # never a private part
    verifying = next(key for key in published.keys if key.key_id == signer.kid)
    jwt.decode(token, verifying, algorithms=["RS256"], audience="a", options={"verify_exp": False, "verify_nbf": False})


def test_a_fresh_install_publishes_the_current_and_next_keys(private_key: RSAPrivateKey) -> None:
    next_key = rsa.generate_private_key(65537, 2048)
    signer = RsaTokenSigner(private_key, next_key=next_key, issuer="i", audience="a", ttl=HOUR)
    assert signer.published_kids == (_kid(private_key), _kid(next_key))


def test_a_key_named_twice_is_published_once(private_key: RSAPrivateKey) -> None:
    signer = RsaTokenSigner(private_key, next_key=private_key, issuer="i", audience="a", ttl=HOUR)
    assert [jwk["kid"] for jwk in signer.jwks()["keys"]] == [_kid(private_key)]


def test_after_a_rotation_the_old_current_key_is_still_published_as_previous(private_key: RSAPrivateKey) -> None:
    next_key, newest = rsa.generate_private_key(65537, 2048), rsa.generate_private_key(65537, 2048)
    before = RsaTokenSigner(private_key, next_key=next_key, issuer="i", audience="a", ttl=HOUR)
    after = RsaTokenSigner(next_key, next_key=newest, previous_key=private_key, issuer="i", audience="a", ttl=HOUR)

    assert after.kid == before.published_kids[1]  # the key verifiers already held now signs
    assert before.kid in after.published_kids  # tokens signed before the rotation still verify
