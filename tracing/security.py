"""Bearer tokens: verifying JWTs with pinned algorithms, and the Principal they describe.

An HMAC secret is only used when no public key or JWKS is configured, so a deployment that trusts an
identity provider's RS256/ES256 keys never accepts a token signed with a shared secret (nor one
signed with the public key used as an HMAC secret).
"""

from __future__ import annotations

import datetime as dt
import re
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import httpx
from jose import JWTError, jws, jwt
from jose.exceptions import JOSEError

from tracing.config import Settings
from tracing.errors import Unauthorized
from tracing.models.types import is_country_code

MAX_TOKEN_BYTES = 8 * 1024
_PEM_BLOCK = re.compile(r"-----BEGIN [A-Z ]*PUBLIC KEY-----.+?-----END [A-Z ]*PUBLIC KEY-----", re.DOTALL)
JWKS_CACHE_SECONDS = 300


class Role(StrEnum):
    investigator = "investigator"
    contact_point = "contact_point"
    operations = "operations"
    auditor = "auditor"
    admin = "admin"


@dataclass(frozen=True)
class Principal:
    subject: str
    agency: str
    country: str
    roles: frozenset[Role]

    def has(self, role: Role) -> bool:
        return role in self.roles


class TokenVerifier:
    """Verifies bearer tokens against the configured key material."""

    def __init__(self, settings: Settings, http: httpx.AsyncClient | None = None) -> None:
        self._settings = settings
        self._http = http
        self._jwks: dict[str, Any] | None = None
        self._jwks_fetched_at = 0.0
        if settings.jwks_url or settings.jwt_public_key:
            self.algorithms = [settings.jwt_public_key_algorithm]
        else:
            self.algorithms = ["HS256"]

    async def verify(self, token: str) -> Principal:
        if len(token) > MAX_TOKEN_BYTES:
            raise Unauthorized("bearer token is too large")
        try:
            header = jwt.get_unverified_header(token)
        except JWTError as exc:
            raise Unauthorized("bearer token is malformed") from exc
        algorithm = header.get("alg")
        if algorithm not in self.algorithms:
            raise Unauthorized(f"token algorithm {algorithm!r} is not accepted")
        key = self._signing_key(token, await self._keys_for(header))
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=self.algorithms,
                audience=self._settings.jwt_audience,
                issuer=self._settings.jwt_issuer,
                options={
                    "require_exp": True,
                    "require_iss": True,
                    "require_aud": True,
                    "require_sub": True,
                    "leeway": self._settings.jwt_leeway_seconds,
                },
            )
        except JWTError as exc:
            raise Unauthorized(f"bearer token rejected: {_reason(exc)}") from exc
        return principal_from_claims(claims)

    def _signing_key(self, token: str, candidates: list[Any]) -> Any:
        """The candidate key whose signature holds (several during a key rotation)."""
        for key in candidates:
            try:
                jws.verify(token, key, algorithms=self.algorithms)
            except JOSEError:
                continue
            return key
        raise Unauthorized("bearer token rejected: signature verification failed")

    async def _keys_for(self, header: dict[str, Any]) -> list[Any]:
        settings = self._settings
        if settings.jwt_public_key:
            return _PEM_BLOCK.findall(settings.jwt_public_key) or [settings.jwt_public_key]
        if settings.jwks_url:
            kid = header.get("kid")
            keys = await self._jwks_keys(refresh=False)
            if kid not in keys:
                keys = await self._jwks_keys(refresh=True)
            if kid not in keys:
                raise Unauthorized("token key id is unknown")
            return [keys[kid]]
        return [k for k in (settings.jwt_secret, settings.jwt_previous_secret) if k]

    async def _jwks_keys(self, *, refresh: bool) -> dict[str, Any]:
        fresh = time.monotonic() - self._jwks_fetched_at < JWKS_CACHE_SECONDS
        if self._jwks is not None and fresh and not refresh:
            return self._jwks
        if refresh and self._jwks is not None and time.monotonic() - self._jwks_fetched_at < 10:
            return self._jwks  # refetch at most every 10 s, whatever tokens arrive
        client = self._http or httpx.AsyncClient(timeout=httpx.Timeout(5.0))
        try:
            response = await client.get(self._settings.jwks_url or "")
            response.raise_for_status()
            document = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise Unauthorized("identity provider keys are unavailable") from exc
        finally:
            if self._http is None:
                await client.aclose()
        self._jwks = {k["kid"]: k for k in document.get("keys", []) if "kid" in k}
        self._jwks_fetched_at = time.monotonic()
        return self._jwks


def _reason(exc: JWTError) -> str:
    message = str(exc).strip() or exc.__class__.__name__
    return message[:200]


def principal_from_claims(claims: dict[str, Any]) -> Principal:
    subject, agency, country = claims.get("sub"), claims.get("agency"), claims.get("country")
    roles = claims.get("roles")
    if not isinstance(subject, str) or not subject or len(subject) > 200:
        raise Unauthorized("token claim 'sub' is missing or invalid")
    if not isinstance(agency, str) or not agency or len(agency) > 64:
        raise Unauthorized("token claim 'agency' is missing or invalid")
    if not isinstance(country, str) or not is_country_code(country):
        raise Unauthorized("token claim 'country' is missing or not an ISO 3166-1 alpha-2 code")
    if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
        raise Unauthorized("token claim 'roles' must be a list of role names")
    known = frozenset(Role(r) for r in roles if r in Role.__members__)
    return Principal(subject=subject, agency=agency, country=country, roles=known)


def issue_token(
    settings: Settings,
    *,
    subject: str,
    agency: str,
    country: str,
    roles: list[str],
    ttl_seconds: int = 3600,
    extra_claims: dict[str, Any] | None = None,
) -> str:
    """Sign a token with the configured HMAC secret (development and tests)."""
    if not settings.jwt_secret or settings.jwt_public_key or settings.jwks_url:
        raise RuntimeError(
            "token signing needs TRACING_JWT_SECRET; deployments that verify an identity"
            " provider's keys get their tokens from that provider"
        )
    now = int(dt.datetime.now(dt.UTC).timestamp())
    claims: dict[str, Any] = {
        "sub": subject,
        "agency": agency,
        "country": country.upper(),
        "roles": roles,
        "iat": now,
        "exp": now + ttl_seconds,
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
    }
    claims.update(extra_claims or {})
    return jwt.encode(claims, settings.jwt_secret, algorithm="HS256")
