"""Due dates on forward, the overdue flag and filter, and the sweep that emits request.overdue once
per missed due date."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import httpx
from fastapi import FastAPI
from sqlmodel import select

from tests.conftest import TRIGGER_III, Tokens, submission
from tracing.models.notify import Event, EventType
from tracing.models.trace_request import Priority, TraceRequest
from tracing.workflow.deadlines import DeadlinePolicy, count_overdue, due_dates, sweep_overdue

HOUR = dt.timedelta(hours=1)
DAY = dt.timedelta(days=1)


def _ts(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value)


async def _forwarded(client: httpx.AsyncClient, tokens: Tokens, **overrides: Any) -> dict[str, Any]:
    created = await client.post(
        "/v1/trace-requests", json=submission(**overrides), headers=tokens.investigator
    )
    assert created.status_code == 201, created.text
    forwarded = await client.post(
        f"/v1/trace-requests/{created.json()['id']}/forward",
        json={"to_country": "RU"},
        headers=tokens.ncp("NE"),
    )
    assert forwarded.status_code == 200, forwarded.text
    return forwarded.json()


async def _overdue_events(app: FastAPI) -> list[Event]:
    async with app.state.sessionmaker() as session:
        statement = select(Event).where(Event.type == EventType.request_overdue).order_by(Event.number)
        return list((await session.execute(statement)).scalars())


def test_due_dates_follow_the_priority_and_the_policy() -> None:
    at = dt.datetime(2017, 11, 24, 9, 0, tzinfo=dt.UTC)
    routine = due_dates(Priority.routine, at, DeadlinePolicy())
    assert (routine.acknowledge_by, routine.answer_by) == (at + 5 * DAY, at + 30 * DAY)
    urgent = due_dates(Priority.urgent, at, DeadlinePolicy())
    assert (urgent.acknowledge_by, urgent.answer_by) == (at + 24 * HOUR, at + 72 * HOUR)
    custom = due_dates(
        Priority.urgent, at, DeadlinePolicy(urgent_acknowledge_hours=2, urgent_answer_hours=12)
    )
    assert (custom.acknowledge_by, custom.answer_by) == (at + 2 * HOUR, at + 12 * HOUR)


async def test_forward_gives_the_holder_due_dates_by_priority(
    client: httpx.AsyncClient, tokens: Tokens, world: None
) -> None:
    routine = await _forwarded(client, tokens)
    forwarded_at = _ts(routine["forwarded_at"])
    assert _ts(routine["due"]["acknowledge_by"]) == forwarded_at + 5 * DAY
    assert _ts(routine["due"]["answer_by"]) == forwarded_at + 30 * DAY
    assert routine["due"]["overdue"] is False

    urgent = await _forwarded(
        client, tokens, priority="urgent", priority_justification="suspect in custody", case_reference="U-1"
    )
    forwarded_at = _ts(urgent["forwarded_at"])
    assert _ts(urgent["due"]["acknowledge_by"]) == forwarded_at + 24 * HOUR
    assert _ts(urgent["due"]["answer_by"]) == forwarded_at + 72 * HOUR


async def test_submitted_request_has_no_due_dates_yet(
    client: httpx.AsyncClient, tokens: Tokens, submitted: dict
) -> None:
    assert submitted["due"] == {"acknowledge_by": None, "answer_by": None, "overdue": False}


async def test_overdue_flag_and_list_filter_follow_the_due_dates(
    app: FastAPI, client: httpx.AsyncClient, tokens: Tokens, world: None
) -> None:
    request = await _forwarded(client, tokens)
    other = await client.post(
        "/v1/trace-requests", json=submission(case_reference="NE/2"), headers=tokens.investigator
    )
    url = f"/v1/trace-requests/{request['id']}"
    forwarded_at = _ts(request["forwarded_at"])

    async def overdue_ids(flag: str) -> set[str]:
        listed = await client.get(f"/v1/trace-requests?overdue={flag}", headers=tokens.ncp("NE"))
        assert listed.status_code == 200, listed.text
        return {item["id"] for item in listed.json()["items"]}

    app.state.clock = lambda: forwarded_at + 6 * DAY  # acknowledgement missed
    assert (await client.get(url, headers=tokens.ncp("RU"))).json()["due"]["overdue"] is True
    assert await overdue_ids("true") == {request["id"]}
    assert await overdue_ids("false") == {other.json()["id"]}

    acknowledged = await client.post(f"{url}/acknowledge", json={}, headers=tokens.ncp("RU"))
    assert acknowledged.json()["due"]["overdue"] is False  # acknowledged late; the answer is not due yet
    assert await overdue_ids("true") == set()

    app.state.clock = lambda: forwarded_at + 31 * DAY  # answer missed
    assert (await client.get(url, headers=tokens.ncp("NE"))).json()["due"]["overdue"] is True
    assert await overdue_ids("true") == {request["id"]}

    answered = await client.post(
        f"{url}/answer", json={"outcome": "not_traced", "reason": "no_record"}, headers=tokens.ncp("RU")
    )
    assert answered.json()["due"]["overdue"] is False
    assert await overdue_ids("true") == set()


async def test_bad_overdue_filter_is_a_validation_error(
    client: httpx.AsyncClient, tokens: Tokens, world: None
) -> None:
    response = await client.get("/v1/trace-requests?overdue=maybe", headers=tokens.ncp("NE"))
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")


async def test_sweep_emits_overdue_once_per_missed_due_date(
    app: FastAPI, client: httpx.AsyncClient, tokens: Tokens, world: None
) -> None:
    request = await _forwarded(client, tokens)
    forwarded_at = _ts(request["forwarded_at"])
    sessions = app.state.sessionmaker

    async with sessions() as session:
        assert await sweep_overdue(session, now=forwarded_at + 4 * DAY) == (0, 0)
    async with sessions() as session:
        result = await sweep_overdue(session, now=forwarded_at + 6 * DAY)
    assert (result.acknowledgements_missed, result.answers_missed) == (1, 0)
    async with sessions() as session:
        assert (await sweep_overdue(session, now=forwarded_at + 7 * DAY)).acknowledgements_missed == 0

    events = await _overdue_events(app)
    assert sorted(e.agency for e in events) == ["NE-NCP", "NE-PJ", "RU-NCP"]  # holder and requesters
    assert {e.data["missed"] for e in events} == {"acknowledge"}
    assert {e.data["due_at"] for e in events} == {request["due"]["acknowledge_by"]}

    async with sessions() as session:
        result = await sweep_overdue(session, now=forwarded_at + 31 * DAY)
    assert (result.acknowledgements_missed, result.answers_missed) == (0, 1)
    async with sessions() as session:
        assert await sweep_overdue(session, now=forwarded_at + 40 * DAY) == (0, 0)
    assert [e.data["missed"] for e in await _overdue_events(app)].count("answer") == 3

    # Forwarded onward: the new holder gets new due dates, and missing them is a new event.
    onward = await client.post(
        f"/v1/trace-requests/{request['id']}/forward", json={"to_country": "NG"}, headers=tokens.ncp("RU")
    )
    assert onward.status_code == 200, onward.text
    async with sessions() as session:
        result = await sweep_overdue(session, now=_ts(onward.json()["forwarded_at"]) + 6 * DAY)
    assert result.acknowledgements_missed == 1
    latest = (await _overdue_events(app))[-1]
    assert latest.data["holder_country"] == "NG"


async def test_concurrent_sweeps_emit_each_overdue_event_once(
    app: FastAPI, client: httpx.AsyncClient, tokens: Tokens, world: None
) -> None:
    request = await _forwarded(client, tokens)
    later = _ts(request["forwarded_at"]) + 6 * DAY

    async def sweep() -> int:
        async with app.state.sessionmaker() as session:
            return (await sweep_overdue(session, now=later)).acknowledgements_missed

    assert sum(await asyncio.gather(*(sweep() for _ in range(4)))) == 1
    assert len(await _overdue_events(app)) == 3


async def test_answered_or_closed_requests_are_never_swept(
    app: FastAPI, client: httpx.AsyncClient, tokens: Tokens, world: None
) -> None:
    request = await _forwarded(client, tokens)
    await client.post(
        f"/v1/trace-requests/{request['id']}/close",
        json={"resolution": "withdrawn"},
        headers=tokens.investigator,
    )
    async with app.state.sessionmaker() as session:
        result = await sweep_overdue(session, now=_ts(request["forwarded_at"]) + 60 * DAY)
    assert result == (0, 0)


async def test_overdue_counts_for_statistics(
    app: FastAPI, client: httpx.AsyncClient, tokens: Tokens, world: None
) -> None:
    other = {**TRIGGER_III, "code": "OTHER", "name": "Another operation"}
    assert (await client.post("/v1/operations", json=other, headers=tokens.admin)).status_code == 201
    late = await _forwarded(client, tokens)
    await _forwarded(client, tokens, case_reference="NE/2", operation_code="OTHER")
    acknowledged = await _forwarded(client, tokens, case_reference="NE/3")
    await client.post(
        f"/v1/trace-requests/{acknowledged['id']}/acknowledge", json={}, headers=tokens.ncp("RU")
    )
    now = _ts(late["forwarded_at"]) + 6 * DAY
    async with app.state.sessionmaker() as session:
        assert await count_overdue(session, now=now) == (2, 2, 0)
        assert await count_overdue(session, now=now + 30 * DAY) == (3, 2, 3)
        in_operation = TraceRequest.operation_code == "TRIGGER-III"
        assert await count_overdue(session, now=now, where=in_operation) == (1, 1, 0)
