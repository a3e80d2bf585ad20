"""Migrations that rewrite stored data: upgrading and downgrading keep what lookups need."""

from __future__ import annotations

import asyncio
import uuid

import sqlalchemy as sa

from alembic import command
from tracing.db import alembic_config, create_engine, create_sessionmaker, upgrade
from tracing.markings.keys import deletions, dump_shape, key_shape, load_shape, shape_admits
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


async def _registry_with_records(database_url: str, keys: dict[int, str]) -> uuid.UUID:
    """A local registry holding one record per key, written with the columns every revision has."""
    registry_id, now = uuid.uuid4(), utcnow()
    engine = create_engine(database_url)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                sa.insert(Registry.__table__).values(
                    id=registry_id, code=f"R{registry_id.hex[:6]}", name="r", kind="national_registry",
                    owner_country="NG", adapter="local", timeout_seconds=5.0, enabled=True,
                    next_record_no=len(keys), record_count=len(keys), created_at=now, updated_at=now,
                )
            )  # fmt: skip
            for number, key in keys.items():
                await connection.execute(
                    sa.insert(RegistryRecord.__table__).values(
                        registry_id=registry_id, record_no=number, fingerprint=number, serial_number=key,
                        make="", serial_key=key, confusable_key=key, reversed_key=key[::-1],
                        key_length=len(key), details={}, imported_at=now,
                    )
                )  # fmt: skip
    finally:
        await engine.dispose()
    return registry_id


async def _key_shapes(database_url: str) -> dict[uuid.UUID, str | None]:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as connection:
            rows = await connection.execute(sa.text("SELECT id, key_shape FROM registry"))
            return {uuid.UUID(str(registry_id)): shape for registry_id, shape in rows}
    finally:
        await engine.dispose()


async def test_0008_fills_in_each_registrys_key_shape_from_its_records(database_url: str) -> None:
    await asyncio.to_thread(command.downgrade, alembic_config(database_url), "0007")
    keys = {1: "1X1023", 2: "ЖX1024", 3: "AB1", 4: "AC2", 5: "Q?7", 6: "9" * 64}
    filled = await _registry_with_records(database_url, keys)
    empty = await _registry_with_records(database_url, {})
    await asyncio.to_thread(upgrade, database_url)
    shapes = await _key_shapes(database_url)
    assert shapes[empty] == dump_shape({})
    assert load_shape(shapes[filled]) == key_shape(keys.values())
    admits = shape_admits(shapes[filled])
    assert all(admits(key) for key in keys.values()) and not admits("AB3") and not admits("1X10234")

    await asyncio.to_thread(command.downgrade, alembic_config(database_url), "0007")
    await asyncio.to_thread(upgrade, database_url)
    assert await _key_shapes(database_url) == shapes


async def test_0007_keeps_stored_deletions_only_for_keys_outside_the_key_alphabet(database_url: str) -> None:
    await asyncio.to_thread(command.downgrade, alembic_config(database_url), "0006")
    keys = {1: "1X1023", 2: "ЖX1023", 3: "AB1"}  # enumerable, another script's letter, too short
    registry_id = await _registry_with_records(database_url, keys)
    engine = create_engine(database_url)
    try:
        async with create_sessionmaker(engine)() as session:
            for number, key in keys.items():
                if len(key) >= 4:  # what revision 0006 stored: the deletions of every key of 4 or more
                    session.add_all(
                        RegistryRecordKey(registry_id=registry_id, deletion=d, record_no=number)
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
