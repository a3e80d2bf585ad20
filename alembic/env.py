"""Alembic environment: runs migrations on the async engine for SQLite and PostgreSQL alike."""

from __future__ import annotations

import asyncio

from sqlalchemy.engine import Connection
from sqlmodel import SQLModel

import tracing.models  # noqa: F401  (registers every table on SQLModel.metadata)
from alembic import context
from tracing.db import create_engine

target_metadata = SQLModel.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_async() -> None:
    engine = create_engine(context.config.get_main_option("sqlalchemy.url"))
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run)
            await connection.commit()
    finally:
        await engine.dispose()


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    asyncio.run(_run_async())


if context.is_offline_mode():
    raise SystemExit("offline migrations are not supported; run `tracing migrate`")
run_migrations_online()
