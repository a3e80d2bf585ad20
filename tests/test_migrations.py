"""Migrations that rewrite stored data: upgrading and downgrading keep what lookups need."""

from __future__ import annotations

import asyncio

import sqlalchemy as sa

from alembic import command
from tracing.db import alembic_config, create_engine, create_sessionmaker, upgrade
from tracing.markings.keys import deletions
from tracing.models.registry import Registry, RegistryRecord, RegistryRecordKey
from tracing.models.types import utcnow


async def _stored_deletions(database_url: str) -> dict[int, set[str]]:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as connection:
            key = RegistryRecordKey
            rows = await connection.execute(sa.select(key.record_no, key.deletion))
            found: dict[int, set[str]] = {}
            for number, deletion in rows:
                found.setdefault(number, set()).add(deletion)
            return found
    finally:
        await engine.dispose()


async def test_0007_keeps_stored_deletions_only_for_keys_outside_the_key_alphabet(database_url: str) -> None:
    await asyncio.to_thread(command.downgrade, alembic_config(database_url), "0006")
    keys = {1: "1X1023", 2: "ЖX1023", 3: "AB1"}  # enumerable, another script's letter, too short
    engine = create_engine(database_url)
    try:
        async with create_sessionmaker(engine)() as session:
            registry = Registry(
                code="R1", name="r", kind="national_registry", owner_country="NG", adapter="local"
            )
            session.add(registry)
            await session.flush()
            for number, key in keys.items():
                session.add(
                    RegistryRecord(
                        registry_id=registry.id, record_no=number, fingerprint=number, serial_number=key,
                        serial_key=key, confusable_key=key, reversed_key=key[::-1], key_length=len(key),
                        imported_at=utcnow(),
                    )
                )  # fmt: skip
            await session.flush()
            for number, key in keys.items():
                if len(key) >= 4:  # what revision 0006 stored: the deletions of every key of 4 or more
                    session.add_all(
                        RegistryRecordKey(registry_id=registry.id, deletion=d, record_no=number)
                        for d in deletions(key)
                    )
            await session.commit()
    finally:
        await engine.dispose()
    before = await _stored_deletions(database_url)
    assert before == {1: deletions(keys[1]), 2: deletions(keys[2])}

    await asyncio.to_thread(upgrade, database_url)
    assert await _stored_deletions(database_url) == {2: deletions(keys[2])}

    await asyncio.to_thread(command.downgrade, alembic_config(database_url), "0006")
    assert await _stored_deletions(database_url) == before
    await asyncio.to_thread(upgrade, database_url)
