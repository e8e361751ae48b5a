"""Passwords (argon2, off the event loop) and tokens (RS256 JWTs with a published JWKS)."""

import asyncio
import base64
import hashlib
import json
import secrets
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from functools import partial
from typing import Any, TypeVar
from uuid import uuid4

import argon2
import jwt
from argon2.exceptions import InvalidHashError, VerificationError
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from jwt.algorithms import RSAAlgorithm

from sidecart_kit.logs import get_logger
from users.domain import User
from users.handlers import IssuedToken, utc_now

log = get_logger(__name__)

Result = TypeVar("Result")

ALGORITHM = "RS256"
MIN_KEY_BITS = 2048


class Argon2PasswordHasher:
    """argon2id in worker threads, at most `concurrency` at once (each takes tens of MiB and milliseconds)."""

    def __init__(self, hasher: argon2.PasswordHasher, dummy_hash: str, concurrency: int) -> None:
        self._hasher = hasher
        self._dummy_hash = dummy_hash
        self._slots = asyncio.Semaphore(concurrency)

    @classmethod
    async def create(cls, *, concurrency: int, hasher: argon2.PasswordHasher | None = None) -> "Argon2PasswordHasher":
        hasher = hasher or argon2.PasswordHasher()
        # Checked instead of a missing user's hash: same parameters, so the same cost.
        dummy_hash = await asyncio.to_thread(hasher.hash, secrets.token_urlsafe(16))
        return cls(hasher, dummy_hash, concurrency)

    async def hash(self, password: str) -> str:
        return await self._off_loop(partial(self._hasher.hash, password))

    async def verify(self, password_hash: str | None, password: str) -> bool:
        try:
            target = self._dummy_hash if password_hash is None else password_hash
            await self._off_loop(partial(self._hasher.verify, target, password))
        except VerificationError:
            return False
        except InvalidHashError:
            log.error("password_hash_unreadable")
            return False
        return password_hash is not None

    async def _off_loop(self, work: Callable[[], Result]) -> Result:
        async with self._slots:
            return await asyncio.to_thread(work)


def rsa_thumbprint(jwk: Mapping[str, str]) -> str:
    """RFC 7638 key id: SHA-256 of the required members (e, kty, n), in lexical order, without whitespace."""
    members = {name: jwk[name] for name in ("e", "kty", "n")}
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(hashlib.sha256(canonical).digest()).rstrip(b"=").decode("ascii")


def load_rsa_private_key(pem: str) -> RSAPrivateKey:
    """An RSA private key from PEM; any other kind of key is refused (RS256 needs RSA)."""
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    if not isinstance(key, RSAPrivateKey):
        raise ValueError(f"the signing key is a {type(key).__name__}; RS256 needs an RSA key")
    return key


def _public_jwk(key: RSAPrivateKey) -> dict[str, str]:
    jwk = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    members = {"kty": "RSA", "n": str(jwk["n"]), "e": str(jwk["e"])}
    return {**members, "use": "sig", "alg": ALGORITHM, "kid": rsa_thumbprint(members)}


class RsaTokenSigner:
    """Signs access tokens with the current RSA key and publishes, as a JWKS, the public halves of the keys a
    verifier must hold across a rotation: the current key, the next one (published ahead, so verifiers already have
    it when it starts signing) and the previous one (so the tokens it signed stay valid until they expire)."""

    def __init__(
        self,
        private_key: RSAPrivateKey,
        *,
        next_key: RSAPrivateKey | None = None,
        previous_key: RSAPrivateKey | None = None,
        issuer: str,
        audience: str,
        ttl: timedelta,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        for key in (private_key, next_key, previous_key):
            if key is not None and key.key_size < MIN_KEY_BITS:
                raise ValueError(f"a signing key has {key.key_size} bits; at least {MIN_KEY_BITS} needed")
        self._private_key = private_key
        self._issuer = issuer
        self._audience = audience
        self._ttl = ttl
        self._clock = clock
        published: dict[str, dict[str, str]] = {}
        for key in (private_key, next_key, previous_key):
            if key is not None:
                jwk = _public_jwk(key)
                published.setdefault(jwk["kid"], jwk)  # the same key named twice is published once
        self._published = list(published.values())
        self.kid = self._published[0]["kid"]
        self.published_kids = tuple(published)

    @classmethod
    def from_pems(
        cls,
        current_pem: str,
        *,
        next_pem: str | None = None,
        previous_pem: str | None = None,
        issuer: str,
        audience: str,
        ttl: timedelta,
        clock: Callable[[], datetime] = utc_now,
    ) -> "RsaTokenSigner":
        return cls(
            load_rsa_private_key(current_pem),
            next_key=load_rsa_private_key(next_pem) if next_pem is not None else None,
            previous_key=load_rsa_private_key(previous_pem) if previous_pem is not None else None,
            issuer=issuer,
            audience=audience,
            ttl=ttl,
            clock=clock,
        )

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        return {"keys": [dict(jwk) for jwk in self._published]}

    def issue(self, user: User) -> IssuedToken:
        now = self._clock()
        claims: dict[str, Any] = {
            "sub": str(user.id),
            "email": user.email,
            "iss": self._issuer,
            "aud": self._audience,
            "iat": now,
            "nbf": now,
            "exp": now + self._ttl,
            "jti": uuid4().hex,
        }
        token = jwt.encode(claims, self._private_key, algorithm=ALGORITHM, headers={"kid": self.kid})
        return IssuedToken(access_token=token, expires_in=int(self._ttl.total_seconds()))
