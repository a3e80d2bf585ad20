"""Settings read from TRACING_* environment variables, in one object."""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field, model_validator
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
    jwt_previous_secret: str | None = None
    """During a rotation of TRACING_JWT_SECRET: the old secret, still accepted until tokens expire."""
    jwt_issuer: str = "tracing-dev"
    jwt_audience: str = "tracing"
    jwt_leeway_seconds: int = 30

    signing_key: str | None = None
    """PEM EC P-256 private key that signs audit checkpoints and evidence bundles (ES256)."""
    signing_key_file: str = "tracing-signing-key.pem"
    """Where the key is read from when TRACING_SIGNING_KEY is unset (generated there in development)."""
    signing_previous_public_keys_file: str | None = None
    """PEM file with the public keys of earlier signing keys (after a rotation), so checkpoints and
    bundles they signed still verify."""
    checkpoint_interval_seconds: int = 3600
    """How often `tracing serve` signs a checkpoint over all audit chain heads (0 turns it off)."""

    # Deadlines (ITI: acknowledge receipt, answer within a reasonable time), per priority, in hours
    # from each forward.
    deadline_urgent_acknowledge_hours: float = Field(default=24, gt=0)
    deadline_urgent_answer_hours: float = Field(default=72, gt=0)
    deadline_routine_acknowledge_hours: float = Field(default=5 * 24, gt=0)
    deadline_routine_answer_hours: float = Field(default=30 * 24, gt=0)
    overdue_sweep_seconds: float = Field(default=60, ge=0)
    """How often the worker looks for missed due dates (0 turns the sweep off)."""

    background_worker: bool = True
    """Whether `tracing serve` runs the webhook delivery worker and the overdue sweep in-process
    (turn off when `tracing worker` runs them separately)."""
    worker_poll_seconds: float = Field(default=1.0, gt=0)
    webhook_timeout_seconds: float = Field(default=10.0, gt=0)
    """Whole-exchange limit for one webhook post: connect, send, and read the (bounded) answer."""
    webhook_connect_timeout_seconds: float = Field(default=5.0, gt=0)
    webhook_max_response_bytes: int = Field(default=64 * 1024, ge=0)
    webhook_retry_hours: float = Field(default=24, gt=0)
    """Deliveries are retried at least this long after their first attempt, then marked failed."""
    webhook_backoff_base_seconds: float = Field(default=5, gt=0)
    webhook_backoff_max_seconds: float = Field(default=3600, gt=0)
    webhook_lease_seconds: float = Field(default=60, gt=0)
    """A claimed delivery belongs to its worker this long; if the worker dies it is retried after."""
    webhook_concurrency: int = Field(default=16, ge=1, le=256)
    webhook_allow_private_addresses: bool = False
    """Allow webhook URLs resolving to private, loopback or link-local addresses (server-side
    request forgery guard). Development always allows loopback."""
    webhook_allow_http: bool = False
    """Allow plain-http webhook URLs in production (development always allows them)."""
    feed_max_wait_seconds: float = Field(default=30, ge=0)

    max_body_bytes: int = 1024 * 1024
    rate_limit_per_minute: int = 600
    """Requests a principal (agency and subject) may make per minute on one instance; 0 disables."""
    max_import_bytes: int = 2 * 1024 * 1024 * 1024
    """Limit for streamed registry imports (POST /v1/registries/{id}/records), which are read in
    batches and never held in memory whole."""
    cross_check_poll_seconds: float = 1.0
    """How often the in-process runner looks for due cross-checks (0 turns the runner off)."""
    cross_check_retry_seconds: float = 30.0
    """First delay before an unavailable registry is asked again; doubles on each failure."""
    demo_registry_url: str = "http://127.0.0.1:8765"
    """Where `tracing demo` points its HTTP registry (`tracing registry serve-example` listens there)."""
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
