"""FastAPI dependencies as Annotated aliases: the database session, the principal, role gates."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

import structlog
from fastapi import Depends, Header, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from tracing.errors import Forbidden, Unauthorized
from tracing.security import Principal, Role, TokenVerifier

_bearer = HTTPBearer(auto_error=False, description="JWT issued for an agency user")


async def _session(request: Request) -> AsyncIterator[AsyncSession]:
    # Commands commit their own unit of work; whatever is left uncommitted is rolled back here.
    session: AsyncSession = request.app.state.sessionmaker()
    try:
        yield session
    finally:
        try:
            await session.close()
        except (DBAPIError, OSError):
            # The connection broke under this request (the database restarted or went away): its
            # error, if any, is already being answered, and the rollback cannot reach the server.
            # Drop the connection instead of handing it back to the pool half-used.
            await session.invalidate()


async def _principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized("a bearer token is required")
    verifier: TokenVerifier = request.app.state.token_verifier
    principal = await verifier.verify(credentials.credentials)
    structlog.contextvars.bind_contextvars(subject=principal.subject, agency=principal.agency)
    request.app.state.rate_limit.check(principal)
    return principal


SessionDep = Annotated[AsyncSession, Depends(_session)]
CurrentPrincipal = Annotated[Principal, Depends(_principal)]


def _require(role: Role):  # noqa: ANN202 (a dependency factory)
    async def gate(principal: CurrentPrincipal) -> Principal:
        if not principal.has(role):
            raise Forbidden(f"this needs the {role.value} role")
        return principal

    return gate


AdminPrincipal = Annotated[Principal, Depends(_require(Role.admin))]


def require_any_role(roles: frozenset[Role]):  # noqa: ANN201 (a dependency)
    """Refuse callers with none of the roles before the body is parsed, so a wrong role is a 403
    whatever the body holds."""

    async def gate(principal: CurrentPrincipal) -> None:
        if not principal.roles & roles:
            names = ", ".join(sorted(role.value for role in roles))
            raise Forbidden(f"this needs one of the roles: {names}")

    return Depends(gate)


async def _operations_or_admin(principal: CurrentPrincipal) -> Principal:
    if not (principal.has(Role.operations) or principal.has(Role.admin)):
        raise Forbidden("this needs the operations or admin role")
    return principal


OperationsPrincipal = Annotated[Principal, Depends(_operations_or_admin)]
"""Operations staff (counts only, never case details) or an administrator."""


IfMatch = Annotated[str | None, Header(alias="If-Match", description="ETag from a GET")]
IdempotencyKeyHeader = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        pattern=r"^[\x21-\x7e]+$",
        description="Client-chosen key; a retry with the same key and body returns the original",
    ),
]
