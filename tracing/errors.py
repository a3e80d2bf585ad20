"""Domain errors. Each carries the HTTP status the API renders it with, as problem+json.

Business code raises these; it never imports FastAPI.
"""

from __future__ import annotations

from typing import Any


class TracingError(Exception):
    status: int = 400
    title: str = "Bad request"
    slug: str = "bad-request"

    def __init__(self, detail: str, *, extra: dict[str, Any] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra or {}

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


class ServiceUnavailable(TracingError):
    status, title, slug = 503, "Service unavailable", "service-unavailable"
