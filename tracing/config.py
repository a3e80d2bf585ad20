"""Settings read from TRACING_* environment variables, in one object."""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEVELOPMENT_JWT_SECRET = "development-only-secret-change-me-0123456789"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TRACING_", extra="ignore")

    env: Literal["development", "production"] = "development"
    database_url: str = "sqlite+aiosqlite:///./tracing.db"

    jwt_secret: str | None = None
    jwt_public_key: str | None = None
    """PEM public key of an external identity provider (RS256 or ES256 tokens)."""
    jwt_public_key_algorithm: Literal["RS256", "ES256"] = "RS256"
    jwks_url: str | None = None
    """JWKS endpoint of an external identity provider; keys are chosen by `kid`."""
    jwt_issuer: str = "tracing-dev"
    jwt_audience: str = "tracing"
    jwt_leeway_seconds: int = 30

    signing_key: str | None = None
    """PEM EC P-256 private key that signs audit checkpoints and evidence bundles (ES256)."""
    signing_key_file: str = "tracing-signing-key.pem"
    """Where the key is read from when TRACING_SIGNING_KEY is unset (generated there in development)."""
    checkpoint_interval_seconds: int = 3600
    """How often `tracing serve` signs a checkpoint over all audit chain heads (0 turns it off)."""

    max_body_bytes: int = 1024 * 1024
    max_import_bytes: int = 2 * 1024 * 1024 * 1024
    """Limit for streamed registry imports (POST /v1/registries/{id}/records), which are read in
    batches and never held in memory whole."""
    cross_check_poll_seconds: float = 1.0
    """How often the in-process runner looks for due cross-checks (0 turns the runner off)."""
    cross_check_retry_seconds: float = 30.0
    """First delay before an unavailable registry is asked again; doubles on each failure."""
    demo_registry_url: str = "http://127.0.0.1:8765"
    """Where `tracing demo` points its HTTP registry (`tracing registry serve-example` listens there)."""
    max_page_size: int = 200
    default_page_size: int = 50
    log_level: str = "INFO"

    @model_validator(mode="after")
    def _refuse_default_secret_outside_development(self) -> Settings:
        uses_public_keys = bool(self.jwt_public_key or self.jwks_url)
        if self.env == "production":
            if not uses_public_keys and (not self.jwt_secret or self.jwt_secret == DEVELOPMENT_JWT_SECRET):
                raise ValueError(
                    "TRACING_JWT_SECRET must be set to a real secret (or TRACING_JWT_PUBLIC_KEY /"
                    " TRACING_JWKS_URL configured) when TRACING_ENV=production"
                )
            if self.jwt_secret and len(self.jwt_secret) < 32:
                raise ValueError("TRACING_JWT_SECRET must be at least 32 characters")
        elif not uses_public_keys and not self.jwt_secret:
            self.jwt_secret = DEVELOPMENT_JWT_SECRET
        return self

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


@lru_cache
def get_settings() -> Settings:
    return Settings()
