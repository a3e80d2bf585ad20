"""Async engine and session factory: a SQLite file by default, PostgreSQL via asyncpg in production."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

ALEMBIC_DIR = Path(__file__).resolve().parent.parent / "alembic"


def create_engine(database_url: str, **kwargs: Any) -> AsyncEngine:
    if database_url.startswith("sqlite"):
        engine = create_async_engine(
            database_url, **({"connect_args": {"timeout": 30}, "pool_size": 5, "max_overflow": 10} | kwargs)
        )

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            # 64 MiB of page cache (the default is 2 MiB): registry indexes of a million records
            # stay in memory during imports and lookups.
            cursor.execute("PRAGMA cache_size=-65536")
            cursor.close()

        return engine
    engine = create_async_engine(database_url, **({"pool_size": 20, "max_overflow": 20} | kwargs))

    @event.listens_for(engine.sync_engine, "checkout")
    def _discard_closed(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        # Without pool_pre_ping (a round trip per checkout), a pooled connection that PostgreSQL
        # closed while it sat idle (a restart, a failover, an idle timeout) would fail the next
        # request that draws it. asyncpg notices the closed socket by itself, so asking it costs
        # nothing; DisconnectionError makes the pool replace the connection and retry the checkout.
        is_closed = getattr(dbapi_connection.driver_connection, "is_closed", None)
        if is_closed is not None and is_closed():
            raise DisconnectionError("the database closed this pooled connection")

    return engine


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(ALEMBIC_DIR))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


async def current_revision(engine: AsyncEngine) -> str | None:
    def _read(connection: Connection) -> str | None:
        return MigrationContext.configure(connection).get_current_revision()

    async with engine.connect() as connection:
        return await connection.run_sync(_read)


def upgrade(database_url: str, revision: str = "head") -> None:
    """Run Alembic migrations (synchronously; Alembic's env runs the async engine itself)."""
    from alembic import command

    command.upgrade(alembic_config(database_url), revision)
