"""Test fixtures: a fresh, really migrated database per test, on SQLite and on PostgreSQL.

Each backend is migrated once per run into a template (a SQLite file, a PostgreSQL template
database named after the run); every test gets its own copy, so tests never see each other and may
use as many connections as they like (concurrency tests need that). PostgreSQL databases of a run
are dropped at its end. With CI=true a PostgreSQL that cannot be reached fails the run.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from tracing.api.app import create_app
from tracing.audit.signing import generate_private_pem
from tracing.config import Settings
from tracing.db import upgrade
from tracing.security import issue_token

TEST_SECRET = "test-secret-for-the-tracing-test-suite-0123456789"
POSTGRES_ADMIN_URL = os.environ.get(
    "TRACING_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
BACKENDS = [b for b in os.environ.get("TRACING_TEST_BACKENDS", "sqlite,postgresql").split(",") if b]
RUN_ID = uuid.uuid4().hex[:8]
TEST_SIGNING_KEY = generate_private_pem()
_counter = itertools.count(1)


def _asyncpg_dsn(database: str | None = None) -> str:
    base, _, _ = POSTGRES_ADMIN_URL.rpartition("/")
    return f"{base}/{database}" if database else POSTGRES_ADMIN_URL


def _sqlalchemy_pg_url(database: str) -> str:
    return _asyncpg_dsn(database).replace("postgresql://", "postgresql+asyncpg://", 1)


class Templates:
    """Migrated template databases, built on first use and shared by the whole run."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._sqlite: Path | None = None
        self._postgres: str | None = None
        self._lock = asyncio.Lock()

    async def sqlite(self) -> Path:
        async with self._lock:
            if self._sqlite is None:
                path = self._directory / "template.db"
                await asyncio.to_thread(upgrade, f"sqlite+aiosqlite:///{path}")
                self._sqlite = path
            return self._sqlite

    async def postgres(self) -> str:
        async with self._lock:
            if self._postgres is None:
                template = f"tracing_test_{RUN_ID}_template"
                admin = await _admin_connection()
                try:
                    await admin.execute(f'CREATE DATABASE "{template}"')
                finally:
                    await admin.close()
                await asyncio.to_thread(upgrade, _sqlalchemy_pg_url(template))
                self._postgres = template
            return self._postgres

    async def drop_postgres_databases(self) -> None:
        if self._postgres is None:
            return
        admin = await _admin_connection()
        try:
            databases = await admin.fetch(
                "SELECT datname FROM pg_database WHERE datname LIKE $1", f"tracing_test_{RUN_ID}_%"
            )
            for row in databases:
                await admin.execute(f'DROP DATABASE IF EXISTS "{row["datname"]}" WITH (FORCE)')
        finally:
            await admin.close()


async def _admin_connection() -> asyncpg.Connection:
    try:
        return await asyncpg.connect(_asyncpg_dsn(), timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        message = f"PostgreSQL is not reachable at {POSTGRES_ADMIN_URL}: {exc}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="session")
async def templates(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Templates]:
    built = Templates(tmp_path_factory.mktemp("templates"))
    yield built
    await built.drop_postgres_databases()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
async def database_url(backend: str, templates: Templates, tmp_path: Path) -> AsyncIterator[str]:
    if backend == "sqlite":
        path = tmp_path / "tracing.db"
        shutil.copyfile(await templates.sqlite(), path)
        yield f"sqlite+aiosqlite:///{path}"
        return
    template = await templates.postgres()
    name = f"tracing_test_{RUN_ID}_{next(_counter)}"
    admin = await _admin_connection()
    try:
        await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    finally:
        await admin.close()
    yield _sqlalchemy_pg_url(name)
    admin = await _admin_connection()
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(
        database_url=database_url,
        env="development",
        jwt_secret=TEST_SECRET,
        signing_key=TEST_SIGNING_KEY,
        checkpoint_interval_seconds=0,
        background_worker=False,
        cross_check_poll_seconds=0,  # tests run cross-checks explicitly (app.state.cross_checks)
    )


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://tracing.test") as http:
        yield http


@dataclass(frozen=True)
class Tokens:
    settings: Settings

    def headers(self, agency: str, country: str, *roles: str, sub: str | None = None, **claims: Any) -> dict:
        token = issue_token(
            self.settings,
            subject=sub or f"user@{agency}",
            agency=agency,
            country=country,
            roles=list(roles),
            extra_claims=claims or None,
        )
        return {"Authorization": f"Bearer {token}"}

    @property
    def admin(self) -> dict:
        return self.headers("UN-ADMIN", "AT", "admin")

    @property
    def investigator(self) -> dict:
        return self.headers("NE-PJ", "NE", "investigator", sub="inspector.moussa")

    def ncp(self, country: str) -> dict:
        return self.headers(f"{country}-NCP", country, "contact_point", sub=f"officer@{country}")


@pytest.fixture
def tokens(settings: Settings) -> Tokens:
    return Tokens(settings)


WORLD_AGENCIES = [
    ("NE-NCP", "NE", "contact_point"),
    ("NE-PJ", "NE", "investigating_agency"),
    ("NE-DOUANES", "NE", "investigating_agency"),
    ("RU-NCP", "RU", "contact_point"),
    ("NG-NCP", "NG", "contact_point"),
    ("BJ-NCP", "BJ", "contact_point"),
    ("BJ-PR", "BJ", "investigating_agency"),
]


TRIGGER_III = {
    "code": "TRIGGER-III",
    "name": "Operation TRIGGER III",
    "start": "2017-11-20",
    "end": "2017-12-01",
    "countries": ["BJ", "BF", "TD", "GN", "ML", "MR", "NE", "NG"],
    "organisers": ["INTERPOL", "WCO", "UNODC"],
    "recoveries": [{"country": "NE", "seized": 22, "found": 0, "surrendered": 0}],
}


@pytest.fixture
async def world(client: httpx.AsyncClient, tokens: Tokens) -> None:
    """Contact points of NE, RU, NG and BJ, investigating agencies in NE and BJ, and the open
    operation TRIGGER-III that `submission()` names."""
    for code, country, kind in WORLD_AGENCIES:
        response = await client.post(
            "/v1/agencies",
            json={"code": code, "name": f"{code} agency", "country": country, "kind": kind},
            headers=tokens.admin,
        )
        assert response.status_code == 201, response.text
    response = await client.post("/v1/operations", json=TRIGGER_III, headers=tokens.admin)
    assert response.status_code == 201, response.text


def submission(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "requested_country": "RU",
        "priority": "routine",
        "operation_code": "TRIGGER-III",
        "case_reference": "NE/2017/1142",
        "intended_use": "criminal investigation of trafficking",
        "handling": {"confidential": True, "restrictions": "not for court without consent"},
        "seizure": {
            "date": "2017-11-24",
            "place": "Niamey",
            "country": "NE",
            "recovery_type": "seized",
            "context": "trafficking",
        },
        "firearm": {
            "kind": "rifle",
            "make": "Izhmash",
            "model": "AKM",
            "calibre": "7.62x39mm",
            "serial_number": "LX 10?3",
            "serial_obliterated": "partial",
            "country_of_manufacture": "RU",
            "year_of_manufacture": 1975,
            "import_marks": [{"country": "NG", "year": 2009, "text": "NG 09"}],
            "other_markings": ["star in circle on receiver"],
        },
    }
    for key, value in overrides.items():
        target = body
        *path, last = key.split("__")
        for part in path:
            target = target[part]
        target[last] = value
    return body


@pytest.fixture
async def submitted(client: httpx.AsyncClient, tokens: Tokens, world: None) -> dict[str, Any]:
    response = await client.post("/v1/trace-requests", json=submission(), headers=tokens.investigator)
    assert response.status_code == 201, response.text
    return response.json()
