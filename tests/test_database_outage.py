"""The database out of reach: a 503 problem+json to retry (never a 500), rendered inside the app so
it keeps the request id and security headers; a pooled connection the server closed is replaced
without failing the request that draws it. The end-to-end version, a real PostgreSQL stopped and
started under load, is tests/test_faults.py."""

from __future__ import annotations

import asyncio
import socket

import asyncpg
import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError, IntegrityError

from tests.conftest import TEST_SECRET, TEST_SIGNING_KEY, Tokens
from tracing.api.app import create_app
from tracing.api.problems import database_unreachable
from tracing.config import Settings
from tracing.db import create_engine


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def test_unreachable_database_is_503_problem_with_request_id_and_headers() -> None:
    settings = Settings(
        database_url=f"postgresql+asyncpg://postgres@127.0.0.1:{_closed_port()}/nowhere",
        jwt_secret=TEST_SECRET,
        signing_key=TEST_SIGNING_KEY,
        checkpoint_interval_seconds=0,
    )
    app = create_app(settings, check_migrations=False)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://tracing.test") as client:
            response = await client.get("/v1/agencies", headers=Tokens(settings).admin)
            ready = await client.get("/readyz")
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == "urn:tracing:problem:service-unavailable"
    assert response.headers["retry-after"] == "5"
    # Rendered by the app's own handlers, not by Starlette's last-resort middleware:
    assert response.headers["x-request-id"]
    assert response.headers["cache-control"] == "no-store"
    assert ready.status_code == 503
    assert ready.json()["database"] == "ConnectionRefusedError"


class _DriverError(Exception):
    def __init__(self, sqlstate: str | None) -> None:
        super().__init__("driver error")
        self.sqlstate = sqlstate


@pytest.mark.parametrize(
    ("sqlstate", "unreachable"),
    [
        ("57P01", True),  # terminating connection due to administrator command
        ("57P03", True),  # the database system is shutting down / starting up
        ("08006", True),  # connection failure
        ("42P01", False),  # undefined table: a bug, a 500
        (None, False),
    ],
)
def test_a_database_stopping_or_starting_is_unreachable_not_a_bug(
    sqlstate: str | None, unreachable: bool
) -> None:
    error = DBAPIError("SELECT 1", None, _DriverError(sqlstate))
    assert database_unreachable(error) is unreachable
    assert not database_unreachable(IntegrityError("INSERT", None, _DriverError("23505")))
    assert database_unreachable(ConnectionRefusedError())


async def test_pooled_connection_closed_by_the_server_is_replaced_on_checkout(
    backend: str, database_url: str
) -> None:
    if backend != "postgresql":
        pytest.skip("SQLite has no server to close a connection")
    engine = create_engine(database_url, pool_size=1, max_overflow=0)
    try:
        async with engine.connect() as connection:
            backend_pid = (await connection.execute(sa.text("SELECT pg_backend_pid()"))).scalar_one()
        # The one pooled connection is idle; the server ends it (as a restart or failover would).
        admin = await asyncpg.connect(database_url.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            assert await admin.fetchval("SELECT pg_terminate_backend($1)", backend_pid)
        finally:
            await admin.close()
        await asyncio.sleep(0.2)  # asyncpg reads the server's goodbye while idle
        async with engine.connect() as connection:
            new_pid = (await connection.execute(sa.text("SELECT pg_backend_pid()"))).scalar_one()
        assert new_pid != backend_pid
    finally:
        await engine.dispose()
