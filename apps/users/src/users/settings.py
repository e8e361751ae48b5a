"""Configuration from the environment: USERS_* for this service, plus the ports the dapr CLI sets."""

from functools import lru_cache

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="USERS_", frozen=True)

    # Set by the dapr CLI (dapr run / dapr.yaml), so read without the prefix.
    app_port: int = Field(default=8101, validation_alias=AliasChoices("APP_PORT"))
    dapr_http_port: int = Field(default=3501, validation_alias=AliasChoices("DAPR_HTTP_PORT"))
    dapr_grpc_port: int = Field(default=50011, validation_alias=AliasChoices("DAPR_GRPC_PORT"))
    # Tokens between app and sidecar, when the deployment turns them on (standard Dapr variable names).
    dapr_api_token: SecretStr | None = Field(default=None, validation_alias=AliasChoices("DAPR_API_TOKEN"))
    app_api_token: SecretStr | None = Field(default=None, validation_alias=AliasChoices("APP_API_TOKEN"))

    sidecar_host: str = "127.0.0.1"
    sidecar_timeout_seconds: float = 10.0
    startup_timeout_seconds: float = 60.0

    state_store: str = "users-store"
    secret_store: str = "secretstore"  # noqa: S105 (a component name)
    signing_key_secret: str = "jwt-signing-key"  # noqa: S105 (a secret's name)

    jwt_issuer: str = "sidecart-users"
    jwt_audience: str = "sidecart"
    token_ttl_seconds: int = Field(default=3600, gt=0)

    # How long an e-mail claim without its user record is left alone before a new sign-up may take it over.
    claim_grace_seconds: float = Field(default=30.0, ge=0)
    # Concurrent argon2 computations (64 MiB each): more requests wait instead of exhausting memory.
    hash_concurrency: int = Field(default=4, gt=0)

    log_level: str = "INFO"

    @property
    def sidecar_url(self) -> str:
        return f"http://{self.sidecar_host}:{self.dapr_http_port}"


@lru_cache
def get_settings() -> Settings:
    return Settings()
