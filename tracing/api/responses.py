"""OpenAPI declarations of the problem+json responses a route may give."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class Problem(BaseModel):
    type: str
    title: str
    status: int
    detail: str
    state: str | None = None
    errors: list[dict[str, str]] | None = None


_DESCRIPTIONS = {
    400: "The body could not be parsed (not JSON, or not UTF-8)",
    401: "Missing, malformed, expired or otherwise invalid bearer token",
    403: "The caller's role or relation to the request does not allow this",
    404: "Not found, or not visible to the caller",
    409: "Not a legal move in the request's current state, or a concurrent change won",
    412: "If-Match names a stale ETag",
    413: "Request body too large",
    422: "Invalid request body or parameters",
    429: "Too many requests from this principal; see Retry-After",
}


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI responses for these statuses; an authenticated route (401) may also be rate limited,
    and one that validates input (422) may also get a body it cannot parse (400)."""
    if 401 in statuses:
        statuses = (*statuses, 429)
    if 422 in statuses:
        statuses = (400, *statuses)
    return {
        status: {
            "model": Problem,
            "description": _DESCRIPTIONS[status],
            "content": {"application/problem+json": {}},
        }
        for status in statuses
    }
