"""ASGI middleware: request ids and access logs, body size limits, security headers."""

from __future__ import annotations

import re
import time
import uuid

import structlog
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tracing.api.metrics import Metrics
from tracing.api.problems import problem

log = structlog.get_logger("tracing.access")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
]


class RequestContext:
    """Gives each request an id (a sane client `X-Request-ID` is kept), echoes it, adds security
    headers, writes one access log line with the principal's subject and agency, and counts the
    request in the metrics."""

    def __init__(self, app: ASGIApp, metrics: Metrics | None = None) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers", []))
        offered = headers.get(b"x-request-id", b"").decode("latin-1")
        request_id = offered if _REQUEST_ID.match(offered) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        started = time.perf_counter()
        status = 500

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [
                    *message["headers"],
                    (b"x-request-id", request_id.encode()),
                    *SECURITY_HEADERS,
                ]
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            seconds = time.perf_counter() - started
            log.info(
                "request",
                method=scope["method"],
                path=scope["path"],
                status=status,
                duration_ms=round(seconds * 1000, 1),
            )
            if self.metrics is not None:
                self.metrics.observe(scope, status, seconds)


class BodyLimit:
    """Refuses bodies over the limit with 413 problem+json, by Content-Length or while streaming.

    `overrides` give other limits to routes that stream their body (path pattern, limit)."""

    def __init__(
        self, app: ASGIApp, max_bytes: int, overrides: tuple[tuple[re.Pattern[str], int], ...] = ()
    ) -> None:
        self.app = app
        self.default_max_bytes = max_bytes
        self.overrides = overrides

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        max_bytes = next(
            (limit for pattern, limit in self.overrides if pattern.match(scope["path"])),
            self.default_max_bytes,
        )
        await _LimitedRequest(self.app, max_bytes)(scope, receive, send)


class _LimitedRequest:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(scope, receive, send)
            return
        received = 0

        async def counting_receive() -> Message:
            # Raised inside the app, so the app's problem+json handler renders the 413.
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise HTTPException(413, self._detail)
            return message

        await self.app(scope, counting_receive, send)

    @property
    def _detail(self) -> str:
        return f"request bodies are limited to {self.max_bytes} bytes"

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problem(413, "Payload too large", self._detail, slug="payload-too-large")
        await response(scope, receive, send)


class RefuseNulInUrl:
    """No text column can hold NUL (PostgreSQL refuses it), and no legitimate URL carries one:
    refuse it up front with 400 rather than let it reach a query."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (
            "\x00" in scope["path"]
            or b"%00" in scope.get("query_string", b"")
            or b"\x00" in (scope.get("raw_path") or b"")
        ):
            response = problem(
                400, "Bad request", "NUL characters are not accepted in URLs", slug="bad-request"
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)
