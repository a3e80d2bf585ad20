"""Domain errors. Each carries the HTTP status the API renders it with, as problem+json.

Business code raises these; it never imports FastAPI.
"""

from __future__ import annotations

from typing import Any


class TracingError(Exception):
    status: int = 400
    title: str = "Bad request"
    slug: str = "bad-request"

    def __init__(
        self, detail: str, *, extra: dict[str, Any] | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra or {}
        self.headers = headers or {}

    @property
    def type_uri(self) -> str:
        return f"urn:tracing:problem:{self.slug}"


class Unauthorized(TracingError):
    status, title, slug = 401, "Unauthorized", "unauthorized"


class Forbidden(TracingError):
    status, title, slug = 403, "Forbidden", "forbidden"


class NotFound(TracingError):
    status, title, slug = 404, "Not found", "not-found"


class Conflict(TracingError):
    status, title, slug = 409, "Conflict", "conflict"


class PreconditionFailed(TracingError):
    status, title, slug = 412, "Precondition failed", "precondition-failed"


class PayloadTooLarge(TracingError):
    status, title, slug = 413, "Payload too large", "payload-too-large"


class Unprocessable(TracingError):
    status, title, slug = 422, "Unprocessable request", "unprocessable"


class TooManyRequests(TracingError):
    status, title, slug = 429, "Too many requests", "too-many-requests"


class ServiceUnavailable(TracingError):
    status, title, slug = 503, "Service unavailable", "service-unavailable"
