"""Configuration from the environment: USERS_* for this service, plus what the dapr CLI sets (sidecart_kit.sidecar)."""

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from sidecart_kit.sidecar import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="USERS_", frozen=True)

    # Above the state store's own timeout in resiliency.yaml (5 s), so the sidecar's answer comes first.
    sidecar_timeout_seconds: float = Field(default=10.0, gt=0)
    # How long the app waits at start for its sidecar to hand over the signing keys.
    startup_timeout_seconds: float = 60.0

    state_store: str = "users-store"
    secret_store: str = "secretstore"  # noqa: S105 (a component name)
    # Tokens are signed with the first; the other two are published beside it so a rotation logs no one out.
    signing_key_secret: str = "jwt-signing-key"  # noqa: S105 (a secret's name)
    next_signing_key_secret: str = "jwt-next-signing-key"  # noqa: S105 (a secret's name)
    previous_signing_key_secret: str = "jwt-previous-signing-key"  # noqa: S105 (a secret's name)

    jwt_issuer: str = "sidecart-users"
    jwt_audience: str = "sidecart"
    token_ttl_seconds: int = Field(default=3600, gt=0)

    # How long an e-mail claim without its user record is left alone before a new sign-up may take it over.
    claim_grace_seconds: float = Field(default=30.0, ge=0)
    # argon2id at OWASP's recommended minimum (m=19 MiB, t=2, p=1; Password Storage Cheat Sheet). argon2-cffi's
    # default (RFC 9106's low-memory profile: 64 MiB, t=3, p=4) cost 150 ms of CPU per sign-in here, which held
    # sign-in to 12/s on 2 cores (`make bench`). A stored hash names its own parameters: older ones still verify.
    password_hash_memory_kib: int = Field(default=19 * 1024, ge=19 * 1024)
    password_hash_time_cost: int = Field(default=2, ge=2)
    password_hash_parallelism: int = Field(default=1, ge=1)
    # Concurrent argon2 computations (password_hash_memory_kib each): more requests wait instead of exhausting memory.
    hash_concurrency: int = Field(default=4, gt=0)
