"""Lookups stay index lookups: the query plan of every kind of probe, on both databases, searches
indexes and never scans the registry's tables."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession

from tracing.db import create_engine, create_sessionmaker
from tracing.markings import store
from tracing.markings.keys import lookup_plan
from tracing.models.registry import Registry


@pytest.mark.parametrize(
    "serial",
    [
        "LX 1023",  # exact, confusable and one-edit probes
        "LX 10?3",  # one unreadable character
        "L? 10?3",  # two
        "L? ?0?3",  # three
        "LX1?2??3?4",  # four: a range scan on the readable beginning
        "??2??3X1023",  # four, read from the end: a range scan on the reversed key
        "A12",  # too short for one-edit probes
    ],
)
async def test_every_probe_uses_an_index(database_url: str, serial: str) -> None:
    engine = create_engine(database_url)
    try:
        async with create_sessionmaker(engine)() as session:
            registry = Registry(
                code="R1", name="r", kind="national_registry", owner_country="NG", adapter="local"
            )
            session.add(registry)
            await session.commit()
            plan = lookup_plan(serial)
            assert plan.searchable
            query = store.candidates_query(registry.id, plan, engine.dialect.name)
            assert query is not None
            statement, params = query
            text = await _plan_text(session, statement.params(params))
    finally:
        await engine.dispose()
    if engine.dialect.name == "postgresql":
        assert "Seq Scan" not in text, text
    else:
        # An empty key list is rendered as a subquery of one constant row: scanning that reads no table.
        constant = ("SCAN CONSTANT ROW", "SCAN (subquery")
        assert not [
            line for line in text.splitlines() if line.startswith("SCAN") and not line.startswith(constant)
        ], text
        assert "SEARCH registry_record" in text


async def _plan_text(session: AsyncSession, statement: sa.Select) -> str:
    connection = await session.connection()
    if connection.dialect.name == "postgresql":
        # Parameters as the service sends them (typed arrays), with a generic plan: one that serves
        # any key list, which is what a prepared lookup statement ends up running.
        compiled = statement.compile(dialect=connection.dialect)
        values = tuple(compiled.params[name] for name in compiled.positiontup or ())
        await connection.exec_driver_sql("SET enable_seqscan = off")  # a scan then means: no index fits
        await connection.exec_driver_sql("SET plan_cache_mode = force_generic_plan")
        rows = await connection.exec_driver_sql(f"EXPLAIN {compiled.string}", values)
        return "\n".join(row[0] for row in rows)
    compiled = statement.compile(dialect=connection.dialect, compile_kwargs={"literal_binds": True})
    rows = await connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}")
    return "\n".join(str(row[-1]) for row in rows)


async def test_key_lists_reach_postgresql_as_they_were(database_url: str) -> None:
    """Lookups send key lists to PostgreSQL as the text of an array; any key survives the trip."""
    engine = create_engine(database_url)
    if engine.dialect.name != "postgresql":
        await engine.dispose()
        pytest.skip("the array text form is PostgreSQL's")
    keys = ["1X1023", "", "NULL", 'A"B', "A\\B", "A,B", "{A}", " A ", "ЖX1023", "的", "?1?"]
    try:
        async with engine.connect() as connection:
            found = await connection.scalar(
                sa.select(sa.cast(sa.literal(store._array_text(keys), sa.Text), ARRAY(sa.Text)))
            )
    finally:
        await engine.dispose()
    assert found == keys
