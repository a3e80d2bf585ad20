"""Rendering every error as problem+json (RFC 9457), in one place."""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, DBAPIError, InterfaceError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from tracing.errors import ServiceUnavailable, TracingError

PROBLEM_JSON = "application/problem+json"
log = structlog.get_logger("tracing.api")


def problem(
    status: int,
    title: str,
    detail: str,
    *,
    slug: str,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body = {
        "type": f"urn:tracing:problem:{slug}",
        "title": title,
        "status": status,
        "detail": detail,
    }
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _field_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    errors = []
    for error in exc.errors():
        location = [str(part) for part in error.get("loc", ())]
        errors.append({"field": ".".join(location), "message": error.get("msg", "invalid")})
    return errors


async def _tracing_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, TracingError)
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else {}
    return problem(
        exc.status, exc.title, exc.detail, slug=exc.slug, headers={**headers, **exc.headers}, **exc.extra
    )


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = _field_errors(exc)
    summary = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
    return problem(422, "Invalid request", summary or "invalid request", slug="validation", errors=errors)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    titles = {
        400: "Bad request",
        404: "Not found",
        405: "Method not allowed",
        413: "Payload too large",
        415: "Unsupported media type",
    }
    title = titles.get(exc.status_code, "Error")
    detail = exc.detail if isinstance(exc.detail, str) else title
    return problem(
        exc.status_code,
        title,
        detail,
        slug=title.lower().replace(" ", "-"),
        headers=getattr(exc, "headers", None),
    )


# SQLSTATEs that say the database cannot serve us now rather than that a statement is wrong: class 08
# (connection exception), and the server shutting down, crashing or not yet accepting (57P01-57P03,
# which PostgreSQL sends while it stops or starts).
_UNAVAILABLE_SQLSTATES = ("57P01", "57P02", "57P03")


def database_unreachable(exc: BaseException) -> bool:
    """Whether an error means the database is out of reach (a 503 to retry), not a bug (a 500)."""
    if isinstance(exc, OperationalError | InterfaceError | OSError):
        return True
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        sqlstate = str(getattr(exc.orig, "sqlstate", None) or "")
        return sqlstate.startswith("08") or sqlstate in _UNAVAILABLE_SQLSTATES
    return False


async def _database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    # The driver's own message ("database is locked", "connection refused"), never the statement
    # or its parameters, which may hold case details.
    original = getattr(exc, "orig", None) or exc
    log.warning("database_unavailable", error=original.__class__.__name__, message=str(original)[:200])
    error = ServiceUnavailable("the database is unavailable; retry shortly")
    return problem(503, error.title, error.detail, slug=error.slug, headers={"Retry-After": "5"})


async def _value_does_not_fit(request: Request, exc: Exception) -> JSONResponse:
    # A safety net behind validation: a value the database refuses (too long, out of range).
    log.warning("database_refused_value", error=getattr(exc, "orig", exc).__class__.__name__)
    return problem(422, "Invalid request", "a value does not fit its field", slug="validation")


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    """A database out of reach is a 503 to retry; anything else that gets here is a bug: a 500."""
    if database_unreachable(exc):
        return await _database_unavailable(request, exc)
    log.exception("unhandled_error", error=exc.__class__.__name__)
    return problem(500, "Internal error", "an unexpected error occurred", slug="internal")


def install(app: FastAPI) -> None:
    app.add_exception_handler(TracingError, _tracing_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(DataError, _value_does_not_fit)
    # Database and socket errors are registered by class, not left to the catch-all alone: the
    # catch-all runs in Starlette's outermost middleware, which re-raises after answering, so the
    # answer would lack the request id and security headers, the log would get a traceback, and
    # uvicorn would close the keep-alive connection under the client's next request.
    app.add_exception_handler(DBAPIError, _unexpected)
    app.add_exception_handler(OSError, _unexpected)
    app.add_exception_handler(Exception, _unexpected)
