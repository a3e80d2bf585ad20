"""The checks the load and fault runs end with (bench/checks.py) catch what they are meant to: an
acknowledged step missing from the database, a request nobody was told about, an exchange without
its outbox event."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from bench.checks import check_database, outbox_problems
from bench.workload import Case, Ledger, Step
from tests.conftest import TEST_SIGNING_KEY, Tokens, submission
from tracing.audit.log import append
from tracing.audit.signing import Signer
from tracing.db import create_engine, create_sessionmaker
from tracing.models.types import utcnow


@pytest.fixture
async def bare_session() -> AsyncIterator[AsyncSession]:
    engine = create_async_engine("sqlite+aiosqlite://")
    async with engine.begin() as connection:
        await connection.execute(
            sa.text("CREATE TABLE exchange (trace_request_id CHAR(32), seq INT, action TEXT)")
        )
    try:
        async with AsyncSession(engine) as session:
            yield session
    finally:
        await engine.dispose()


async def test_without_an_outbox_there_is_nothing_to_check(bare_session: AsyncSession) -> None:
    await bare_session.execute(
        sa.text("INSERT INTO exchange VALUES ('00000000000000000000000000000001', 1, 'submit')")
    )
    assert await outbox_problems(bare_session) == []


async def test_an_exchange_without_its_outbox_event_is_reported(bare_session: AsyncSession) -> None:
    request = uuid.uuid4()
    await bare_session.execute(
        sa.text("CREATE TABLE event (trace_request_id CHAR(32), type TEXT, data JSON)")
    )
    for seq, action in ((1, "submit"), (2, "forward")):
        await bare_session.execute(
            sa.text("INSERT INTO exchange VALUES (:id, :seq, :action)"),
            {"id": request.hex, "seq": seq, "action": action},
        )
    await bare_session.execute(
        sa.text("INSERT INTO event VALUES (:id, 'request.submitted', '{\"version\": 1}')"),
        {"id": request.hex},
    )
    assert await outbox_problems(bare_session) == [
        f"exchange 2 (forward) of {request} has no request.forwarded event"
    ]


async def test_database_checks_hold_the_service_to_what_it_acknowledged(
    client: httpx.AsyncClient, tokens: Tokens, world: None, database_url: str
) -> None:
    response = await client.post(
        "/v1/trace-requests", json=submission(), headers={**tokens.investigator, "Idempotency-Key": "k-1"}
    )
    created = response.json()
    case = Case("k-1", "NE-PJ", "inspector.moussa", "NE", uuid.UUID(created["id"]))
    case.steps.append(Step(1, "submit", "submitted", acknowledged=True))
    public_pem = Signer.from_private_pem(TEST_SIGNING_KEY).public_pem

    verdict = await check_database(database_url, Ledger(cases=[case]), public_pem)
    assert verdict.ok, verdict.problems
    assert verdict.counts["audit chains verified"] == 1

    # An entry that records no exchange (a webhook delivery's end) is not a half-written exchange:
    engine = create_engine(database_url)
    try:
        async with create_sessionmaker(engine)() as session:
            await append(session, chain_id=case.id, action="notification", at=utcnow(), content={})
            await session.commit()
    finally:
        await engine.dispose()
    verdict = await check_database(database_url, Ledger(cases=[case]), public_pem)
    assert verdict.ok, verdict.problems

    # A forward the client was told about but the database does not hold:
    case.steps.append(Step(2, "forward", "forwarded", acknowledged=True))
    verdict = await check_database(database_url, Ledger(cases=[case]), public_pem)
    assert any("step 2 forward was acknowledged" in p for p in verdict.problems)
    # A request in the database that no client was told about:
    verdict = await check_database(database_url, Ledger(), public_pem)
    assert any("no client was told about" in p for p in verdict.problems)
